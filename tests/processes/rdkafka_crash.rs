//! SIGKILL the `rafka` process while an idempotent librdkafka producer with acks=all runs;
//! after a restart every acknowledged message is there at its acknowledged offset, offsets
//! are contiguous, and nothing is duplicated. Once per storage engine.

use crate::support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::producer::FutureRecord;

use support::{consume, create_topic, producer, BrokerProcess};

const PARTITIONS: i32 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_message() {
    sigkill_then_restart("log").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_message_memory() {
    sigkill_then_restart("memory").await;
}

#[cfg(feature = "rocksdb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_message_rocksdb() {
    sigkill_then_restart("rocksdb").await;
}

async fn sigkill_then_restart(storage_type: &str) {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start_on(dir.path(), storage_type);
    create_topic(&broker.address, "crash", PARTITIONS, &[]).await;

    let acked: Arc<Mutex<Vec<(usize, i32, i64)>>> = Arc::default();
    let p = producer(
        &broker.address,
        &[
            ("acks", "all"),
            ("enable.idempotence", "true"),
            ("message.timeout.ms", "5000"),
        ],
    );
    let sender = {
        let acked = acked.clone();
        tokio::spawn(async move {
            let mut inflight = Vec::new();
            for i in 0..200_000usize {
                let v = format!("msg-{i}");
                let rec = FutureRecord::to("crash")
                    .key(&v)
                    .payload(&v)
                    .partition((i % 2) as i32);
                match p.send_result(rec) {
                    Ok(f) => inflight.push((i, f)),
                    Err(_) => break,
                }
                if inflight.len() >= 200 {
                    for (i, f) in inflight.drain(..) {
                        match f.await {
                            Ok(Ok(d)) => acked.lock().unwrap().push((i, d.partition, d.offset)),
                            _ => return,
                        }
                    }
                }
            }
        })
    };
    // Let a few thousand messages be acknowledged, then kill the broker mid-stream.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < 3000 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    broker.kill();
    let _ = tokio::time::timeout(Duration::from_secs(15), sender).await;
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 3000,
        "producer was acknowledged {} messages",
        acked.len()
    );

    let broker = BrokerProcess::start_on(dir.path(), storage_type);
    let addr = broker.address.clone();
    // Everything on disk, acknowledged or not: read up to the log end.
    let got = tokio::task::spawn_blocking(move || {
        consume(
            &addr,
            "crash",
            PARTITIONS,
            usize::MAX,
            Duration::from_secs(8),
        )
    })
    .await
    .unwrap();
    let mut next = [0i64; PARTITIONS as usize];
    let mut seen = HashSet::new();
    for r in &got {
        let p = r.partition as usize;
        assert_eq!(r.offset, next[p], "contiguous offsets in partition {p}");
        next[p] += 1;
        let v = String::from_utf8(r.value.clone().unwrap()).unwrap();
        assert!(
            v.starts_with("msg-"),
            "a record that was never produced: {v}"
        );
        assert!(seen.insert(v.clone()), "duplicate {v}");
    }
    let by_position: std::collections::HashMap<(i32, i64), String> = got
        .iter()
        .map(|r| {
            (
                (r.partition, r.offset),
                String::from_utf8(r.value.clone().unwrap()).unwrap(),
            )
        })
        .collect();
    for (i, p, o) in &acked {
        assert_eq!(
            by_position.get(&(*p, *o)),
            Some(&format!("msg-{i}")),
            "acknowledged message {i} at {p}:{o}"
        );
    }
    eprintln!(
        "{storage_type}: acked {} messages before SIGKILL; {} on disk after restart",
        acked.len(),
        got.len()
    );
}
