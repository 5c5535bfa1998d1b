//! The client's half of the legacy versions: request encoders and response decoders, for
//! raw-protocol tests and tools that speak as a pre-2017 client would. The broker never
//! calls these; the round trips against the broker's half in the tests keep the two
//! halves honest with each other.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, DescribeConfigsResponse, FetchResponse, ListOffsetsResponse, OffsetCommitResponse,
    OffsetFetchResponse, ProduceResponse, RequestKind, ResponseKind, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::{put_nullable_string, put_string, LegacyDecodeError, Reader};

fn put_nullable_bytes(out: &mut BytesMut, b: Option<&Bytes>) {
    match b {
        Some(b) => {
            out.put_i32(b.len() as i32);
            out.put_slice(b);
        }
        None => out.put_i32(-1),
    }
}

/// Encodes the body of a legacy request (`key` at `version`, see [`super::handles`]).
pub fn encode_request_body(
    version: i16,
    body: &RequestKind,
    out: &mut BytesMut,
) -> Result<(), String> {
    match body {
        RequestKind::Produce(p) => {
            out.put_i16(p.acks);
            out.put_i32(p.timeout_ms);
            out.put_i32(p.topic_data.len() as i32);
            for t in &p.topic_data {
                put_string(out, &t.name);
                out.put_i32(t.partition_data.len() as i32);
                for pd in &t.partition_data {
                    out.put_i32(pd.index);
                    put_nullable_bytes(out, pd.records.as_ref());
                }
            }
        }
        RequestKind::Fetch(f) => {
            out.put_i32(f.replica_id.0);
            out.put_i32(f.max_wait_ms);
            out.put_i32(f.min_bytes);
            if version >= 3 {
                out.put_i32(f.max_bytes);
            }
            out.put_i32(f.topics.len() as i32);
            for t in &f.topics {
                put_string(out, &t.topic);
                out.put_i32(t.partitions.len() as i32);
                for p in &t.partitions {
                    out.put_i32(p.partition);
                    out.put_i64(p.fetch_offset);
                    out.put_i32(p.partition_max_bytes);
                }
            }
        }
        RequestKind::ListOffsets(l) => {
            out.put_i32(l.replica_id.0);
            out.put_i32(l.topics.len() as i32);
            for t in &l.topics {
                put_string(out, &t.name);
                out.put_i32(t.partitions.len() as i32);
                for p in &t.partitions {
                    out.put_i32(p.partition_index);
                    out.put_i64(p.timestamp);
                    out.put_i32(1); // max_num_offsets
                }
            }
        }
        RequestKind::OffsetCommit(c) => {
            put_string(out, &c.group_id);
            if version >= 1 {
                out.put_i32(c.generation_id_or_member_epoch);
                put_string(out, &c.member_id);
            }
            out.put_i32(c.topics.len() as i32);
            for t in &c.topics {
                put_string(out, &t.name);
                out.put_i32(t.partitions.len() as i32);
                for p in &t.partitions {
                    out.put_i32(p.partition_index);
                    out.put_i64(p.committed_offset);
                    if version >= 1 {
                        out.put_i64(-1); // commit timestamp: "now"
                    }
                    put_nullable_string(out, p.committed_metadata.as_deref());
                }
            }
        }
        RequestKind::OffsetFetch(o) => o.encode(out, 1).map_err(|e| e.to_string())?,
        RequestKind::DescribeConfigs(d) => {
            out.put_i32(d.resources.len() as i32);
            for r in &d.resources {
                out.put_i8(r.resource_type);
                put_string(out, &r.resource_name);
                match &r.configuration_keys {
                    Some(keys) => {
                        out.put_i32(keys.len() as i32);
                        for k in keys {
                            put_string(out, k);
                        }
                    }
                    None => out.put_i32(-1),
                }
            }
        }
        _ => return Err("no legacy encoder for this request".into()),
    }
    Ok(())
}

/// A whole legacy request frame: size prefix, header v1 (key, version, correlation id,
/// client id) and body.
pub fn encode_request(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: &str,
    body: &RequestKind,
) -> Result<Bytes, String> {
    let mut out = BytesMut::new();
    out.put_i32(0);
    out.put_i16(key as i16);
    out.put_i16(version);
    out.put_i32(correlation_id);
    put_string(&mut out, client_id);
    encode_request_body(version, body, &mut out)?;
    let size = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&size.to_be_bytes());
    Ok(out.freeze())
}

/// Decodes a legacy response body (after the correlation id). ListOffsets v0's list of
/// offsets becomes `offset` (-1 for an empty list); DescribeConfigs v0's `is_default`
/// becomes config source DEFAULT_CONFIG (5) or -1.
/// Reads from the front of `body`; what is left after the response stays there.
pub fn decode_response_body(
    key: ApiKey,
    version: i16,
    body: &mut Bytes,
) -> Result<ResponseKind, LegacyDecodeError> {
    let mut r = Reader {
        buf: std::mem::take(body),
    };
    let out = decode_response_from(key, version, &mut r);
    *body = r.buf;
    out
}

fn decode_response_from(
    key: ApiKey,
    version: i16,
    r: &mut Reader,
) -> Result<ResponseKind, LegacyDecodeError> {
    let topic_name = |r: &mut Reader| -> Result<TopicName, LegacyDecodeError> {
        Ok(TopicName(r.string("topic")?))
    };
    match key {
        ApiKey::Produce => {
            let n = r.count(6, "topics")?;
            let mut responses = Vec::with_capacity(n);
            for _ in 0..n {
                let name = topic_name(r)?;
                let np = r.count(14, "partitions")?;
                let mut parts = Vec::with_capacity(np);
                for _ in 0..np {
                    let mut p = PartitionProduceResponse::default()
                        .with_index(r.i32("index")?)
                        .with_error_code(r.i16("error")?)
                        .with_base_offset(r.i64("base offset")?)
                        .with_log_append_time_ms(-1);
                    if version >= 2 {
                        p.log_append_time_ms = r.i64("log append time")?;
                    }
                    parts.push(p);
                }
                responses.push(
                    TopicProduceResponse::default()
                        .with_name(name)
                        .with_partition_responses(parts),
                );
            }
            let throttle = if version >= 1 { r.i32("throttle")? } else { 0 };
            Ok(ResponseKind::Produce(
                ProduceResponse::default()
                    .with_responses(responses)
                    .with_throttle_time_ms(throttle),
            ))
        }
        ApiKey::Fetch => {
            let throttle = if version >= 1 { r.i32("throttle")? } else { 0 };
            let n = r.count(6, "topics")?;
            let mut responses = Vec::with_capacity(n);
            for _ in 0..n {
                let topic = topic_name(r)?;
                let np = r.count(18, "partitions")?;
                let mut parts = Vec::with_capacity(np);
                for _ in 0..np {
                    parts.push(
                        PartitionData::default()
                            .with_partition_index(r.i32("index")?)
                            .with_error_code(r.i16("error")?)
                            .with_high_watermark(r.i64("high watermark")?)
                            .with_records(r.nullable_bytes("records")?),
                    );
                }
                responses.push(
                    FetchableTopicResponse::default()
                        .with_topic(topic)
                        .with_partitions(parts),
                );
            }
            Ok(ResponseKind::Fetch(
                FetchResponse::default()
                    .with_throttle_time_ms(throttle)
                    .with_responses(responses),
            ))
        }
        ApiKey::ListOffsets => {
            let n = r.count(6, "topics")?;
            let mut topics = Vec::with_capacity(n);
            for _ in 0..n {
                let name = topic_name(r)?;
                let np = r.count(10, "partitions")?;
                let mut parts = Vec::with_capacity(np);
                for _ in 0..np {
                    let index = r.i32("index")?;
                    let error = r.i16("error")?;
                    let k = r.count(8, "offsets")?;
                    let mut offset = -1;
                    for i in 0..k {
                        let o = r.i64("offset")?;
                        if i == 0 {
                            offset = o;
                        }
                    }
                    parts.push(
                        ListOffsetsPartitionResponse::default()
                            .with_partition_index(index)
                            .with_error_code(error)
                            .with_offset(offset),
                    );
                }
                topics.push(
                    ListOffsetsTopicResponse::default()
                        .with_name(name)
                        .with_partitions(parts),
                );
            }
            Ok(ResponseKind::ListOffsets(
                ListOffsetsResponse::default().with_topics(topics),
            ))
        }
        ApiKey::OffsetCommit => OffsetCommitResponse::decode(&mut r.buf, 2)
            .map(ResponseKind::OffsetCommit)
            .map_err(|e| LegacyDecodeError::Codec(e.to_string())),
        ApiKey::OffsetFetch => OffsetFetchResponse::decode(&mut r.buf, 1)
            .map(ResponseKind::OffsetFetch)
            .map_err(|e| LegacyDecodeError::Codec(e.to_string())),
        ApiKey::DescribeConfigs => {
            let throttle = r.i32("throttle")?;
            let n = r.count(13, "results")?;
            let mut results = Vec::with_capacity(n);
            for _ in 0..n {
                let error_code = r.i16("error")?;
                let error_message = r.nullable_string("error message")?;
                let resource_type = r.i8("resource type")?;
                let resource_name = r.string("resource name")?;
                let nc = r.count(7, "configs")?;
                let mut configs = Vec::with_capacity(nc);
                for _ in 0..nc {
                    let name = r.string("name")?;
                    let value = r.nullable_string("value")?;
                    let read_only = r.i8("read only")? != 0;
                    let is_default = r.i8("is default")? != 0;
                    let is_sensitive = r.i8("is sensitive")? != 0;
                    configs.push(
                        DescribeConfigsResourceResult::default()
                            .with_name(name)
                            .with_value(value)
                            .with_read_only(read_only)
                            // v0 only says whether the value is the default.
                            .with_config_source(if is_default {
                                super::CONFIG_SOURCE_DEFAULT
                            } else {
                                -1
                            })
                            .with_is_sensitive(is_sensitive),
                    );
                }
                results.push(
                    DescribeConfigsResult::default()
                        .with_error_code(error_code)
                        .with_error_message(error_message)
                        .with_resource_type(resource_type)
                        .with_resource_name(resource_name)
                        .with_configs(configs),
                );
            }
            Ok(ResponseKind::DescribeConfigs(
                DescribeConfigsResponse::default()
                    .with_throttle_time_ms(throttle)
                    .with_results(results),
            ))
        }
        _ => Err(LegacyDecodeError::Invalid("api key")),
    }
}

/// A v0 response frame without its size prefix: correlation id, then the body.
pub fn split_response(mut frame: Bytes) -> Option<(i32, Bytes)> {
    if frame.remaining() < 4 {
        return None;
    }
    let correlation_id = frame.get_i32();
    Some((correlation_id, frame))
}

/// A wire string, for building requests.
pub fn wire_str(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}
