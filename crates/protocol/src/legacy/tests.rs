//! The legacy decoders accept every request an old client can send (encoded by the
//! client-side half), refuse garbage without panicking, and the response encoders are
//! read back by the client-side decoders.

use bytes::Bytes;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use proptest::prelude::*;

use super::client_side::{decode_response_body, encode_request, split_response};
use super::*;
use crate::connection::{decode_request as decode_frame, encode_response, Inbound, ResponseMeta};

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

/// Sends `body` through the client-side encoder and the connection's decoder.
fn check(key: ApiKey, version: i16, body: RequestKind) {
    assert!(handles(key, version));
    let frame = encode_request(key, version, 42, "old-client", &body).unwrap();
    let Inbound::Request(r) = decode_frame(frame.slice(4..)).unwrap() else {
        panic!("expected a request")
    };
    assert_eq!(r.header.correlation_id, 42);
    assert_eq!(r.header.request_api_version, version);
    assert_eq!(r.header.client_id.as_deref(), Some("old-client"));
    assert_eq!(r.body, body, "{key:?} v{version}");
}

/// Encodes a response at a legacy version and decodes it back with the client's half.
fn response_round_trip(key: ApiKey, version: i16, body: &ResponseKind) -> ResponseKind {
    let meta = ResponseMeta {
        api_key: key,
        api_version: version,
        correlation_id: 9,
    };
    let frame = encode_response(meta, body).unwrap();
    let size = i32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
    assert_eq!(size, frame.len() - 4);
    let (correlation_id, mut rest) = split_response(frame.slice(4..)).unwrap();
    assert_eq!(correlation_id, 9);
    let decoded = decode_response_body(key, version, &mut rest).unwrap();
    assert!(rest.is_empty(), "{key:?} v{version}: bytes left over");
    decoded
}

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._-]{1,60}"
}

fn produce() -> impl Strategy<Value = ProduceRequest> {
    let partition = (
        any::<i32>(),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..2000)),
    )
        .prop_map(|(index, records)| {
            PartitionProduceData::default()
                .with_index(index)
                .with_records(records.map(Bytes::from))
        });
    let topic = (name(), proptest::collection::vec(partition, 0..4)).prop_map(|(n, parts)| {
        TopicProduceData::default()
            .with_name(TopicName(s(&n)))
            .with_partition_data(parts)
    });
    (
        any::<i16>(),
        any::<i32>(),
        proptest::collection::vec(topic, 0..4),
    )
        .prop_map(|(acks, timeout_ms, topics)| {
            ProduceRequest::default()
                .with_acks(acks)
                .with_timeout_ms(timeout_ms)
                .with_topic_data(topics)
        })
}

fn fetch(version: i16) -> impl Strategy<Value = FetchRequest> {
    let partition = (any::<i32>(), any::<i64>(), any::<i32>()).prop_map(|(p, o, m)| {
        FetchPartition::default()
            .with_partition(p)
            .with_current_leader_epoch(-1)
            .with_fetch_offset(o)
            .with_last_fetched_epoch(-1)
            .with_log_start_offset(-1)
            .with_partition_max_bytes(m)
    });
    let topic = (name(), proptest::collection::vec(partition, 0..5)).prop_map(|(n, parts)| {
        FetchTopic::default()
            .with_topic(TopicName(s(&n)))
            .with_partitions(parts)
    });
    (
        any::<i32>(),
        any::<i32>(),
        any::<i32>(),
        any::<i32>(),
        proptest::collection::vec(topic, 0..4),
    )
        .prop_map(move |(replica, wait, min, max, topics)| {
            FetchRequest::default()
                .with_replica_id(BrokerId(replica))
                .with_max_wait_ms(wait)
                .with_min_bytes(min)
                .with_max_bytes(if version >= 3 { max } else { i32::MAX })
                .with_isolation_level(0)
                .with_topics(topics)
        })
}

fn list_offsets() -> impl Strategy<Value = ListOffsetsRequest> {
    let partition = (any::<i32>(), any::<i64>()).prop_map(|(p, ts)| {
        ListOffsetsPartition::default()
            .with_partition_index(p)
            .with_current_leader_epoch(-1)
            .with_timestamp(ts)
    });
    let topic = (name(), proptest::collection::vec(partition, 0..5)).prop_map(|(n, parts)| {
        ListOffsetsTopic::default()
            .with_name(TopicName(s(&n)))
            .with_partitions(parts)
    });
    (any::<i32>(), proptest::collection::vec(topic, 0..4)).prop_map(|(replica, topics)| {
        ListOffsetsRequest::default()
            .with_replica_id(BrokerId(replica))
            .with_topics(topics)
    })
}

fn offset_commit(version: i16) -> impl Strategy<Value = OffsetCommitRequest> {
    let partition = (
        any::<i32>(),
        any::<i64>(),
        proptest::option::of("[ -~]{0,300}"),
    )
        .prop_map(|(p, o, m)| {
            OffsetCommitRequestPartition::default()
                .with_partition_index(p)
                .with_committed_offset(o)
                .with_committed_leader_epoch(-1)
                .with_committed_metadata(m.map(|m| s(&m)))
        });
    let topic = (name(), proptest::collection::vec(partition, 0..5)).prop_map(|(n, parts)| {
        OffsetCommitRequestTopic::default()
            .with_name(TopicName(s(&n)))
            .with_partitions(parts)
    });
    (
        name(),
        any::<i32>(),
        "[a-z0-9-]{0,80}",
        proptest::collection::vec(topic, 0..4),
    )
        .prop_map(move |(group, generation, member, topics)| {
            let (generation, member) = if version >= 1 {
                (generation, s(&member))
            } else {
                (-1, StrBytes::default())
            };
            OffsetCommitRequest::default()
                .with_group_id(GroupId(s(&group)))
                .with_generation_id_or_member_epoch(generation)
                .with_member_id(member)
                .with_retention_time_ms(-1)
                .with_topics(topics)
        })
}

fn describe_configs() -> impl Strategy<Value = DescribeConfigsRequest> {
    let resource = (
        any::<i8>(),
        name(),
        proptest::option::of(proptest::collection::vec("[a-z.]{0,40}", 0..6)),
    )
        .prop_map(|(t, n, keys)| {
            DescribeConfigsResource::default()
                .with_resource_type(t)
                .with_resource_name(s(&n))
                .with_configuration_keys(keys.map(|k| k.iter().map(|k| s(k)).collect()))
        });
    proptest::collection::vec(resource, 0..5).prop_map(|r| {
        DescribeConfigsRequest::default()
            .with_resources(r)
            .with_include_synonyms(false)
    })
}

fn offset_fetch() -> impl Strategy<Value = OffsetFetchRequest> {
    let topic = (name(), proptest::collection::vec(any::<i32>(), 0..6)).prop_map(|(n, p)| {
        OffsetFetchRequestTopic::default()
            .with_name(TopicName(s(&n)))
            .with_partition_indexes(p)
    });
    (name(), proptest::collection::vec(topic, 0..4)).prop_map(|(g, topics)| {
        OffsetFetchRequest::default()
            .with_group_id(GroupId(s(&g)))
            .with_topics(Some(topics))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn accepts_every_good_produce(req in produce(), version in 0i16..=2) {
        check(ApiKey::Produce, version, RequestKind::Produce(req));
    }

    #[test]
    fn accepts_every_good_fetch(
        (version, req) in (0i16..=3).prop_flat_map(|v| (Just(v), fetch(v)))
    ) {
        check(ApiKey::Fetch, version, RequestKind::Fetch(req));
    }

    #[test]
    fn accepts_every_good_list_offsets(req in list_offsets()) {
        check(ApiKey::ListOffsets, 0, RequestKind::ListOffsets(req));
    }

    #[test]
    fn accepts_every_good_offset_commit_v0(req in offset_commit(0)) {
        check(ApiKey::OffsetCommit, 0, RequestKind::OffsetCommit(req));
    }

    #[test]
    fn accepts_every_good_offset_commit_v1(req in offset_commit(1)) {
        check(ApiKey::OffsetCommit, 1, RequestKind::OffsetCommit(req));
    }

    #[test]
    fn accepts_every_good_offset_fetch_v0(req in offset_fetch()) {
        check(ApiKey::OffsetFetch, 0, RequestKind::OffsetFetch(req));
    }

    #[test]
    fn accepts_every_good_describe_configs_v0(req in describe_configs()) {
        check(ApiKey::DescribeConfigs, 0, RequestKind::DescribeConfigs(req));
    }

    /// Garbage bodies (and truncations of good ones) are refused, never a panic or a huge
    /// allocation.
    #[test]
    fn garbage_is_refused_without_panic(
        which in 0usize..9,
        garbage in proptest::collection::vec(any::<u8>(), 0..400),
        good in produce(),
        cut in any::<usize>(),
    ) {
        let (key, version) = [
            (ApiKey::Produce, 0), (ApiKey::Produce, 2), (ApiKey::Fetch, 0), (ApiKey::Fetch, 3),
            (ApiKey::ListOffsets, 0), (ApiKey::OffsetCommit, 0), (ApiKey::OffsetCommit, 1),
            (ApiKey::OffsetFetch, 0), (ApiKey::DescribeConfigs, 0),
        ][which];
        let _ = decode_request(key, version, Bytes::from(garbage));
        let frame = encode_request(ApiKey::Produce, 1, 1, "c", &RequestKind::Produce(good)).unwrap();
        let body_start = 4 + 8 + 2 + 1; // size, key/version/correlation, client id "c"
        let cut = body_start + cut % (frame.len() - body_start + 1);
        let truncated = frame.slice(body_start..cut);
        if cut < frame.len() {
            prop_assert!(decode_request(ApiKey::Produce, 1, truncated).is_err());
        }
    }
}

#[test]
fn huge_counts_are_refused_before_allocating() {
    // acks, timeout, then a topic count of i32::MAX with nothing behind it.
    let mut body = vec![0, 1, 0, 0, 0x75, 0x30];
    body.extend_from_slice(&i32::MAX.to_be_bytes());
    assert_eq!(
        decode_request(ApiKey::Produce, 0, Bytes::from(body)),
        Err(LegacyDecodeError::Invalid("topic count"))
    );
}

#[test]
fn responses_round_trip_through_the_client_decoder() {
    for version in 0..=2 {
        let resp = ProduceResponse::default()
            .with_responses(vec![TopicProduceResponse::default()
                .with_name(TopicName(s("t")))
                .with_partition_responses(vec![PartitionProduceResponse::default()
                    .with_index(3)
                    .with_error_code(0)
                    .with_base_offset(77)
                    .with_log_append_time_ms(if version >= 2 { 1234 } else { -1 })])])
            .with_throttle_time_ms(if version >= 1 { 5 } else { 0 });
        let body = ResponseKind::Produce(resp);
        assert_eq!(response_round_trip(ApiKey::Produce, version, &body), body);
    }
    for version in 0..=3 {
        let resp = FetchResponse::default()
            .with_throttle_time_ms(if version >= 1 { 7 } else { 0 })
            .with_responses(vec![FetchableTopicResponse::default()
                .with_topic(TopicName(s("t")))
                .with_partitions(vec![PartitionData::default()
                    .with_partition_index(1)
                    .with_error_code(0)
                    .with_high_watermark(10)
                    .with_records(Some(Bytes::from_static(b"message set bytes")))])]);
        let got = response_round_trip(ApiKey::Fetch, version, &ResponseKind::Fetch(resp.clone()));
        let ResponseKind::Fetch(got) = got else {
            panic!("not fetch")
        };
        assert_eq!(got.throttle_time_ms, resp.throttle_time_ms);
        let (g, w) = (
            &got.responses[0].partitions[0],
            &resp.responses[0].partitions[0],
        );
        assert_eq!(
            (
                g.partition_index,
                g.error_code,
                g.high_watermark,
                &g.records
            ),
            (
                w.partition_index,
                w.error_code,
                w.high_watermark,
                &w.records
            )
        );
    }
    let configs =
        DescribeConfigsResponse::default().with_results(vec![DescribeConfigsResult::default()
            .with_resource_type(2)
            .with_resource_name(s("t"))
            .with_configs(vec![
                DescribeConfigsResourceResult::default()
                    .with_name(s("retention.ms"))
                    .with_value(Some(s("1000")))
                    .with_config_source(1),
                DescribeConfigsResourceResult::default()
                    .with_name(s("cleanup.policy"))
                    .with_value(Some(s("delete")))
                    .with_config_source(CONFIG_SOURCE_DEFAULT),
            ])]);
    let ResponseKind::DescribeConfigs(got) = response_round_trip(
        ApiKey::DescribeConfigs,
        0,
        &ResponseKind::DescribeConfigs(configs),
    ) else {
        panic!("not DescribeConfigs")
    };
    let c = &got.results[0].configs;
    assert_eq!(c[0].value.as_deref(), Some("1000"));
    assert_eq!(c[0].config_source, -1, "not default");
    assert_eq!(c[1].config_source, CONFIG_SOURCE_DEFAULT);
}
