//! Topic administration through librdkafka's admin client and consumer APIs: create,
//! describe and delete topics, add partitions, describe and alter configs, list offsets by
//! timestamp, delete records; per-group configs (resource type GROUP) and the authorized
//! operations Kafka reports without an authorizer.

use crate::common;
use crate::support;

use std::time::Duration;

use rdkafka::admin::{
    AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_topic_partitions_request::TopicRequest;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ConsumerGroupDescribeRequest, ConsumerGroupHeartbeatRequest, DescribeClusterRequest,
    DescribeConfigsRequest, DescribeTopicPartitionsRequest, GroupId,
    IncrementalAlterConfigsRequest, MetadataRequest, RequestKind, ResponseKind,
};
use kafka_protocol::ResponseError;

use common::{str_bytes as s, topic_name, KafkaConn};
use support::{admin, client_config, create_topic, producer, start_broker};

const T: Duration = Duration::from_secs(10);

fn reader(addr: &str) -> BaseConsumer {
    client_config(addr)
        .set("group.id", "admin-test")
        .create()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_partitions_and_configs() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path()).await;
    let addr = broker.bootstrap_address();
    let admin = admin(&addr);
    let opts = AdminOptions::new().operation_timeout(Some(T));

    create_topic(&addr, "admin-a", 2, &[("retention.ms", "3600000")]).await;
    // Creating it again fails with TOPIC_ALREADY_EXISTS; a bad config with INVALID_CONFIG.
    let again = admin
        .create_topics(
            &[NewTopic::new("admin-a", 1, TopicReplication::Fixed(1))],
            &opts,
        )
        .await
        .unwrap();
    assert_eq!(
        again[0].as_ref().unwrap_err().1,
        RDKafkaErrorCode::TopicAlreadyExists
    );
    let bad = admin
        .create_topics(
            &[NewTopic::new("admin-b", 1, TopicReplication::Fixed(1))
                .set("cleanup.policy", "compact,shred")],
            &opts,
        )
        .await
        .unwrap();
    assert_eq!(
        bad[0].as_ref().unwrap_err().1,
        RDKafkaErrorCode::InvalidConfig
    );
    let rf = admin
        .create_topics(
            &[NewTopic::new("admin-c", 1, TopicReplication::Fixed(3))],
            &opts,
        )
        .await
        .unwrap();
    assert_eq!(
        rf[0].as_ref().unwrap_err().1,
        RDKafkaErrorCode::InvalidReplicationFactor
    );

    // Describe: the override and a default.
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic("admin-a")], &opts)
        .await
        .unwrap();
    let res = described[0].as_ref().unwrap();
    assert_eq!(
        res.get("retention.ms").unwrap().value.as_deref(),
        Some("3600000")
    );
    assert!(!res.get("retention.ms").unwrap().is_default);
    assert_eq!(
        res.get("cleanup.policy").unwrap().value.as_deref(),
        Some("delete")
    );
    assert!(res.get("cleanup.policy").unwrap().is_default);

    // Alter, then describe again.
    let altered = admin
        .alter_configs(
            &[AlterConfig::new(ResourceSpecifier::Topic("admin-a")).set("retention.ms", "1234")],
            &opts,
        )
        .await
        .unwrap();
    assert!(altered[0].is_ok(), "{:?}", altered[0]);
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic("admin-a")], &opts)
        .await
        .unwrap();
    let res = described[0].as_ref().unwrap();
    assert_eq!(
        res.get("retention.ms").unwrap().value.as_deref(),
        Some("1234")
    );

    // Broker configs are described too.
    let described = admin
        .describe_configs(&[ResourceSpecifier::Broker(0)], &opts)
        .await
        .unwrap();
    let res = described[0].as_ref().unwrap();
    assert_eq!(
        res.get("num.partitions").unwrap().value.as_deref(),
        Some("1")
    );

    // Add partitions: 2 -> 5; shrinking is refused.
    let grown = admin
        .create_partitions(&[NewPartitions::new("admin-a", 5)], &opts)
        .await
        .unwrap();
    assert!(grown[0].is_ok(), "{:?}", grown[0]);
    let shrunk = admin
        .create_partitions(&[NewPartitions::new("admin-a", 3)], &opts)
        .await
        .unwrap();
    assert_eq!(
        shrunk[0].as_ref().unwrap_err().1,
        RDKafkaErrorCode::InvalidPartitions
    );
    let a = addr.clone();
    let count = tokio::task::spawn_blocking(move || {
        let md = reader(&a).fetch_metadata(Some("admin-a"), T).unwrap();
        md.topics()[0].partitions().len()
    })
    .await
    .unwrap();
    assert_eq!(count, 5);

    // Delete; then Metadata no longer lists it.
    let deleted = admin.delete_topics(&["admin-a"], &opts).await.unwrap();
    assert!(deleted[0].is_ok());
    let missing = admin.delete_topics(&["admin-a"], &opts).await.unwrap();
    assert_eq!(
        missing[0].as_ref().unwrap_err().1,
        RDKafkaErrorCode::UnknownTopicOrPartition
    );
    let a = addr.clone();
    let names = tokio::task::spawn_blocking(move || {
        let md = reader(&a).fetch_metadata(None, T).unwrap();
        md.topics()
            .iter()
            .map(|t| t.name().to_string())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert!(!names.contains(&"admin-a".to_string()), "{names:?}");
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_by_timestamp_and_delete_records() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path()).await;
    let addr = broker.bootstrap_address();
    create_topic(&addr, "times", 1, &[]).await;
    let p = producer(&addr, &[("linger.ms", "0")]);
    // One message per batch (awaited one by one), timestamps 1000, 2000, ... 10000.
    for i in 0..10i64 {
        let v = format!("v{i}");
        p.send(
            FutureRecord::<(), _>::to("times")
                .payload(&v)
                .partition(0)
                .timestamp(1000 * (i + 1)),
            T,
        )
        .await
        .unwrap();
    }
    let a = addr.clone();
    tokio::task::spawn_blocking(move || {
        let c = reader(&a);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("times", 0, Offset::Offset(4500))
            .unwrap();
        let found = c.offsets_for_times(tpl, T).unwrap();
        assert_eq!(
            found.elements()[0].offset(),
            Offset::Offset(4),
            "first record at or after 4500 ms"
        );
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("times", 0, Offset::Offset(99_999))
            .unwrap();
        let found = c.offsets_for_times(tpl, T).unwrap();
        assert_eq!(
            found.elements()[0].offset(),
            Offset::End,
            "no record that late"
        );
        assert_eq!(c.fetch_watermarks("times", 0, T).unwrap(), (0, 10));
    })
    .await
    .unwrap();

    let admin = admin(&addr);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("times", 0, Offset::Offset(6))
        .unwrap();
    let res = admin
        .delete_records(&tpl, &AdminOptions::new().operation_timeout(Some(T)))
        .await
        .unwrap();
    assert_eq!(
        res.elements()[0].offset(),
        Offset::Offset(6),
        "new low watermark"
    );
    let a = addr.clone();
    tokio::task::spawn_blocking(move || {
        assert_eq!(reader(&a).fetch_watermarks("times", 0, T).unwrap(), (6, 10));
    })
    .await
    .unwrap();
    broker.shutdown().await.unwrap();
}

/// Kafka 4 without an authorizer (`AclEntry.supportedOperations`, as a bit field of
/// `AclOperation` codes): READ 3, WRITE 4, CREATE 5, DELETE 6, ALTER 7, DESCRIBE 8,
/// DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11 for a topic (8 operations, what librdkafka's
/// admin test expects) ...
const TOPIC_OPERATIONS: i32 =
    1 << 3 | 1 << 4 | 1 << 5 | 1 << 6 | 1 << 7 | 1 << 8 | 1 << 10 | 1 << 11;
/// ... and CREATE 5, ALTER 7, DESCRIBE 8, CLUSTER_ACTION 9, DESCRIBE_CONFIGS 10,
/// ALTER_CONFIGS 11, IDEMPOTENT_WRITE 12 for the cluster (7).
const CLUSTER_OPERATIONS: i32 = 1 << 5 | 1 << 7 | 1 << 8 | 1 << 9 | 1 << 10 | 1 << 11 | 1 << 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorized_operations_are_all_of_the_resource_type_when_asked_for() {
    assert_eq!(TOPIC_OPERATIONS.count_ones(), 8);
    assert_eq!(CLUSTER_OPERATIONS.count_ones(), 7);
    let b = common::start_broker(|_| {}).await;
    let addr = b.addr();
    create_topic(&addr, "ops", 2, &[]).await;
    let mut conn = KafkaConn::connect(&addr).await;
    for asked in [false, true] {
        let want = |ops: i32| if asked { ops } else { i32::MIN };
        // Metadata v10 still carries the cluster field; v12 only the topic one.
        for version in [10, 12] {
            let ResponseKind::Metadata(m) = conn
                .send(
                    ApiKey::Metadata,
                    version,
                    RequestKind::Metadata(
                        MetadataRequest::default()
                            .with_topics(Some(vec![
                                MetadataRequestTopic::default().with_name(Some(topic_name("ops")))
                            ]))
                            .with_include_topic_authorized_operations(asked)
                            .with_include_cluster_authorized_operations(asked && version < 11),
                    ),
                )
                .await
            else {
                panic!()
            };
            assert_eq!(m.topics[0].error_code, 0);
            assert_eq!(
                m.topics[0].topic_authorized_operations,
                want(TOPIC_OPERATIONS),
                "Metadata v{version}"
            );
            if version < 11 {
                assert_eq!(m.cluster_authorized_operations, want(CLUSTER_OPERATIONS));
            }
        }
        let ResponseKind::DescribeTopicPartitions(d) = conn
            .send(
                ApiKey::DescribeTopicPartitions,
                0,
                RequestKind::DescribeTopicPartitions(
                    DescribeTopicPartitionsRequest::default()
                        .with_topics(vec![TopicRequest::default().with_name(topic_name("ops"))])
                        .with_response_partition_limit(100),
                ),
            )
            .await
        else {
            panic!()
        };
        assert_eq!(d.topics[0].partitions.len(), 2);
        // DescribeTopicPartitions has no flag: Kafka always includes them.
        assert_eq!(d.topics[0].topic_authorized_operations, TOPIC_OPERATIONS);
        let ResponseKind::DescribeCluster(c) = conn
            .send(
                ApiKey::DescribeCluster,
                1,
                RequestKind::DescribeCluster(
                    DescribeClusterRequest::default()
                        .with_include_cluster_authorized_operations(asked),
                ),
            )
            .await
        else {
            panic!()
        };
        assert_eq!(c.cluster_authorized_operations, want(CLUSTER_OPERATIONS));
    }
    b.shutdown().await;
}

/// One DescribeConfigs of a GROUP resource: (name, value, source) of each entry.
async fn describe_group(conn: &mut KafkaConn, group: &str) -> (i16, Vec<(String, String, i8)>) {
    let ResponseKind::DescribeConfigs(d) = conn
        .send(
            ApiKey::DescribeConfigs,
            4,
            RequestKind::DescribeConfigs(DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(32)
                    .with_resource_name(s(group))
                    .with_configuration_keys(None),
            ])),
        )
        .await
    else {
        panic!()
    };
    let r = &d.results[0];
    let entries = r
        .configs
        .iter()
        .map(|c| {
            (
                c.name.to_string(),
                c.value.as_deref().unwrap_or_default().to_string(),
                c.config_source,
            )
        })
        .collect();
    (r.error_code, entries)
}

async fn alter_group(conn: &mut KafkaConn, group: &str, set: &[(&str, Option<&str>)]) -> i16 {
    let ResponseKind::IncrementalAlterConfigs(r) = conn
        .send(
            ApiKey::IncrementalAlterConfigs,
            1,
            RequestKind::IncrementalAlterConfigs(
                IncrementalAlterConfigsRequest::default().with_resources(vec![
                    AlterConfigsResource::default()
                        .with_resource_type(32)
                        .with_resource_name(s(group))
                        .with_configs(
                            set.iter()
                                .map(|(k, v)| {
                                    AlterableConfig::default()
                                        .with_name(s(k))
                                        .with_config_operation(if v.is_some() { 0 } else { 1 })
                                        .with_value(v.map(s))
                                })
                                .collect(),
                        ),
                ]),
            ),
        )
        .await
    else {
        panic!()
    };
    r.responses[0].error_code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_configs_are_described_altered_and_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let configure = |cfg: &mut rafka_broker::Config| {
        cfg.broker.offsets_topic_num_partitions = 2;
        cfg.broker.group_consumer_min_session_timeout_ms = 1_000;
        cfg.broker.group_consumer_min_heartbeat_interval_ms = 100;
    };
    let broker = support::start_broker_with(dir.path(), configure).await;
    let addr = broker.bootstrap_address();
    create_topic(&addr, "gcfg", 1, &[]).await;

    // librdkafka's admin client describes a group's configs: Kafka 4's six group configs,
    // all broker defaults for a group nobody configured (which need not exist).
    let admin = admin(&addr);
    let described = admin
        .describe_configs(&[ResourceSpecifier::Group("g-cfg")], &AdminOptions::new())
        .await
        .unwrap();
    let entries = &described[0].as_ref().expect("described").entries;
    let mut names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "consumer.heartbeat.interval.ms",
            "consumer.session.timeout.ms",
            "share.auto.offset.reset",
            "share.heartbeat.interval.ms",
            "share.record.lock.duration.ms",
            "share.session.timeout.ms",
        ]
    );
    let value = |n: &str| {
        entries
            .iter()
            .find(|e| e.name == n)
            .and_then(|e| e.value.clone())
    };
    assert_eq!(
        value("consumer.session.timeout.ms").as_deref(),
        Some("45000")
    );
    assert_eq!(
        value("consumer.heartbeat.interval.ms").as_deref(),
        Some("5000")
    );
    assert_eq!(value("share.auto.offset.reset").as_deref(), Some("latest"));
    assert!(entries.iter().all(|e| e.is_default && !e.is_read_only));

    // IncrementalAlterConfigs: bad names and values are INVALID_CONFIG and change nothing.
    let mut conn = KafkaConn::connect(&addr).await;
    let invalid = ResponseError::InvalidConfig.code();
    for bad in [
        [("consumer.bogus.ms", Some("1"))],
        [("consumer.session.timeout.ms", Some("soon"))],
        [("consumer.session.timeout.ms", Some("999"))],
        [("consumer.heartbeat.interval.ms", Some("15001"))],
        [("share.auto.offset.reset", Some("middle"))],
    ] {
        assert_eq!(
            alter_group(&mut conn, "g-cfg", &bad).await,
            invalid,
            "{bad:?}"
        );
    }
    assert_eq!(
        alter_group(
            &mut conn,
            "g-cfg",
            &[
                ("consumer.session.timeout.ms", Some("1500")),
                ("consumer.heartbeat.interval.ms", Some("1500")),
            ],
        )
        .await,
        invalid,
        "the session timeout must exceed the heartbeat interval"
    );
    let (e, before) = describe_group(&mut conn, "g-cfg").await;
    assert_eq!(e, 0);
    assert_eq!(before.len(), 6);
    assert!(
        before.iter().all(|(_, _, source)| *source == 5),
        "{before:?}"
    );
    assert_eq!(
        alter_group(
            &mut conn,
            "g-cfg",
            &[
                ("consumer.session.timeout.ms", Some("1500")),
                ("consumer.heartbeat.interval.ms", Some("250")),
            ],
        )
        .await,
        0
    );
    let (_, after) = describe_group(&mut conn, "g-cfg").await;
    let entry = |n: &str| after.iter().find(|(k, _, _)| k == n).cloned().unwrap();
    // Source 8 is Kafka's GROUP_CONFIG.
    assert_eq!(
        entry("consumer.session.timeout.ms"),
        ("consumer.session.timeout.ms".into(), "1500".into(), 8)
    );
    assert_eq!(entry("consumer.heartbeat.interval.ms").1, "250");
    assert_eq!(entry("share.session.timeout.ms").2, 5);

    // Honoured: a member is told the group's heartbeat interval, and is removed after the
    // group's session timeout (1.5 s, where the broker default is 45 s).
    let hb = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s("g-cfg")))
        .with_member_id(s("m-cfg"))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(10_000)
        .with_subscribed_topic_names(Some(vec![topic_name("gcfg")]));
    let ResponseKind::ConsumerGroupHeartbeat(joined) = conn
        .send(
            ApiKey::ConsumerGroupHeartbeat,
            1,
            RequestKind::ConsumerGroupHeartbeat(hb),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.heartbeat_interval_ms, 250);
    // Silent from now on: ConsumerGroupDescribe (which is no heartbeat) until it is gone.
    let silent_since = std::time::Instant::now();
    loop {
        let ResponseKind::ConsumerGroupDescribe(d) = conn
            .send(
                ApiKey::ConsumerGroupDescribe,
                0,
                RequestKind::ConsumerGroupDescribe(
                    ConsumerGroupDescribeRequest::default()
                        .with_group_ids(vec![GroupId(s("g-cfg"))]),
                ),
            )
            .await
        else {
            panic!()
        };
        if d.groups[0].members.is_empty() {
            break;
        }
        assert!(silent_since.elapsed() < T, "the member never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        silent_since.elapsed() >= Duration::from_millis(1_400),
        "expired after {:?}, before the group's session timeout",
        silent_since.elapsed()
    );
    let beat = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s("g-cfg")))
        .with_member_id(s("m-cfg"))
        .with_member_epoch(joined.member_epoch);
    let ResponseKind::ConsumerGroupHeartbeat(gone) = conn
        .send(
            ApiKey::ConsumerGroupHeartbeat,
            1,
            RequestKind::ConsumerGroupHeartbeat(beat),
        )
        .await
    else {
        panic!()
    };
    let gone = gone.error_code;
    assert_eq!(gone, ResponseError::UnknownMemberId.code());

    // The overrides survive a restart (they are records in __consumer_offsets), and
    // DELETE returns a key to the broker default.
    drop(conn);
    broker.shutdown().await.unwrap();
    let broker = support::start_broker_with(dir.path(), configure).await;
    let addr = broker.bootstrap_address();
    let mut conn = KafkaConn::connect(&addr).await;
    let (_, restarted) = describe_group(&mut conn, "g-cfg").await;
    assert_eq!(restarted, after);
    assert_eq!(
        alter_group(&mut conn, "g-cfg", &[("consumer.session.timeout.ms", None)]).await,
        0
    );
    let (_, reset) = describe_group(&mut conn, "g-cfg").await;
    assert!(reset.contains(&("consumer.session.timeout.ms".into(), "45000".into(), 5)));
    assert_eq!(
        describe_group(&mut conn, "").await.0,
        ResponseError::InvalidRequest.code()
    );
    broker.shutdown().await.unwrap();
}

/// The Kafka topic configs tools set are accepted (and described back as set); a value a
/// single node cannot give is refused with INVALID_CONFIG.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_topic_configs_tools_set_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path()).await;
    let addr = broker.bootstrap_address();
    let admin = admin(&addr);
    let opts = AdminOptions::new().operation_timeout(Some(T));
    let set = [
        ("compression.type", "zstd"),
        ("min.insync.replicas", "1"),
        ("unclean.leader.election.enable", "false"),
        ("message.timestamp.before.max.ms", "86400000"),
        ("message.timestamp.after.max.ms", "3600000"),
        ("segment.jitter.ms", "1000"),
        ("preallocate", "true"),
        ("flush.messages", "10000"),
        ("flush.ms", "1000"),
        ("delete.retention.ms", "86400000"),
        ("min.compaction.lag.ms", "0"),
    ];
    let mut topic = NewTopic::new("tool-configs", 1, TopicReplication::Fixed(1));
    for (k, v) in set {
        topic = topic.set(k, v);
    }
    let created = admin.create_topics(&[topic], &opts).await.unwrap();
    assert!(created[0].is_ok(), "{:?}", created[0]);
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic("tool-configs")], &opts)
        .await
        .unwrap();
    let res = described[0].as_ref().unwrap();
    for (k, v) in set {
        let e = res.get(k).unwrap_or_else(|| panic!("{k} described"));
        assert_eq!((e.value.as_deref(), e.is_default), (Some(v), false), "{k}");
    }
    assert_eq!(
        res.get("segment.index.bytes").unwrap().value.as_deref(),
        Some("10485760"),
        "an unset Kafka config is described with Kafka's default"
    );
    let refused = admin
        .create_topics(
            &[NewTopic::new("isr-2", 1, TopicReplication::Fixed(1))
                .set("min.insync.replicas", "2")],
            &opts,
        )
        .await
        .unwrap();
    assert_eq!(
        refused[0].as_ref().unwrap_err().1,
        RDKafkaErrorCode::InvalidConfig
    );
    let altered = admin
        .alter_configs(
            &[AlterConfig::new(ResourceSpecifier::Topic("tool-configs"))
                .set("remote.storage.enable", "true")],
            &opts,
        )
        .await
        .unwrap();
    // The rdkafka crate reports every AlterConfigs resource as Ok (it drops the per-resource
    // error), so the refusal shows in the data: nothing was replaced.
    assert_eq!(altered.len(), 1);
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic("tool-configs")], &opts)
        .await
        .unwrap();
    let res = described[0].as_ref().unwrap();
    let e = res.get("remote.storage.enable").unwrap();
    assert_eq!((e.value.as_deref(), e.is_default), (Some("false"), true));
    let e = res.get("compression.type").unwrap();
    assert_eq!((e.value.as_deref(), e.is_default), (Some("zstd"), false));
    broker.shutdown().await.unwrap();
}

/// The `.log` files of partition `dir_name` (`topic-0`) anywhere under `root`.
fn segment_files(root: &std::path::Path, dir_name: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "log")
                && d.file_name().is_some_and(|n| n == dir_name)
            {
                out.push(p);
            }
        }
    }
    out
}

/// The broker default `log.preallocate` (`storage.log.preallocate`): described on the
/// broker and as a topic's default; a topic that sets nothing gets a segment whose blocks
/// are reserved past its data, every record reads back, and a clean stop gives the
/// reserved blocks back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_default_preallocate_reserves_segments() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let configure = |c: &mut rafka_broker::Config| {
        c.storage.log.preallocate = true;
        c.storage.log.segment_bytes = 1 << 20;
    };
    let broker = support::start_broker_with(dir.path(), configure).await;
    let addr = broker.bootstrap_address();
    let admin = admin(&addr);
    let opts = AdminOptions::new().operation_timeout(Some(T));
    create_topic(&addr, "pre", 1, &[]).await;
    let described = admin
        .describe_configs(
            &[
                ResourceSpecifier::Topic("pre"),
                ResourceSpecifier::Broker(0),
            ],
            &opts,
        )
        .await
        .unwrap();
    let topic = described[0].as_ref().unwrap();
    assert_eq!(
        topic.get("preallocate").unwrap().value.as_deref(),
        Some("true")
    );
    let b = described[1].as_ref().unwrap();
    assert_eq!(
        b.get("log.preallocate").unwrap().value.as_deref(),
        Some("true")
    );

    support::produce_numbered(&addr, "pre", 1, 0..100).await;
    let a = addr.clone();
    let got = tokio::task::spawn_blocking(move || {
        support::consume(&a, "pre", 1, 100, Duration::from_secs(20))
    })
    .await
    .unwrap();
    let seen: Vec<(i64, Vec<u8>)> = got
        .iter()
        .map(|r| (r.offset, r.value.clone().unwrap()))
        .collect();
    let want: Vec<(i64, Vec<u8>)> = (0..100)
        .map(|i| (i as i64, format!("m-{i}").into_bytes()))
        .collect();
    assert_eq!(seen, want);
    let files = segment_files(dir.path(), "pre-0");
    assert_eq!(files.len(), 1, "{files:?}");
    let m = std::fs::metadata(&files[0]).unwrap();
    assert!(
        m.len() > 0 && m.len() < 1 << 20,
        "length is the data: {}",
        m.len()
    );
    assert!(
        m.blocks() * 512 >= 1 << 20,
        "a segment's blocks reserved: {} bytes",
        m.blocks() * 512
    );
    let len = m.len();
    broker.shutdown().await.unwrap();
    let m = std::fs::metadata(&files[0]).unwrap();
    assert_eq!(m.len(), len);
    assert!(
        m.blocks() * 512 < 1 << 20,
        "reserved blocks given back at close"
    );
}
