//! Topic administration through librdkafka's admin client and consumer APIs: create,
//! describe and delete topics, add partitions, describe and alter configs, list offsets by
//! timestamp, delete records.

mod support;

use std::time::Duration;

use rdkafka::admin::{
    AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

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
                .set("cleanup.policy", "compact")],
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
