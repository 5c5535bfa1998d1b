//! Storage engines seen through the broker and librdkafka: a `memory` engine whose budget
//! is full answers produce with KAFKA_STORAGE_ERROR and keeps serving reads; a `memory`
//! engine without a path writes nothing to disk; a bad `storage_type` stops the start
//! with a message naming the engines.

use crate::support;

use std::time::Duration;

use rafka_broker::{Broker, Config};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureRecord;

use support::{consume, create_topic, producer, start_broker_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_memory_budget_refuses_produce_and_keeps_serving_reads() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker_with(dir.path(), |c| {
        c.storage.storage_type = "memory".to_string();
        c.storage.memory.max_bytes = 64 * 1024;
    })
    .await;
    let addr = broker.bootstrap_address();
    create_topic(&addr, "bounded", 1, &[]).await;
    let p = producer(
        &addr,
        &[
            ("acks", "all"),
            ("linger.ms", "0"),
            ("retries", "0"),
            ("enable.idempotence", "false"),
            ("message.timeout.ms", "10000"),
        ],
    );
    let value = vec![b'x'; 1000];
    let mut acked = 0usize;
    let mut refused = None;
    // 64 KiB hold at most ~64 one-KiB records; 200 sends must hit the limit.
    for i in 0..200 {
        let key = i.to_string();
        let rec = FutureRecord::to("bounded").key(&key).payload(&value);
        match p.send(rec, Duration::from_secs(10)).await {
            Ok(_) => acked += 1,
            Err((e, _)) => {
                refused = Some(e);
                break;
            }
        }
    }
    assert!(acked > 10, "only {acked} records fit");
    match refused {
        Some(KafkaError::MessageProduction(code)) => {
            assert_eq!(code, RDKafkaErrorCode::KafkaStorageError)
        }
        other => panic!("expected KAFKA_STORAGE_ERROR, got {other:?} after {acked} acks"),
    }
    let got = tokio::task::spawn_blocking(move || {
        consume(&addr, "bounded", 1, acked, Duration::from_secs(20))
    })
    .await
    .unwrap();
    assert_eq!(
        got.len(),
        acked,
        "every acknowledged record is still readable"
    );
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_engine_without_a_path_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker_with(dir.path(), |c| {
        c.storage.storage_type = "memory".to_string();
        c.storage.path = "".into();
    })
    .await;
    let addr = broker.bootstrap_address();
    create_topic(&addr, "ephemeral", 1, &[]).await;
    let p = producer(&addr, &[("acks", "all")]);
    p.send(
        FutureRecord::to("ephemeral").key("k").payload("v"),
        Duration::from_secs(10),
    )
    .await
    .expect("produce");
    let a = addr.clone();
    let got = tokio::task::spawn_blocking(move || {
        consume(&a, "ephemeral", 1, 1, Duration::from_secs(20))
    })
    .await
    .unwrap();
    assert_eq!(got[0].value.as_deref(), Some(&b"v"[..]));
    broker.shutdown().await.unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    // An empty path must not mean "the current directory".
    for entry in std::fs::read_dir(".").unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            name != "rafka-topics.yaml"
                && !name.starts_with("wal-")
                && !name.starts_with("snapshot-"),
            "{name} written to the working directory"
        );
    }
}

#[tokio::test]
async fn unknown_storage_type_names_the_engines() {
    let dir = tempfile::tempdir().unwrap();
    let mut cases = vec![("tape", "known engines: log, memory, rocksdb")];
    if cfg!(not(feature = "rocksdb")) {
        cases.push(("rocksdb", "is not in this build"));
    }
    for (storage_type, expect) in cases {
        let mut cfg = Config::default();
        cfg.broker.listen = "127.0.0.1:0".into();
        cfg.storage.path = dir.path().to_path_buf();
        cfg.storage.storage_type = storage_type.to_string();
        let err = Broker::start(cfg)
            .await
            .err()
            .expect("start fails")
            .to_string();
        assert!(err.contains(expect), "{storage_type}: {err}");
        assert!(err.contains("--features rocksdb"), "{storage_type}: {err}");
    }
}
