//! Every served API at every served version gets an answer that decodes at that version,
//! with the right correlation id. Also the two deliberate exceptions: Produce v0–2 are
//! advertised but close the connection, and ApiVersions at an unknown version is answered
//! as v0 with UNSUPPORTED_VERSION and the full list.

mod common;

use bytes::{Buf, BytesMut};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};

use common::{decode_response, encode, start_broker, KafkaConn};
use rafka_protocol::versions::SERVED;

const UNSUPPORTED_VERSION: i16 = 35;
/// A consumer group no test creates.
const GROUP: &str = "version-sweep-group";

fn group() -> GroupId {
    GroupId(StrBytes::from_static_str(GROUP))
}

/// A minimal valid request of `key` at `version`.
fn minimal_request(key: ApiKey, version: i16) -> RequestKind {
    match key {
        ApiKey::Produce => {
            RequestKind::Produce(ProduceRequest::default().with_acks(1).with_timeout_ms(1000))
        }
        ApiKey::Fetch => RequestKind::Fetch(
            FetchRequest::default()
                .with_replica_id((-1).into())
                .with_max_wait_ms(0)
                .with_min_bytes(0),
        ),
        ApiKey::ListOffsets => {
            RequestKind::ListOffsets(ListOffsetsRequest::default().with_replica_id((-1).into()))
        }
        ApiKey::Metadata => RequestKind::Metadata(
            MetadataRequest::default()
                .with_topics(Some(vec![]))
                // The field exists from v4; below it, creation is implied (true).
                .with_allow_auto_topic_creation(version < 4),
        ),
        ApiKey::ApiVersions => RequestKind::ApiVersions(
            ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("rafka-it"))
                .with_client_software_version(StrBytes::from_static_str("1")),
        ),
        ApiKey::CreateTopics => {
            RequestKind::CreateTopics(CreateTopicsRequest::default().with_timeout_ms(1000))
        }
        ApiKey::DeleteTopics => {
            RequestKind::DeleteTopics(DeleteTopicsRequest::default().with_timeout_ms(1000))
        }
        ApiKey::DeleteRecords => {
            RequestKind::DeleteRecords(DeleteRecordsRequest::default().with_timeout_ms(1000))
        }
        ApiKey::InitProducerId => RequestKind::InitProducerId(
            InitProducerIdRequest::default()
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
                .with_transaction_timeout_ms(60_000),
        ),
        ApiKey::OffsetForLeaderEpoch => RequestKind::OffsetForLeaderEpoch(
            OffsetForLeaderEpochRequest::default().with_replica_id((-1).into()),
        ),
        ApiKey::DescribeConfigs => RequestKind::DescribeConfigs(DescribeConfigsRequest::default()),
        ApiKey::AlterConfigs => RequestKind::AlterConfigs(AlterConfigsRequest::default()),
        ApiKey::DescribeLogDirs => RequestKind::DescribeLogDirs(
            // Null means "every topic"; an empty list means none, valid at every version.
            DescribeLogDirsRequest::default().with_topics(Some(vec![])),
        ),
        ApiKey::CreatePartitions => {
            RequestKind::CreatePartitions(CreatePartitionsRequest::default().with_timeout_ms(1000))
        }
        ApiKey::IncrementalAlterConfigs => {
            RequestKind::IncrementalAlterConfigs(IncrementalAlterConfigsRequest::default())
        }
        ApiKey::DescribeCluster => RequestKind::DescribeCluster(DescribeClusterRequest::default()),
        ApiKey::DescribeTopicPartitions => RequestKind::DescribeTopicPartitions(
            DescribeTopicPartitionsRequest::default().with_response_partition_limit(100),
        ),
        ApiKey::OffsetCommit => {
            RequestKind::OffsetCommit(OffsetCommitRequest::default().with_group_id(group()))
        }
        ApiKey::OffsetFetch => {
            let r = OffsetFetchRequest::default();
            RequestKind::OffsetFetch(if version < 8 {
                r.with_group_id(group())
            } else {
                r.with_groups(vec![
                    OffsetFetchRequestGroup::default().with_group_id(group())
                ])
            })
        }
        ApiKey::FindCoordinator => {
            let r = FindCoordinatorRequest::default();
            RequestKind::FindCoordinator(if version < 4 {
                r.with_key(StrBytes::from_static_str(GROUP))
            } else {
                r.with_coordinator_keys(vec![StrBytes::from_static_str(GROUP)])
            })
        }
        // No protocols: refused at once (INCONSISTENT_GROUP_PROTOCOL in Kafka), so the
        // sweep never waits for a rebalance.
        ApiKey::JoinGroup => RequestKind::JoinGroup(
            JoinGroupRequest::default()
                .with_group_id(group())
                .with_session_timeout_ms(10_000)
                .with_protocol_type(StrBytes::from_static_str("consumer")),
        ),
        ApiKey::Heartbeat => RequestKind::Heartbeat(
            HeartbeatRequest::default()
                .with_group_id(group())
                .with_generation_id(-1),
        ),
        ApiKey::LeaveGroup => {
            RequestKind::LeaveGroup(LeaveGroupRequest::default().with_group_id(group()))
        }
        ApiKey::SyncGroup => RequestKind::SyncGroup(
            SyncGroupRequest::default()
                .with_group_id(group())
                .with_generation_id(-1),
        ),
        ApiKey::DescribeGroups => {
            RequestKind::DescribeGroups(DescribeGroupsRequest::default().with_groups(vec![group()]))
        }
        ApiKey::ListGroups => RequestKind::ListGroups(ListGroupsRequest::default()),
        ApiKey::DeleteGroups => RequestKind::DeleteGroups(DeleteGroupsRequest::default()),
        ApiKey::OffsetDelete => {
            RequestKind::OffsetDelete(OffsetDeleteRequest::default().with_group_id(group()))
        }
        // A heartbeat from an unknown member: answered at once with UNKNOWN_MEMBER_ID.
        ApiKey::ConsumerGroupHeartbeat => RequestKind::ConsumerGroupHeartbeat(
            kafka_protocol::messages::ConsumerGroupHeartbeatRequest::default()
                .with_group_id(group())
                .with_member_id(StrBytes::from_static_str("sweep-member"))
                .with_member_epoch(1),
        ),
        ApiKey::ConsumerGroupDescribe => RequestKind::ConsumerGroupDescribe(
            kafka_protocol::messages::ConsumerGroupDescribeRequest::default()
                .with_group_ids(vec![group()]),
        ),
        other => panic!("the version sweep has no minimal request for {other:?}: add one"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_served_version_is_answered() {
    let broker = start_broker(|_| {}).await;
    let mut conn = KafkaConn::connect(&broker.addr()).await;
    let mut n = 0;
    for api in SERVED {
        for version in api.served_min..=api.max {
            // `send` checks the correlation id and that the body decodes at `version`
            // with nothing left over.
            let resp = conn
                .send(api.key, version, minimal_request(api.key, version))
                .await;
            let top_error = match &resp {
                ResponseKind::ApiVersions(r) => r.error_code,
                ResponseKind::Fetch(r) => r.error_code,
                ResponseKind::InitProducerId(r) => r.error_code,
                ResponseKind::DescribeCluster(r) => r.error_code,
                ResponseKind::ListGroups(r) => r.error_code,
                ResponseKind::OffsetFetch(r) if version < 8 => r.error_code,
                _ => 0,
            };
            assert_eq!(top_error, 0, "{:?} v{version}: top-level error", api.key);
            n += 1;
        }
    }
    assert!(n > 100, "swept only {n} versions");
    // The connection survived the whole sweep.
    conn.check_alive().await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_versions_advertises_exactly_the_served_table() {
    let broker = start_broker(|_| {}).await;
    let mut conn = KafkaConn::connect(&broker.addr()).await;
    let ResponseKind::ApiVersions(r) = conn
        .send(
            ApiKey::ApiVersions,
            3,
            minimal_request(ApiKey::ApiVersions, 3),
        )
        .await
    else {
        panic!("not an ApiVersions response")
    };
    assert_eq!(r.error_code, 0);
    let advertised: Vec<(i16, i16, i16)> = r
        .api_keys
        .iter()
        .map(|k| (k.api_key, k.min_version, k.max_version))
        .collect();
    let served: Vec<(i16, i16, i16)> = SERVED
        .iter()
        .map(|a| (a.key as i16, a.advertised_min, a.max))
        .collect();
    assert_eq!(advertised, served);
    assert!(
        advertised.contains(&(0, 0, 11)),
        "Produce advertised from v0"
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_v0_to_v2_are_advertised_but_close_the_connection() {
    let broker = start_broker(|_| {}).await;
    // Kept open across the refusals: other connections are unaffected.
    let mut bystander = KafkaConn::connect(&broker.addr()).await;
    for version in 0..=2i16 {
        let mut conn = KafkaConn::connect(&broker.addr()).await;
        conn.check_alive().await;
        // kafka-protocol cannot encode Produce below v3; v0–2 share v3's request header
        // (v1), so patching the version field gives the frame an old client would send.
        let frame = encode(ApiKey::Produce, 3, 77, &minimal_request(ApiKey::Produce, 3));
        let mut frame = BytesMut::from(&frame[..]);
        frame[6..8].copy_from_slice(&version.to_be_bytes());
        conn.write_raw(&frame).await;
        conn.expect_closed().await;
    }
    bystander.check_alive().await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_versions_at_an_unknown_version_is_answered_as_v0() {
    let broker = start_broker(|_| {}).await;
    let mut conn = KafkaConn::connect(&broker.addr()).await;
    for version in [5i16, 99, i16::MAX] {
        let frame = encode(
            ApiKey::ApiVersions,
            3,
            4242,
            &minimal_request(ApiKey::ApiVersions, 3),
        );
        let mut frame = BytesMut::from(&frame[..]);
        frame[6..8].copy_from_slice(&version.to_be_bytes());
        conn.write_raw(&frame).await;
        let mut resp = conn.read_frame().await.expect("an answer, not a close");
        // Response header v0 is just the correlation id; the body is ApiVersions v0.
        let raw = resp.clone();
        assert_eq!(resp.get_i32(), 4242, "correlation id");
        let body = ApiVersionsResponse::decode(&mut resp, 0).expect("decodes as v0");
        assert_eq!(resp.remaining(), 0, "trailing bytes after a v0 body");
        assert_eq!(body.error_code, UNSUPPORTED_VERSION, "v{version}");
        let api_versions = body
            .api_keys
            .iter()
            .find(|k| k.api_key == ApiKey::ApiVersions as i16)
            .expect("ApiVersions range listed");
        assert_eq!((api_versions.min_version, api_versions.max_version), (0, 4));
        assert_eq!(body.api_keys.len(), SERVED.len());
        // The same bytes also decode through the generic helper.
        let ResponseKind::ApiVersions(again) = decode_response(ApiKey::ApiVersions, 0, 4242, raw)
        else {
            panic!("not ApiVersions")
        };
        assert_eq!(again, body);
    }
    // The client retries at a version the broker knows, on the same connection.
    conn.check_alive().await;
    broker.shutdown().await;
}
