//! Log compaction through real clients: librdkafka produces 100,000 updates over 1,000 keys to
//! a `cleanup.policy=compact` topic, the broker's cleaner compacts it, and a fresh consumer
//! reads each key's last value and little else; a keyless record is refused with its index.

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
    let dir = tempfile::tempdir().unwrap();
    let broker = support::start_broker_with(dir.path(), |c| {
        c.broker.log_cleaner_backoff_ms = 200;
    })
    .await;
    let addr = broker.bootstrap_address().to_string();
    support::create_topic(
        &addr,
        "compacted",
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.ms", "100"),
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
    let seg_dir = dir.path().join("compacted-0");
    let size = || -> u64 {
        std::fs::read_dir(&seg_dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
                    .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0)
    };
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
        "compaction: {UPDATES} updates over {KEYS} keys, {before} bytes of segments before, {} after; a fresh consumer read {} records",
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
