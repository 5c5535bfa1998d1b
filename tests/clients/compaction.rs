//! Log compaction through real clients, on every engine: librdkafka produces 100,000
//! updates over 1,000 keys to a `cleanup.policy=compact` topic, the broker's cleaner compacts
//! it, and a fresh consumer reads each key's last value and little else; a keyless record is
//! refused with its index. Producers compressing with lz4, zstd and gzip: their batches are
//! cleaned too (decompressed, filtered, recompressed with their codec).

use crate::{common, support};

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestKind, ResponseKind};
use rafka_core::batch::{BatchBuilder, SimpleRecord};
use rafka_core::{Offset, Timestamp};
use rdkafka::producer::FutureRecord;

const KEYS: usize = 1_000;
const UPDATES: usize = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_topic_keeps_each_keys_last_value() {
    compacted_topic_keeps_each_keys_last_value("log").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_topic_keeps_each_keys_last_value_on_the_memory_engine() {
    compacted_topic_keeps_each_keys_last_value("memory").await;
}

#[cfg(feature = "rocksdb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_topic_keeps_each_keys_last_value_on_the_rocksdb_engine() {
    compacted_topic_keeps_each_keys_last_value("rocksdb").await;
}

async fn compacted_topic_keeps_each_keys_last_value(engine: &'static str) {
    let dir = tempfile::tempdir().unwrap();
    let broker = support::start_broker_with(dir.path(), |c| {
        c.broker.log_cleaner_backoff_ms = 200;
        c.storage.storage_type = engine.to_string();
    })
    .await;
    let addr = broker.bootstrap_address().to_string();
    // The log engine rolls a segment after 100 ms, so every update is cleanable once a later
    // record arrives; memory and rocksdb keep their newest `segment.bytes` uncleaned, which
    // at the minimum (14) is the newest batch alone.
    let segment = if engine == "log" {
        ("segment.ms", "100")
    } else {
        ("segment.bytes", "14")
    };
    support::create_topic(
        &addr,
        "compacted",
        1,
        &[
            ("cleanup.policy", "compact"),
            segment,
            ("min.cleanable.dirty.ratio", "0.1"),
        ],
    )
    .await;
    let producer = support::producer(&addr, &[("linger.ms", "20")]);
    let mut futures = Vec::with_capacity(UPDATES);
    for i in 0..UPDATES {
        let key = format!("key-{}", i % KEYS);
        let value = format!("value-{i}");
        futures.push(
            producer
                .send_result(FutureRecord::to("compacted").key(&key).payload(&value))
                .expect("queued"),
        );
    }
    for f in futures {
        f.await.expect("delivered").expect("acknowledged");
    }
    let mut last: HashMap<String, String> = HashMap::new();
    for i in 0..UPDATES {
        last.insert(format!("key-{}", i % KEYS), format!("value-{i}"));
    }
    // `segment.ms` is 100: a later record rolls the segment, so every update is cleanable.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sentinel = format!("value-{UPDATES}");
    producer
        .send(
            FutureRecord::to("compacted")
                .key("key-0")
                .payload(&sentinel),
            Duration::from_secs(10),
        )
        .await
        .expect("sentinel delivered");
    last.insert("key-0".into(), sentinel);

    // The cleaner runs every 200 ms: wait until the log is mostly clean.
    let part = broker
        .shared()
        .cluster
        .topic("compacted")
        .expect("topic")
        .partitions[0]
        .clone();
    let size = || part.size_bytes();
    let before = size();
    // 20,000 records take ~500 KB; 1,000 latest values ~26 KB.
    support::wait_for("the cleaner to compact", Duration::from_secs(60), || {
        size() < 100_000
    })
    .await;

    let read = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || support::consume(&addr, "compacted", 1, usize::MAX, Duration::from_secs(60))
    })
    .await
    .unwrap();
    let mut seen: HashMap<String, (i64, String)> = HashMap::new();
    let mut prev = -1;
    for m in &read {
        assert!(m.offset > prev, "offsets increase");
        prev = m.offset;
        let key = String::from_utf8(m.key.clone().expect("keyed")).unwrap();
        let value = String::from_utf8(m.value.clone().expect("no tombstones")).unwrap();
        let i: usize = value.trim_start_matches("value-").parse().unwrap();
        assert_eq!(m.offset, i as i64, "each record keeps its original offset");
        seen.insert(key, (m.offset, value));
    }
    for (k, v) in &last {
        assert_eq!(seen.get(k).map(|s| &s.1), Some(v), "last value of {k}");
    }
    // At most one per key in the cleaned part, plus the uncleaned tail (the sentinel).
    assert!(
        read.len() <= KEYS + 10,
        "read {} records for {KEYS} keys",
        read.len()
    );
    println!(
        "compaction ({engine}): {UPDATES} updates over {KEYS} keys, {before} bytes before, {} after; a fresh consumer read {} records",
        size(),
        read.len()
    );

    // A record without a key: INVALID_RECORD naming its index, nothing of the batch written.
    let mut b = BatchBuilder::new(Offset(0));
    for (i, key) in [Some("a"), None, Some("b"), None].into_iter().enumerate() {
        b = b.record(SimpleRecord {
            key: key.map(|k| Bytes::from(k.to_string())),
            value: Some(Bytes::from(format!("v{i}"))),
            headers: Vec::new(),
            timestamp: Timestamp(1),
        });
    }
    let mut conn = common::KafkaConn::connect(&addr).await;
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(common::topic_name("compacted"))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(b.build().into_bytes()))])]);
    let end_before = conn_end(&read);
    let ResponseKind::Produce(r) = conn
        .send(ApiKey::Produce, 9, RequestKind::Produce(request))
        .await
    else {
        panic!("not a Produce response")
    };
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 87, "INVALID_RECORD");
    let indexes: Vec<i32> = p.record_errors.iter().map(|e| e.batch_index).collect();
    assert_eq!(indexes, vec![1, 3]);
    assert!(p.record_errors[0]
        .batch_index_error_message
        .as_ref()
        .is_some_and(|m| m.contains("without key")));
    let again = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || support::consume(&addr, "compacted", 1, usize::MAX, Duration::from_secs(30))
    })
    .await
    .unwrap();
    assert_eq!(
        conn_end(&again),
        end_before,
        "nothing of the refused batch was written"
    );
    broker.shutdown().await.expect("clean shutdown");
}

fn conn_end(read: &[support::Received]) -> i64 {
    read.last().map_or(-1, |m| m.offset)
}

const COMPRESSED_KEYS: usize = 200;
const COMPRESSED_UPDATES: usize = 20_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lz4_batches_of_a_compacted_topic_are_cleaned() {
    compressed_batches_are_cleaned("log", "lz4").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zstd_batches_of_a_compacted_topic_are_cleaned() {
    compressed_batches_are_cleaned("log", "zstd").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_batches_of_a_compacted_topic_are_cleaned_on_the_memory_engine() {
    compressed_batches_are_cleaned("memory", "gzip").await;
}

#[cfg(feature = "rocksdb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lz4_batches_of_a_compacted_topic_are_cleaned_on_the_rocksdb_engine() {
    compressed_batches_are_cleaned("rocksdb", "lz4").await;
}

/// librdkafka with `compression.type=<codec>` writes many updates over few keys to a
/// compacted topic and, the same records, to a topic with `cleanup.policy=delete`: once
/// cleaned, the compacted one holds under 1/20 of the other's bytes, its cleaned batches keep
/// the codec, and a fresh consumer reads about one record per key, each key's last value at
/// its original offset.
async fn compressed_batches_are_cleaned(engine: &'static str, codec: &'static str) {
    let dir = tempfile::tempdir().unwrap();
    let broker = support::start_broker_with(dir.path(), |c| {
        c.broker.log_cleaner_backoff_ms = 200;
        c.storage.storage_type = engine.to_string();
    })
    .await;
    let addr = broker.bootstrap_address().to_string();
    let segment = if engine == "log" {
        ("segment.ms", "100")
    } else {
        ("segment.bytes", "14")
    };
    for (topic, policy) in [("compacted", "compact"), ("plain", "delete")] {
        support::create_topic(
            &addr,
            topic,
            1,
            &[
                ("cleanup.policy", policy),
                segment,
                ("min.cleanable.dirty.ratio", "0.1"),
            ],
        )
        .await;
    }
    let producer = support::producer(&addr, &[("linger.ms", "20"), ("compression.type", codec)]);
    let value = |i: usize| format!("value-{i}-{}", "payload ".repeat(8));
    let mut futures = Vec::with_capacity(2 * COMPRESSED_UPDATES);
    for i in 0..COMPRESSED_UPDATES {
        let key = format!("key-{}", i % COMPRESSED_KEYS);
        for topic in ["compacted", "plain"] {
            futures.push(
                producer
                    .send_result(FutureRecord::to(topic).key(&key).payload(&value(i)))
                    .expect("queued"),
            );
        }
    }
    for f in futures {
        f.await.expect("delivered").expect("acknowledged");
    }
    let mut last: HashMap<String, String> = HashMap::new();
    for i in 0..COMPRESSED_UPDATES {
        last.insert(format!("key-{}", i % COMPRESSED_KEYS), value(i));
    }
    // A later record rolls the log engine's segment, so every update is cleanable.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sentinel = value(COMPRESSED_UPDATES);
    producer
        .send(
            FutureRecord::to("compacted")
                .key("key-0")
                .payload(&sentinel),
            Duration::from_secs(10),
        )
        .await
        .expect("sentinel delivered");
    last.insert("key-0".into(), sentinel);

    let partition = |topic: &str| {
        broker
            .shared()
            .cluster
            .topic(topic)
            .expect("topic")
            .partitions[0]
            .clone()
    };
    let (part, plain) = (partition("compacted"), partition("plain"));
    let plain_bytes = plain.size_bytes();
    let before = part.size_bytes();
    support::wait_for("the cleaner to compact", Duration::from_secs(60), || {
        part.size_bytes() < plain_bytes / 20
    })
    .await;
    let after = part.size_bytes();

    // The cleaned batches are still compressed with the producer's codec.
    let want = match codec {
        "lz4" => rafka_core::CompressionType::Lz4,
        "zstd" => rafka_core::CompressionType::Zstd,
        _ => rafka_core::CompressionType::Gzip,
    };
    let mut batches = Vec::new();
    let mut at = part.log_start_offset();
    while at < part.log_end_offset() {
        let r = part
            .read(at, 1 << 20, rafka_broker::IsolationLevel::ReadUncommitted)
            .unwrap();
        let got = rafka_core::RecordBatch::split_all(r.records).unwrap();
        let Some(b) = got.last() else { break };
        at = b.next_offset();
        batches.extend(got);
    }
    let cleaned_with_codec = batches
        .iter()
        .filter(|b| {
            b.compression() == want
                && (b.record_count() as i64) < b.last_offset().0 - b.base_offset().0 + 1
        })
        .count();
    assert!(
        cleaned_with_codec > 0,
        "no cleaned {codec} batch among {} batches",
        batches.len()
    );

    let read = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || support::consume(&addr, "compacted", 1, usize::MAX, Duration::from_secs(60))
    })
    .await
    .unwrap();
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut prev = -1;
    for m in &read {
        assert!(m.offset > prev, "offsets increase");
        prev = m.offset;
        let key = String::from_utf8(m.key.clone().expect("keyed")).unwrap();
        let value = String::from_utf8(m.value.clone().expect("no tombstones")).unwrap();
        let i: i64 = value.split('-').nth(1).unwrap().parse().unwrap();
        assert_eq!(m.offset, i, "each record keeps its original offset");
        seen.insert(key, value);
    }
    for (k, v) in &last {
        assert_eq!(seen.get(k), Some(v), "last value of {k}");
    }
    assert!(
        read.len() <= COMPRESSED_KEYS + 10,
        "read {} records for {COMPRESSED_KEYS} keys",
        read.len()
    );
    println!(
        "compaction of {codec} batches ({engine}): {COMPRESSED_UPDATES} updates over {COMPRESSED_KEYS} keys; uncompacted topic {plain_bytes} bytes, compacted topic {before} bytes when produced, {after} after cleaning ({} batches, {cleaned_with_codec} cleaned still {codec}); a fresh consumer read {} records",
        batches.len(),
        read.len()
    );
    broker.shutdown().await.expect("clean shutdown");
}

/// The broker default `log_cleanup_policy: compact` applies to a topic created without
/// configs (DescribeConfigs shows it as the default), and three cleaner workers compact its
/// three partitions: a fresh consumer reads each key's last value per partition and little
/// else. With `log_cleaner_enable: false` nothing is compacted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_cleanup_policy_compacts_topics_without_configs() {
    use rdkafka::admin::{AdminOptions, ResourceSpecifier};

    const PARTITIONS: i32 = 3;
    const PER_PARTITION: usize = 300;
    const KEYS_PER_PARTITION: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let broker = support::start_broker_with(dir.path(), |c| {
        c.broker.log_cleaner_backoff_ms = 100;
        c.broker.log_cleaner_threads = 3;
        c.broker.log_cleanup_policy = "compact".into();
        c.storage.log.segment_ms = 100;
    })
    .await;
    let addr = broker.bootstrap_address().to_string();
    support::create_topic(&addr, "by-default", PARTITIONS, &[]).await;
    let described = support::admin(&addr)
        .describe_configs(
            &[ResourceSpecifier::Topic("by-default")],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    let res = described[0].as_ref().unwrap();
    let policy = res.get("cleanup.policy").unwrap();
    assert_eq!(policy.value.as_deref(), Some("compact"));
    assert!(
        policy.is_default,
        "the broker default, not a topic override"
    );

    let producer = support::producer(&addr, &[("linger.ms", "5")]);
    let mut last: HashMap<(i32, String), String> = HashMap::new();
    let mut send = Vec::new();
    for i in 0..PER_PARTITION {
        for p in 0..PARTITIONS {
            let key = format!("k{p}-{}", i % KEYS_PER_PARTITION);
            let value = format!("v{i}");
            last.insert((p, key.clone()), value.clone());
            send.push(
                producer
                    .send_result(
                        FutureRecord::to("by-default")
                            .partition(p)
                            .key(&key)
                            .payload(&value),
                    )
                    .expect("queued"),
            );
        }
    }
    for f in send {
        f.await.expect("delivered").expect("acknowledged");
    }
    // A later record rolls each partition's segment (`log.roll.ms` 100).
    tokio::time::sleep(Duration::from_millis(300)).await;
    for p in 0..PARTITIONS {
        let key = format!("k{p}-0");
        producer
            .send(
                FutureRecord::to("by-default")
                    .partition(p)
                    .key(&key)
                    .payload("sentinel"),
                Duration::from_secs(10),
            )
            .await
            .expect("sentinel delivered");
        last.insert((p, key), "sentinel".into());
    }
    let topic = broker.shared().cluster.topic("by-default").expect("topic");
    let sizes = || -> Vec<u64> { topic.partitions.iter().map(|p| p.size_bytes()).collect() };
    // 300 updates take ~4.8 KB per partition; 5 latest values and a sentinel ~220 bytes.
    support::wait_for("every partition compacted", Duration::from_secs(30), || {
        sizes().iter().all(|s| *s < 1_000)
    })
    .await;
    let read = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || {
            support::consume(
                &addr,
                "by-default",
                PARTITIONS,
                usize::MAX,
                Duration::from_secs(30),
            )
        }
    })
    .await
    .unwrap();
    let mut seen: HashMap<(i32, String), String> = HashMap::new();
    for m in &read {
        let key = String::from_utf8(m.key.clone().expect("keyed")).unwrap();
        let value = String::from_utf8(m.value.clone().expect("a value")).unwrap();
        seen.insert((m.partition, key), value);
    }
    assert_eq!(seen, last, "each key's last value on every partition");
    for p in 0..PARTITIONS {
        let n = read.iter().filter(|m| m.partition == p).count();
        assert!(n <= KEYS_PER_PARTITION + 2, "partition {p}: {n} records");
    }
    broker.shutdown().await.expect("clean shutdown");

    // The cleaner off: the same load stays whole.
    let dir = tempfile::tempdir().unwrap();
    let broker = support::start_broker_with(dir.path(), |c| {
        c.broker.log_cleaner_backoff_ms = 100;
        c.broker.log_cleaner_enable = false;
        c.broker.log_cleanup_policy = "compact".into();
        c.storage.log.segment_ms = 100;
    })
    .await;
    let addr = broker.bootstrap_address().to_string();
    support::create_topic(&addr, "uncleaned", 1, &[]).await;
    let producer = support::producer(&addr, &[("linger.ms", "5")]);
    for i in 0..=PER_PARTITION {
        if i == PER_PARTITION {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        producer
            .send(
                FutureRecord::to("uncleaned")
                    .key("k")
                    .payload(&format!("v{i}")),
                Duration::from_secs(10),
            )
            .await
            .expect("delivered");
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let read = tokio::task::spawn_blocking(move || {
        support::consume(&addr, "uncleaned", 1, usize::MAX, Duration::from_secs(30))
    })
    .await
    .unwrap();
    assert_eq!(read.len(), PER_PARTITION + 1, "nothing compacted");
    broker.shutdown().await.expect("clean shutdown");
}
