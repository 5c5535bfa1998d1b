//! Protocol versions older than the `kafka-protocol` crate decodes (Kafka 4 dropped them,
//! KIP-896; Kafka 3.9 still served them and pre-2017 clients still send them): Produce
//! v0–2, Fetch v0–3, ListOffsets v0, OffsetCommit v0–1, OffsetFetch v0 and
//! DescribeConfigs v0.
//!
//! Requests are decoded by hand into the crate's request structs, so handlers see one
//! type per API and branch on the version only where the semantics differ; responses
//! are encoded by hand from the crate's response structs. Where an old version has the
//! same layout as one the crate knows (OffsetFetch v0 is v1; the OffsetCommit v0–1
//! response is v2's), the crate does the work at that version.
//!
//! The decoder is bounded like [`crate::guard`]: every array count is checked against the
//! bytes left before anything is reserved, every length before it is read, and no peer
//! input panics. The old message formats inside Produce and Fetch are in [`message_set`].

pub mod client_side;
pub mod message_set;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, BrokerId, DescribeConfigsRequest, FetchRequest, GroupId, ListOffsetsRequest,
    OffsetCommitRequest, OffsetFetchRequest, ProduceRequest, RequestKind, ResponseKind, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// `ConfigSource` DEFAULT_CONFIG: DescribeConfigs v0 reports it as `is_default`.
const CONFIG_SOURCE_DEFAULT: i8 = 5;

/// Whether `version` of `key` is one this module decodes and encodes.
pub fn handles(key: ApiKey, version: i16) -> bool {
    match key {
        ApiKey::Produce => (0..=2).contains(&version),
        ApiKey::Fetch => (0..=3).contains(&version),
        ApiKey::ListOffsets | ApiKey::OffsetFetch | ApiKey::DescribeConfigs => version == 0,
        ApiKey::OffsetCommit => (0..=1).contains(&version),
        _ => false,
    }
}

/// Why a legacy request body does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LegacyDecodeError {
    /// Fewer bytes than the next field needs.
    #[error("not enough bytes for {0}")]
    Short(&'static str),
    /// A count or length that cannot be right.
    #[error("invalid {0}")]
    Invalid(&'static str),
    /// The crate's decoder (OffsetFetch v0 as v1) refused it.
    #[error("{0}")]
    Codec(String),
}

/// What the legacy decoders return.
pub type DecodeResult<T> = std::result::Result<T, LegacyDecodeError>;

/// A bounded reader over a request body.
struct Reader {
    buf: Bytes,
}

impl Reader {
    fn need(&self, n: usize, what: &'static str) -> DecodeResult<()> {
        if self.buf.remaining() < n {
            Err(LegacyDecodeError::Short(what))
        } else {
            Ok(())
        }
    }
    fn i8(&mut self, what: &'static str) -> DecodeResult<i8> {
        self.need(1, what)?;
        Ok(self.buf.get_i8())
    }
    fn i16(&mut self, what: &'static str) -> DecodeResult<i16> {
        self.need(2, what)?;
        Ok(self.buf.get_i16())
    }
    fn i32(&mut self, what: &'static str) -> DecodeResult<i32> {
        self.need(4, what)?;
        Ok(self.buf.get_i32())
    }
    fn i64(&mut self, what: &'static str) -> DecodeResult<i64> {
        self.need(8, what)?;
        Ok(self.buf.get_i64())
    }
    fn nullable_string(&mut self, what: &'static str) -> DecodeResult<Option<StrBytes>> {
        let len = self.i16(what)?;
        if len < 0 {
            return Ok(None);
        }
        self.need(len as usize, what)?;
        let bytes = self.buf.split_to(len as usize);
        StrBytes::from_utf8(bytes)
            .map(Some)
            .map_err(|_| LegacyDecodeError::Invalid(what))
    }
    fn string(&mut self, what: &'static str) -> DecodeResult<StrBytes> {
        self.nullable_string(what)?
            .ok_or(LegacyDecodeError::Invalid(what))
    }
    fn nullable_bytes(&mut self, what: &'static str) -> DecodeResult<Option<Bytes>> {
        let len = self.i32(what)?;
        if len < 0 {
            return Ok(None);
        }
        self.need(len as usize, what)?;
        Ok(Some(self.buf.split_to(len as usize)))
    }
    /// An array count; `None` for a null array. Refused when `count` elements of at least
    /// `element_min` bytes each could not fit in what is left.
    fn nullable_count(
        &mut self,
        element_min: usize,
        what: &'static str,
    ) -> DecodeResult<Option<usize>> {
        let n = self.i32(what)?;
        if n < 0 {
            return Ok(None);
        }
        let n = n as usize;
        if n.saturating_mul(element_min) > self.buf.remaining() {
            return Err(LegacyDecodeError::Invalid(what));
        }
        Ok(Some(n))
    }
    fn count(&mut self, element_min: usize, what: &'static str) -> DecodeResult<usize> {
        self.nullable_count(element_min, what)?
            .ok_or(LegacyDecodeError::Invalid(what))
    }
}

/// Minimum encoded sizes of array elements (strings 2, arrays 4, ...).
const TOPIC_MIN: usize = 2 + 4;

/// Decodes a legacy request body (after the header) into the crate's request struct.
pub fn decode_request(key: ApiKey, version: i16, body: Bytes) -> DecodeResult<RequestKind> {
    let mut r = Reader { buf: body };
    match key {
        ApiKey::Produce => decode_produce(&mut r).map(RequestKind::Produce),
        ApiKey::Fetch => decode_fetch(&mut r, version).map(RequestKind::Fetch),
        ApiKey::ListOffsets => decode_list_offsets(&mut r).map(RequestKind::ListOffsets),
        ApiKey::OffsetCommit => {
            decode_offset_commit(&mut r, version).map(RequestKind::OffsetCommit)
        }
        ApiKey::OffsetFetch => {
            // OffsetFetch v0 has v1's layout (v0 read offsets from ZooKeeper, a
            // difference a single log-based broker does not have).
            crate::guard::probe(ApiKey::OffsetFetch, &r.buf, 1)
                .map_err(LegacyDecodeError::Codec)?;
            OffsetFetchRequest::decode(&mut r.buf, 1)
                .map(RequestKind::OffsetFetch)
                .map_err(|e| LegacyDecodeError::Codec(e.to_string()))
        }
        ApiKey::DescribeConfigs => {
            decode_describe_configs(&mut r).map(RequestKind::DescribeConfigs)
        }
        _ => Err(LegacyDecodeError::Invalid("api key")),
    }
}

fn decode_produce(r: &mut Reader) -> DecodeResult<ProduceRequest> {
    let acks = r.i16("acks")?;
    let timeout_ms = r.i32("timeout_ms")?;
    let n_topics = r.count(TOPIC_MIN, "topic count")?;
    let mut topic_data = Vec::with_capacity(n_topics);
    for _ in 0..n_topics {
        let name = TopicName(r.string("topic name")?);
        let n = r.count(4 + 4, "partition count")?;
        let mut partition_data = Vec::with_capacity(n);
        for _ in 0..n {
            let index = r.i32("partition")?;
            let records = r.nullable_bytes("records")?;
            partition_data.push(
                PartitionProduceData::default()
                    .with_index(index)
                    .with_records(records),
            );
        }
        topic_data.push(
            TopicProduceData::default()
                .with_name(name)
                .with_partition_data(partition_data),
        );
    }
    Ok(ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(timeout_ms)
        .with_topic_data(topic_data))
}

fn decode_fetch(r: &mut Reader, version: i16) -> DecodeResult<FetchRequest> {
    let replica_id = r.i32("replica_id")?;
    let max_wait_ms = r.i32("max_wait_ms")?;
    let min_bytes = r.i32("min_bytes")?;
    // v3 added the response-wide limit; before it only per-partition limits existed.
    let max_bytes = if version >= 3 {
        r.i32("max_bytes")?
    } else {
        i32::MAX
    };
    let n_topics = r.count(TOPIC_MIN, "topic count")?;
    let mut topics = Vec::with_capacity(n_topics);
    for _ in 0..n_topics {
        let topic = TopicName(r.string("topic name")?);
        let n = r.count(4 + 8 + 4, "partition count")?;
        let mut partitions = Vec::with_capacity(n);
        for _ in 0..n {
            partitions.push(
                FetchPartition::default()
                    .with_partition(r.i32("partition")?)
                    .with_current_leader_epoch(-1)
                    .with_fetch_offset(r.i64("fetch_offset")?)
                    .with_last_fetched_epoch(-1)
                    .with_log_start_offset(-1)
                    .with_partition_max_bytes(r.i32("partition_max_bytes")?),
            );
        }
        topics.push(
            FetchTopic::default()
                .with_topic(topic)
                .with_partitions(partitions),
        );
    }
    Ok(FetchRequest::default()
        .with_replica_id(BrokerId(replica_id))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(max_bytes)
        .with_isolation_level(0)
        .with_topics(topics))
}

fn decode_list_offsets(r: &mut Reader) -> DecodeResult<ListOffsetsRequest> {
    let replica_id = r.i32("replica_id")?;
    let n_topics = r.count(TOPIC_MIN, "topic count")?;
    let mut topics = Vec::with_capacity(n_topics);
    for _ in 0..n_topics {
        let name = TopicName(r.string("topic name")?);
        let n = r.count(4 + 8 + 4, "partition count")?;
        let mut partitions = Vec::with_capacity(n);
        for _ in 0..n {
            let partition_index = r.i32("partition")?;
            let timestamp = r.i64("timestamp")?;
            // v0 could ask for several segment base offsets; every client asks for one,
            // and one (or none) is what the answer carries.
            let _max_num_offsets = r.i32("max_num_offsets")?;
            partitions.push(
                ListOffsetsPartition::default()
                    .with_partition_index(partition_index)
                    .with_current_leader_epoch(-1)
                    .with_timestamp(timestamp),
            );
        }
        topics.push(
            ListOffsetsTopic::default()
                .with_name(name)
                .with_partitions(partitions),
        );
    }
    Ok(ListOffsetsRequest::default()
        .with_replica_id(BrokerId(replica_id))
        .with_topics(topics))
}

fn decode_offset_commit(r: &mut Reader, version: i16) -> DecodeResult<OffsetCommitRequest> {
    let group_id = GroupId(r.string("group_id")?);
    // v0 commits without a generation (a standalone commit); v1 added it and the member.
    let (generation, member_id) = if version >= 1 {
        (r.i32("generation_id")?, r.string("member_id")?)
    } else {
        (-1, StrBytes::default())
    };
    let n_topics = r.count(TOPIC_MIN, "topic count")?;
    let mut topics = Vec::with_capacity(n_topics);
    for _ in 0..n_topics {
        let name = TopicName(r.string("topic name")?);
        let partition_min = 4 + 8 + 2 + if version >= 1 { 8 } else { 0 };
        let n = r.count(partition_min, "partition count")?;
        let mut partitions = Vec::with_capacity(n);
        for _ in 0..n {
            let partition_index = r.i32("partition")?;
            let committed_offset = r.i64("committed_offset")?;
            if version >= 1 {
                // The commit timestamp set the expiry of the offset in Kafka; offsets here
                // follow offsets.retention.minutes like every later version.
                let _commit_timestamp = r.i64("commit_timestamp")?;
            }
            let committed_metadata = r.nullable_string("committed_metadata")?;
            partitions.push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(partition_index)
                    .with_committed_offset(committed_offset)
                    .with_committed_leader_epoch(-1)
                    .with_committed_metadata(committed_metadata),
            );
        }
        topics.push(
            OffsetCommitRequestTopic::default()
                .with_name(name)
                .with_partitions(partitions),
        );
    }
    Ok(OffsetCommitRequest::default()
        .with_group_id(group_id)
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(member_id)
        .with_retention_time_ms(-1)
        .with_topics(topics))
}

fn decode_describe_configs(r: &mut Reader) -> DecodeResult<DescribeConfigsRequest> {
    let n = r.count(1 + 2 + 4, "resource count")?;
    let mut resources = Vec::with_capacity(n);
    for _ in 0..n {
        let resource_type = r.i8("resource_type")?;
        let resource_name = r.string("resource_name")?;
        let keys = match r.nullable_count(2, "config name count")? {
            None => None,
            Some(k) => {
                let mut keys = Vec::with_capacity(k);
                for _ in 0..k {
                    keys.push(r.string("config name")?);
                }
                Some(keys)
            }
        };
        resources.push(
            DescribeConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(resource_name)
                .with_configuration_keys(keys),
        );
    }
    Ok(DescribeConfigsRequest::default()
        .with_resources(resources)
        .with_include_synonyms(false))
}

fn put_string(out: &mut BytesMut, s: &str) {
    out.put_i16(s.len() as i16);
    out.put_slice(s.as_bytes());
}

fn put_nullable_string(out: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_string(out, s),
        None => out.put_i16(-1),
    }
}

/// Encodes the body of a legacy response (no size prefix, no header).
pub fn encode_response_body(
    key: ApiKey,
    version: i16,
    body: &ResponseKind,
    out: &mut BytesMut,
) -> Result<(), String> {
    match (key, body) {
        (ApiKey::Produce, ResponseKind::Produce(p)) => {
            out.put_i32(p.responses.len() as i32);
            for t in &p.responses {
                put_string(out, &t.name);
                out.put_i32(t.partition_responses.len() as i32);
                for pr in &t.partition_responses {
                    out.put_i32(pr.index);
                    out.put_i16(pr.error_code);
                    out.put_i64(pr.base_offset);
                    if version >= 2 {
                        out.put_i64(pr.log_append_time_ms);
                    }
                }
            }
            if version >= 1 {
                out.put_i32(p.throttle_time_ms);
            }
        }
        (ApiKey::Fetch, ResponseKind::Fetch(f)) => {
            if version >= 1 {
                out.put_i32(f.throttle_time_ms);
            }
            out.put_i32(f.responses.len() as i32);
            for t in &f.responses {
                put_string(out, &t.topic);
                out.put_i32(t.partitions.len() as i32);
                for p in &t.partitions {
                    out.put_i32(p.partition_index);
                    out.put_i16(p.error_code);
                    out.put_i64(p.high_watermark);
                    match &p.records {
                        Some(r) => {
                            out.put_i32(r.len() as i32);
                            out.put_slice(r);
                        }
                        None => out.put_i32(0),
                    }
                }
            }
        }
        (ApiKey::ListOffsets, ResponseKind::ListOffsets(l)) => {
            out.put_i32(l.topics.len() as i32);
            for t in &l.topics {
                put_string(out, &t.name);
                out.put_i32(t.partitions.len() as i32);
                for p in &t.partitions {
                    out.put_i32(p.partition_index);
                    out.put_i16(p.error_code);
                    // v0 answers a list of offsets: one when found, none otherwise.
                    if p.error_code == 0 && p.offset >= 0 {
                        out.put_i32(1);
                        out.put_i64(p.offset);
                    } else {
                        out.put_i32(0);
                    }
                }
            }
        }
        (ApiKey::OffsetCommit, ResponseKind::OffsetCommit(c)) => {
            // v0–v1 responses have v2's layout.
            c.encode(out, 2).map_err(|e| e.to_string())?;
        }
        (ApiKey::OffsetFetch, ResponseKind::OffsetFetch(o)) => {
            o.encode(out, 1).map_err(|e| e.to_string())?;
        }
        (ApiKey::DescribeConfigs, ResponseKind::DescribeConfigs(d)) => {
            out.put_i32(d.throttle_time_ms);
            out.put_i32(d.results.len() as i32);
            for r in &d.results {
                out.put_i16(r.error_code);
                put_nullable_string(out, r.error_message.as_deref());
                out.put_i8(r.resource_type);
                put_string(out, &r.resource_name);
                out.put_i32(r.configs.len() as i32);
                for c in &r.configs {
                    put_string(out, &c.name);
                    put_nullable_string(out, c.value.as_deref());
                    out.put_u8(c.read_only as u8);
                    out.put_u8((c.config_source == CONFIG_SOURCE_DEFAULT) as u8);
                    out.put_u8(c.is_sensitive as u8);
                }
            }
        }
        _ => return Err(format!("no legacy encoder for {key:?} v{version}")),
    }
    Ok(())
}

#[cfg(test)]
mod tests;
