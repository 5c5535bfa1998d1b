//! Every served API at every served version gets an answer that decodes at that version,
//! with the right correlation id; ApiVersions at an unknown version is answered as v0 with
//! UNSUPPORTED_VERSION and the full list. The versions Kafka 4 dropped and Rafka serves
//! (Produce v0–2 with magic 0/1 message sets, Fetch v0–3 down-converted) round-trip with
//! librdkafka on the other side, and zstd is refused to clients too old for it.

use crate::common;

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

fn txn_id() -> kafka_protocol::messages::TransactionalId {
    kafka_protocol::messages::TransactionalId(StrBytes::from_static_str("sweep-txn"))
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
        // The transaction APIs, with ids nobody holds: each is answered with an error.
        ApiKey::AddPartitionsToTxn => {
            let r = kafka_protocol::messages::AddPartitionsToTxnRequest::default();
            RequestKind::AddPartitionsToTxn(if version < 4 {
                r.with_v3_and_below_transactional_id(txn_id())
                    .with_v3_and_below_producer_id(ProducerId(1))
            } else {
                r
            })
        }
        ApiKey::AddOffsetsToTxn => RequestKind::AddOffsetsToTxn(
            kafka_protocol::messages::AddOffsetsToTxnRequest::default()
                .with_transactional_id(txn_id())
                .with_producer_id(ProducerId(1))
                .with_group_id(group()),
        ),
        ApiKey::EndTxn => RequestKind::EndTxn(
            kafka_protocol::messages::EndTxnRequest::default()
                .with_transactional_id(txn_id())
                .with_producer_id(ProducerId(1)),
        ),
        ApiKey::WriteTxnMarkers => RequestKind::WriteTxnMarkers(Default::default()),
        ApiKey::TxnOffsetCommit => RequestKind::TxnOffsetCommit(
            kafka_protocol::messages::TxnOffsetCommitRequest::default()
                .with_transactional_id(txn_id())
                .with_group_id(group())
                .with_producer_id(ProducerId(1)),
        ),
        ApiKey::DescribeProducers => RequestKind::DescribeProducers(Default::default()),
        ApiKey::DescribeTransactions => RequestKind::DescribeTransactions(
            kafka_protocol::messages::DescribeTransactionsRequest::default()
                .with_transactional_ids(vec![txn_id()]),
        ),
        ApiKey::ListTransactions => RequestKind::ListTransactions(
            kafka_protocol::messages::ListTransactionsRequest::default().with_duration_filter(-1),
        ),
        // On this PLAINTEXT listener both answer ILLEGAL_SASL_STATE (tests/wire/sasl_raw.rs).
        ApiKey::SaslHandshake => RequestKind::SaslHandshake(
            kafka_protocol::messages::SaslHandshakeRequest::default()
                .with_mechanism(StrBytes::from_static_str("PLAIN")),
        ),
        ApiKey::SaslAuthenticate => RequestKind::SaslAuthenticate(Default::default()),
        // Describing every user; altering nothing.
        ApiKey::DescribeUserScramCredentials => {
            RequestKind::DescribeUserScramCredentials(Default::default())
        }
        ApiKey::AlterUserScramCredentials => {
            RequestKind::AlterUserScramCredentials(Default::default())
        }
        // Without an authorizer each is answered SECURITY_DISABLED.
        ApiKey::CreateAcls => RequestKind::CreateAcls(
            kafka_protocol::messages::CreateAclsRequest::default().with_creations(vec![
                kafka_protocol::messages::create_acls_request::AclCreation::default(),
            ]),
        ),
        ApiKey::DescribeAcls => RequestKind::DescribeAcls(Default::default()),
        ApiKey::DeleteAcls => RequestKind::DeleteAcls(
            kafka_protocol::messages::DeleteAclsRequest::default().with_filters(vec![
                kafka_protocol::messages::delete_acls_request::DeleteAclsFilter::default(),
            ]),
        ),
        // Describing every quota; altering nothing.
        ApiKey::DescribeClientQuotas => RequestKind::DescribeClientQuotas(Default::default()),
        ApiKey::AlterClientQuotas => RequestKind::AlterClientQuotas(Default::default()),
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
        advertised.contains(&(0, 0, 12)),
        "Produce advertised from v0"
    );
    // Kafka 4's `transaction.version` feature, finalized at 2.
    assert_eq!(r.supported_features.len(), 1);
    assert_eq!(&*r.supported_features[0].name, "transaction.version");
    assert_eq!(
        (
            r.supported_features[0].min_version,
            r.supported_features[0].max_version
        ),
        (0, 2)
    );
    assert_eq!(r.finalized_features.len(), 1);
    assert_eq!(r.finalized_features[0].max_version_level, 2);
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

// ---- Old clients: the versions Kafka 4 dropped (KIP-896), served as Kafka 3.9 did ----

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use rafka_protocol::legacy::message_set::{self, Message};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message as _, Timestamp};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const UNSUPPORTED_COMPRESSION_TYPE: i16 = 76;

/// Produce of one record set to one partition at `version`; the partition's response.
async fn produce_at(
    conn: &mut KafkaConn,
    version: i16,
    topic: &str,
    records: bytes::Bytes,
) -> produce_response::PartitionProduceResponse {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(common::topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    let ResponseKind::Produce(r) = conn
        .send(ApiKey::Produce, version, RequestKind::Produce(req))
        .await
    else {
        panic!("not a Produce response")
    };
    r.responses[0].partition_responses[0].clone()
}

/// Fetch of partition 0 from `offset` at `version`; the partition's data.
async fn fetch_at(
    conn: &mut KafkaConn,
    version: i16,
    topic: &str,
    offset: i64,
) -> fetch_response::PartitionData {
    let req = common::fetch_request(topic, Default::default(), 0, common::FetchArgs::at(offset));
    let ResponseKind::Fetch(r) = conn
        .send(ApiKey::Fetch, version, RequestKind::Fetch(req))
        .await
    else {
        panic!("not a Fetch response")
    };
    r.responses[0].partitions[0].clone()
}

fn old_message(key: &str, value: &str, ts: i64) -> Message {
    Message {
        offset: 0,
        timestamp: Some(ts),
        log_append_time: false,
        key: Some(bytes::Bytes::from(key.to_string())),
        value: Some(bytes::Bytes::from(value.to_string())),
    }
}

/// (key, value, timestamp) of every record of partition 0, read by librdkafka from the
/// beginning until `n` arrived.
fn read_with_librdkafka(addr: &str, topic: &str, n: usize) -> Vec<(String, String, Option<i64>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "old-formats-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).expect("assign");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut out = Vec::new();
    while out.len() < n && std::time::Instant::now() < deadline {
        match consumer.poll(std::time::Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let text =
                    |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).to_string();
                let ts = match m.timestamp() {
                    Timestamp::NotAvailable => None,
                    Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => Some(t),
                };
                out.push((text(m.key()), text(m.payload()), ts));
            }
            Some(Err(e)) => panic!("librdkafka: {e}"),
            None => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_v0_to_v2_message_sets_are_read_back_by_librdkafka() {
    let broker = start_broker(|_| {}).await;
    let addr = broker.addr();
    let mut conn = KafkaConn::connect(&addr).await;
    let topic = "old-produce";
    assert_eq!(common::create_topic(&mut conn, topic, 1, &[]).await, 0);
    // (Produce version, magic, codec): every combination an old client sends, with
    // the codecs of the old formats (none, gzip, snappy, lz4 in magic 1).
    let cases: &[(i16, i8, u8)] = &[
        (0, 0, 0),
        (0, 0, 1),
        (1, 0, 2),
        (1, 0, 0),
        (2, 1, 0),
        (2, 1, 1),
        (2, 1, 2),
        (2, 1, 3),
    ];
    let mut expected = Vec::new();
    let mut next_offset = 0;
    for (i, &(version, magic, codec)) in cases.iter().enumerate() {
        let messages: Vec<Message> = (0..3)
            .map(|j| {
                let ts = 1_700_000_000_000 + (i * 10 + j) as i64;
                let mut m = old_message(
                    &format!("k{i}-{j}"),
                    &format!("v{i}-{j}-m{magic}c{codec}"),
                    ts,
                );
                m.offset = j as i64;
                m
            })
            .collect();
        let set = message_set::encode(&messages, magic, codec).unwrap();
        let r = produce_at(&mut conn, version, topic, set).await;
        assert_eq!(
            r.error_code, 0,
            "Produce v{version} magic {magic} codec {codec}: {:?}",
            r.error_message
        );
        assert_eq!(r.base_offset, next_offset, "Produce v{version} base offset");
        next_offset += 3;
        for m in &messages {
            let text =
                |b: &Option<bytes::Bytes>| String::from_utf8(b.clone().unwrap().to_vec()).unwrap();
            // Magic 0 has no timestamp: librdkafka reports none.
            let ts = (magic == 1).then(|| m.timestamp.unwrap());
            expected.push((text(&m.key), text(&m.value), ts));
        }
    }
    // ListOffsets v0 answers the log end offset as its one-element list.
    assert_eq!(
        common::log_end_offset(&mut conn, topic, 0).await,
        next_offset
    );
    let req = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
            .with_name(common::topic_name(topic))
            .with_partitions(vec![
                list_offsets_request::ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-1),
            ])]);
    let ResponseKind::ListOffsets(lo) = conn
        .send(ApiKey::ListOffsets, 0, RequestKind::ListOffsets(req))
        .await
    else {
        panic!("not ListOffsets")
    };
    assert_eq!(lo.topics[0].partitions[0].offset, next_offset);

    let got = tokio::task::spawn_blocking({
        let addr = addr.clone();
        let n = expected.len();
        move || read_with_librdkafka(&addr, topic, n)
    })
    .await
    .unwrap();
    assert_eq!(got, expected);
    conn.check_alive().await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_v0_to_v3_down_converts_for_old_readers() {
    let broker = start_broker(|_| {}).await;
    let addr = broker.addr();
    let mut conn = KafkaConn::connect(&addr).await;
    let topic = "old-fetch";
    assert_eq!(common::create_topic(&mut conn, topic, 1, &[]).await, 0);
    // Batches as a modern client writes them: plain, gzip, lz4, with headers (dropped for
    // old readers).
    let mut written = Vec::new();
    for (b, compression) in [Compression::None, Compression::Gzip, Compression::Lz4]
        .into_iter()
        .enumerate()
    {
        let records: Vec<Record> = (0..4)
            .map(|j| {
                let n = b * 4 + j;
                written.push((
                    format!("k{n}"),
                    format!("v{n}"),
                    1_700_000_000_000 + n as i64,
                ));
                Record {
                    transactional: false,
                    control: false,
                    delete_horizon: false,
                    partition_leader_epoch: -1,
                    producer_id: -1,
                    producer_epoch: -1,
                    timestamp_type: TimestampType::Creation,
                    offset: j as i64,
                    sequence: j as i32 - 1,
                    timestamp: 1_700_000_000_000 + n as i64,
                    key: Some(format!("k{n}").into()),
                    value: Some(format!("v{n}").into()),
                    headers: [(
                        StrBytes::from_static_str("h"),
                        Some(bytes::Bytes::from_static(b"x")),
                    )]
                    .into_iter()
                    .collect(),
                }
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        let r = common::produce(&mut conn, topic, 0, buf.freeze()).await;
        assert_eq!(r.error_code, 0);
    }
    for version in 0..=3i16 {
        for from in [0i64, 5] {
            let p = fetch_at(&mut conn, version, topic, from).await;
            assert_eq!(p.error_code, 0, "Fetch v{version}");
            assert_eq!(p.high_watermark, 12);
            let set = p.records.unwrap();
            // Old readers read message sets: the magic byte sits where a batch has it.
            let magic = if version <= 1 { 0 } else { 1 };
            assert_eq!(set[16], magic as u8, "Fetch v{version} message format");
            let (messages, _) = message_set::decode(set).unwrap();
            // Whole stored batches come back: from offset 5 the second batch on.
            let first = if from == 0 { 0 } else { 4 };
            let got: Vec<(String, String, Option<i64>)> = messages
                .iter()
                .map(|m| {
                    let t = |b: &Option<bytes::Bytes>| {
                        String::from_utf8(b.clone().unwrap().to_vec()).unwrap()
                    };
                    (t(&m.key), t(&m.value), m.timestamp)
                })
                .collect();
            let want: Vec<(String, String, Option<i64>)> = written[first..]
                .iter()
                .map(|(k, v, ts)| (k.clone(), v.clone(), (magic == 1).then_some(*ts)))
                .collect();
            assert_eq!(got, want, "Fetch v{version} from {from}");
            // Offsets: absolute, except inside a magic-1 compressed wrapper (relative).
            let first_plain = messages[0].offset;
            if from == 0 {
                assert_eq!(first_plain, 0);
            }
        }
    }
    conn.check_alive().await;
    broker.shutdown().await;
}

fn zstd_batch() -> bytes::Bytes {
    let records: Vec<Record> = (0..2)
        .map(|j| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: j,
            sequence: j as i32 - 1,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(bytes::Bytes::from_static(b"zstd value")),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::Zstd,
        },
    )
    .unwrap();
    buf.freeze()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zstd_is_refused_below_produce_v7_and_fetch_v10() {
    let broker = start_broker(|_| {}).await;
    let mut conn = KafkaConn::connect(&broker.addr()).await;
    let topic = "old-zstd";
    assert_eq!(common::create_topic(&mut conn, topic, 1, &[]).await, 0);
    for version in 0..=6i16 {
        let r = produce_at(&mut conn, version, topic, zstd_batch()).await;
        assert_eq!(
            r.error_code, UNSUPPORTED_COMPRESSION_TYPE,
            "Produce v{version}"
        );
        assert_eq!(r.base_offset, -1);
    }
    assert_eq!(
        common::log_end_offset(&mut conn, topic, 0).await,
        0,
        "nothing written"
    );
    // A plain batch first, then zstd at v7: old fetchers get the error for the partition.
    let plain = message_set::encode(&[old_message("k", "v", 1)], 1, 0).unwrap();
    assert_eq!(produce_at(&mut conn, 2, topic, plain).await.error_code, 0);
    let r = produce_at(&mut conn, 7, topic, zstd_batch()).await;
    assert_eq!((r.error_code, r.base_offset), (0, 1));
    for version in [0i16, 3, 4, 9] {
        let p = fetch_at(&mut conn, version, topic, 1).await;
        assert_eq!(
            p.error_code, UNSUPPORTED_COMPRESSION_TYPE,
            "Fetch v{version}"
        );
        assert!(p.records.unwrap_or_default().is_empty());
        // The plain batch before it is still readable, and only it comes back.
        let p = fetch_at(&mut conn, version, topic, 0).await;
        assert_eq!(p.error_code, 0, "Fetch v{version} from 0");
        let records = p.records.unwrap();
        if version < 4 {
            let (messages, _) = message_set::decode(records).unwrap();
            assert_eq!(messages.len(), 1);
            assert_eq!(messages[0].value.as_deref(), Some(&b"v"[..]));
        } else {
            let batches = rafka_core::RecordBatch::split_all(records).unwrap();
            assert_eq!(batches.len(), 1);
            assert_eq!(batches[0].compression(), rafka_core::CompressionType::None);
        }
    }
    for version in [10i16, 12] {
        let p = fetch_at(&mut conn, version, topic, 1).await;
        assert_eq!(p.error_code, 0, "Fetch v{version}");
        let batches = rafka_core::RecordBatch::split_all(p.records.unwrap()).unwrap();
        assert_eq!(batches[0].compression(), rafka_core::CompressionType::Zstd);
        assert_eq!(batches[0].record_count(), 2);
    }
    conn.check_alive().await;
    broker.shutdown().await;
}
