//! librdkafka (the `rdkafka` crate) against an in-process Rafka: keyed messages with
//! headers and timestamps round-trip intact, per partition in order, with every codec;
//! acks=all data survives a restart; the idempotent producer writes exactly once.

use crate::common;
use crate::support;

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;

use support::{consume, create_topic, producer, start_broker, start_broker_on, Received};

const PARTITIONS: i32 = 3;
const BASE_TS: i64 = 1_700_000_000_000;

fn key(i: usize) -> String {
    format!("key-{i}")
}
fn value(i: usize, tag: &str) -> String {
    format!("value-{i}-{tag}-{}", "x".repeat(i % 97))
}

/// Produces `n` messages, message `i` to partition `i % 3`, and returns the acked offsets.
async fn produce_all(
    bootstrap: &str,
    topic: &str,
    n: usize,
    tag: &str,
    extra: &[(&str, &str)],
) -> Vec<(i32, i64)> {
    let p = producer(bootstrap, extra);
    let mut futures = Vec::with_capacity(n);
    for i in 0..n {
        let (k, v) = (key(i), value(i, tag));
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "idx",
                value: Some(i.to_string().as_bytes()),
            })
            .insert(Header {
                key: "tag",
                value: Some(tag.as_bytes()),
            })
            .insert(Header {
                key: "empty",
                value: None::<&[u8]>,
            });
        let record = FutureRecord::to(topic)
            .key(&k)
            .payload(&v)
            .partition((i % PARTITIONS as usize) as i32)
            .timestamp(BASE_TS + i as i64)
            .headers(headers);
        futures.push(p.send_result(record).expect("queue has room"));
    }
    let mut acked = Vec::with_capacity(n);
    for f in futures {
        let d = f.await.expect("delivery future").expect("delivered");
        acked.push((d.partition, d.offset));
    }
    acked
}

/// Checks that `got` holds exactly messages 0..n, each where it was acked, in order.
fn check(got: &[Received], acked: &[(i32, i64)], tag: &str) {
    assert_eq!(got.len(), acked.len(), "message count");
    let mut next_offset = [0i64; PARTITIONS as usize];
    let mut next_index = [0usize; PARTITIONS as usize];
    for r in got {
        let p = r.partition as usize;
        assert_eq!(
            r.offset, next_offset[p],
            "offsets contiguous in partition {p}"
        );
        next_offset[p] += 1;
        let i = next_index[p] * PARTITIONS as usize + p;
        next_index[p] += 1;
        assert_eq!(
            acked[i],
            (r.partition, r.offset),
            "acked position of message {i}"
        );
        assert_eq!(r.key.as_deref(), Some(key(i).as_bytes()));
        assert_eq!(r.value.as_deref(), Some(value(i, tag).as_bytes()));
        assert_eq!(r.timestamp, Some(BASE_TS + i as i64));
        assert_eq!(
            r.headers,
            vec![
                ("idx".to_string(), Some(i.to_string().into_bytes())),
                ("tag".to_string(), Some(tag.as_bytes().to_vec())),
                ("empty".to_string(), None),
            ]
        );
    }
}

async fn round_trip(codec: &str) {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path()).await;
    let addr = broker.bootstrap_address();
    let topic = format!("roundtrip-{codec}");
    create_topic(&addr, &topic, PARTITIONS, &[]).await;
    let n = 10_000;
    let acked = produce_all(
        &addr,
        &topic,
        n,
        codec,
        &[("compression.codec", codec), ("acks", "all")],
    )
    .await;
    let (a, t) = (addr.clone(), topic.clone());
    let got = tokio::task::spawn_blocking(move || {
        consume(&a, &t, PARTITIONS, n, Duration::from_secs(60))
    })
    .await
    .unwrap();
    check(&got, &acked, codec);
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_uncompressed() {
    round_trip("none").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_gzip() {
    round_trip("gzip").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_snappy() {
    round_trip("snappy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_lz4() {
    round_trip("lz4").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_zstd() {
    round_trip("zstd").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_writes_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path()).await;
    let addr = broker.bootstrap_address();
    create_topic(&addr, "idem", PARTITIONS, &[]).await;
    let n = 3000;
    let acked = produce_all(&addr, "idem", n, "idem", &[("enable.idempotence", "true")]).await;
    let got = tokio::task::spawn_blocking(move || {
        consume(&addr, "idem", PARTITIONS, n, Duration::from_secs(30))
    })
    .await
    .unwrap();
    check(&got, &acked, "idem");
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_data_survives_a_restart() {
    restart_keeps_acked_data("log").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_data_survives_a_restart_memory() {
    restart_keeps_acked_data("memory").await;
}

#[cfg(feature = "rocksdb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_data_survives_a_restart_rocksdb() {
    restart_keeps_acked_data("rocksdb").await;
}

/// Produce with acks=all, shut down cleanly, restart on the same engine and directory.
async fn restart_keeps_acked_data(storage_type: &str) {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker_on(dir.path(), storage_type).await;
    let addr = broker.bootstrap_address();
    create_topic(&addr, "durable", PARTITIONS, &[("retention.ms", "-1")]).await;
    let n = 2000;
    let acked = produce_all(&addr, "durable", n, "restart", &[("acks", "all")]).await;
    broker.shutdown().await.unwrap();

    let broker = start_broker_on(dir.path(), storage_type).await;
    // The topic's partitions plus those of __consumer_offsets.
    let offsets_partitions = rafka_broker::Config::default()
        .broker
        .offsets_topic_num_partitions;
    assert_eq!(
        broker.recovered_partitions(),
        (PARTITIONS + offsets_partitions) as usize
    );
    let addr = broker.bootstrap_address();
    let got = tokio::task::spawn_blocking(move || {
        consume(&addr, "durable", PARTITIONS, n, Duration::from_secs(30))
    })
    .await
    .unwrap();
    check(&got, &acked, "restart");
    broker.shutdown().await.unwrap();
}

/// A topic with `compression.type=zstd` recompresses what a producer with compression unset
/// sends: the stored batches (read back over a raw Fetch) are zstd, and librdkafka reads the
/// same records, keys, values, headers and timestamps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_compression_type_recompresses_on_append() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path()).await;
    let addr = broker.bootstrap_address();
    let topic = "topic-zstd";
    create_topic(&addr, topic, PARTITIONS, &[("compression.type", "zstd")]).await;
    let n = 3_000;
    let acked = produce_all(&addr, topic, n, "recompressed", &[("acks", "all")]).await;
    let (a, t) = (addr.clone(), topic.to_string());
    let got = tokio::task::spawn_blocking(move || {
        consume(&a, &t, PARTITIONS, n, Duration::from_secs(60))
    })
    .await
    .unwrap();
    check(&got, &acked, "recompressed");
    let mut conn = common::KafkaConn::connect(&addr).await;
    for p in 0..PARTITIONS {
        let data = common::fetch(&mut conn, topic, p, common::FetchArgs::at(0)).await;
        let batches = rafka_core::RecordBatch::split_all(data.records.unwrap_or_default()).unwrap();
        assert!(!batches.is_empty());
        for b in &batches {
            b.validate().unwrap();
            assert_eq!(
                b.compression(),
                rafka_core::CompressionType::Zstd,
                "partition {p} batch at {}",
                b.base_offset().0
            );
        }
    }
    broker.shutdown().await.unwrap();
}

/// `message.timestamp.before.max.ms` / `after.max.ms` refuse a librdkafka record whose
/// timestamp is outside them with INVALID_TIMESTAMP, and nothing of it is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_outside_the_topic_bounds_get_invalid_timestamp() {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path()).await;
    let addr = broker.bootstrap_address();
    let topic = "bounded-ts";
    let bounds = [
        ("message.timestamp.before.max.ms", "3600000"),
        ("message.timestamp.after.max.ms", "60000"),
    ];
    create_topic(&addr, topic, 1, &bounds).await;
    let p = producer(&addr, &[("acks", "all"), ("retries", "0")]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let send = |ts: i64| {
        let p = p.clone();
        async move {
            p.send(
                FutureRecord::to(topic)
                    .key("k")
                    .payload("v")
                    .partition(0)
                    .timestamp(ts),
                Duration::from_secs(10),
            )
            .await
        }
    };
    let ok = send(now - 1_000)
        .await
        .expect("a timestamp within the bounds");
    assert_eq!((ok.partition, ok.offset), (0, 0));
    for (what, ts) in [
        ("2 h ago", now - 7_200_000),
        ("10 min ahead", now + 600_000),
    ] {
        match send(ts).await {
            Err((KafkaError::MessageProduction(code), _)) => {
                assert_eq!(code, RDKafkaErrorCode::InvalidTimestamp, "{what}")
            }
            other => panic!("{what}: expected INVALID_TIMESTAMP, got {other:?}"),
        }
    }
    let ok = send(now).await.expect("a timestamp within the bounds");
    assert_eq!(ok.offset, 1, "the refused records took no offsets");
    broker.shutdown().await.unwrap();
}
