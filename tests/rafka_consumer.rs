//! rafka-consumer against the in-process broker: it reads what librdkafka wrote (assign and
//! subscribe), commits, seeks, pauses, and shares a group with a librdkafka consumer.

mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rafka_consumer::{Consumer, ConsumerError, OffsetReset};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::Message;
use support::*;

async fn fill(addr: &str, topic: &str, n: usize) {
    let p = producer(addr, &[]);
    for i in 0..n {
        p.send(
            FutureRecord::to(topic)
                .key(&format!("k{i}"))
                .payload(&format!("v{i}"))
                .headers(OwnedHeaders::new().insert(Header {
                    key: "i",
                    value: Some(&i.to_string()),
                })),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    }
}

async fn recv(c: &Consumer) -> rafka_consumer::ConsumerRecord {
    tokio::time::timeout(Duration::from_secs(15), c.recv())
        .await
        .expect("a record within 15 s")
        .expect("recv")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_librdkafka_records_with_assign_seek_pause_and_commit() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path()).await;
    let addr = broker.bootstrap_address().to_string();
    create_topic(&addr, "in", 1, &[]).await;
    fill(&addr, "in", 100).await;
    let c = Consumer::builder()
        .bootstrap(&addr)
        .group("assigned")
        .assign([("in", 0)])
        .auto_offset_reset(OffsetReset::Earliest)
        .auto_commit(false)
        .build()
        .await
        .unwrap();
    for i in 0..100 {
        let r = recv(&c).await;
        assert_eq!(r.offset, i as i64);
        assert_eq!(r.key.as_deref(), Some(format!("k{i}").as_bytes()));
        assert_eq!(r.value.as_deref(), Some(format!("v{i}").as_bytes()));
        assert_eq!(r.headers[0].0, "i");
    }
    c.commit().await.unwrap();
    let committed = c
        .client()
        .committed_offsets("assigned", None)
        .await
        .unwrap();
    assert_eq!(committed[&("in".to_string(), 0)], 100);
    c.seek("in", 0, 42).unwrap();
    assert_eq!(recv(&c).await.offset, 42);
    c.pause(&[("in".to_string(), 0)]);
    assert!(tokio::time::timeout(Duration::from_millis(800), c.recv())
        .await
        .is_err());
    c.resume(&[("in".to_string(), 0)]);
    assert_eq!(recv(&c).await.offset, 43);
    // auto_offset_reset=error with nothing committed fails.
    let e = Consumer::builder()
        .bootstrap(&addr)
        .group("fresh")
        .assign([("in", 0)])
        .auto_offset_reset(OffsetReset::Error)
        .build()
        .await
        .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), e.recv())
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, ConsumerError::NoOffset { .. }), "{err}");
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_a_group_with_a_librdkafka_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path()).await;
    let addr = broker.bootstrap_address().to_string();
    create_topic(&addr, "shared", 4, &[]).await;
    type Assignments = Vec<Vec<(String, i32)>>;
    let assigned: Arc<Mutex<Assignments>> = Arc::default();
    let a2 = assigned.clone();
    let ours = Consumer::builder()
        .bootstrap(&addr)
        .group("mixed")
        .subscribe(["shared"])
        .auto_offset_reset(OffsetReset::Earliest)
        .heartbeat_interval(Duration::from_millis(300))
        .session_timeout(Duration::from_secs(10))
        .on_assigned(move |ps| a2.lock().unwrap().push(ps.to_vec()))
        .build()
        .await
        .unwrap();
    // Alone, it gets all four partitions.
    let deadline = Instant::now() + Duration::from_secs(15);
    while ours.assignment().len() != 4 {
        assert!(Instant::now() < deadline, "no assignment");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A librdkafka member joins; after the rebalance each has two.
    let a = addr.clone();
    let rd = tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = client_config(&a)
            .set("group.id", "mixed")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "300")
            .create()
            .unwrap();
        c.subscribe(&["shared"]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let _ = c.poll(Duration::from_millis(100));
            if c.assignment().map(|a| a.count()).unwrap_or(0) == 2 {
                break;
            }
        }
        let n = c.assignment().unwrap().count();
        let mut got = Vec::new();
        let until = Instant::now() + Duration::from_secs(8);
        while Instant::now() < until {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
                got.push((m.partition(), m.offset()));
            }
        }
        (n, got)
    });
    // Keep our consumer polling so it notices the rebalance.
    let deadline = Instant::now() + Duration::from_secs(30);
    while ours.assignment().len() != 2 {
        assert!(
            Instant::now() < deadline,
            "rafka consumer never rebalanced to 2 partitions"
        );
        let _ = tokio::time::timeout(Duration::from_millis(200), ours.recv()).await;
    }
    fill(&addr, "shared", 200).await;
    let mut mine = Vec::new();
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_millis(300), ours.recv()).await {
            mine.push((r.partition, r.offset));
        }
    }
    let (rd_count, theirs) = rd.await.unwrap();
    assert_eq!(rd_count, 2);
    let mine_parts: HashSet<i32> = mine.iter().map(|m| m.0).collect();
    let their_parts: HashSet<i32> = theirs.iter().map(|m| m.0).collect();
    assert!(
        mine_parts.is_disjoint(&their_parts),
        "{mine_parts:?} vs {their_parts:?}"
    );
    assert_eq!(
        mine.len() + theirs.len(),
        200,
        "every record read once by the group"
    );
    assert!(
        assigned.lock().unwrap().len() >= 2,
        "rebalance callback ran"
    );
    ours.close().await.unwrap();
    broker.shutdown().await.unwrap();
}
