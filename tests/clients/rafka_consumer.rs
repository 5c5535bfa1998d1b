//! rafka-consumer against the in-process broker: it reads what librdkafka wrote (assign and
//! subscribe), commits, seeks, pauses, and shares a group with a librdkafka consumer.

use crate::support;

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

type Tp = (String, i32);
type Log<T> = Arc<Mutex<Vec<T>>>;

/// A rafka-consumer group member polling in a task: what it read, and its rebalance
/// callbacks.
struct Member {
    consumer: Arc<Consumer>,
    seen: Arc<Mutex<Vec<(i32, i64, String)>>>,
    assigned: Arc<Mutex<Vec<Tp>>>,
    revoked: Arc<Mutex<Vec<Tp>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Member {
    async fn start(addr: &str, group: &str, topic: &str, metadata_age: Duration) -> Member {
        let (assigned, revoked): (Log<Tp>, Log<Tp>) = Default::default();
        let (a, r) = (assigned.clone(), revoked.clone());
        let mut client = rafka_client::ClientConfig::new(addr);
        client.metadata_max_age = metadata_age;
        let consumer = Consumer::builder()
            .client_config(client)
            .group(group)
            .subscribe([topic])
            .assignors(vec![rafka_consumer::Assignor::CooperativeSticky])
            .auto_offset_reset(OffsetReset::Earliest)
            .heartbeat_interval(Duration::from_millis(200))
            .session_timeout(Duration::from_secs(10))
            .on_assigned(move |ps| a.lock().unwrap().extend(ps.iter().cloned()))
            .on_revoked(move |ps| r.lock().unwrap().extend(ps.iter().cloned()))
            .build()
            .await
            .unwrap();
        let consumer = Arc::new(consumer);
        let seen: Arc<Mutex<Vec<(i32, i64, String)>>> = Arc::default();
        let task = {
            let (c, seen) = (consumer.clone(), seen.clone());
            tokio::spawn(async move {
                loop {
                    if let Ok(Ok(r)) =
                        tokio::time::timeout(Duration::from_millis(100), c.recv()).await
                    {
                        let v = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default());
                        seen.lock()
                            .unwrap()
                            .push((r.partition, r.offset, v.to_string()));
                    }
                }
            })
        };
        Member {
            consumer,
            seen,
            assigned,
            revoked,
            task,
        }
    }

    fn partitions(&self) -> HashSet<i32> {
        self.consumer.assignment().iter().map(|(_, p)| *p).collect()
    }

    fn seen_from(&self, from: usize) -> Vec<(i32, i64, String)> {
        self.seen.lock().unwrap()[from..].to_vec()
    }

    async fn close(self) {
        self.task.abort();
        let _ = self.task.await;
        if let Ok(c) = Arc::try_unwrap(self.consumer) {
            c.close().await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_sticky_moves_only_what_must_move() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path()).await;
    let addr = broker.bootstrap_address().to_string();
    create_topic(&addr, "coop", 6, &[]).await;
    produce_numbered(&addr, "coop", 6, 0..600).await;
    let a = Member::start(&addr, "coop-g", "coop", Duration::from_secs(300)).await;
    wait_for("a holds all six", Duration::from_secs(20), || {
        a.partitions().len() == 6 && a.seen.lock().unwrap().len() == 600
    })
    .await;
    let b = Member::start(&addr, "coop-g", "coop", Duration::from_secs(300)).await;
    wait_for("three each", Duration::from_secs(30), || {
        a.partitions().len() == 3 && b.partitions().len() == 3
    })
    .await;
    // a gave up exactly the three that moved, never everything; b got exactly those.
    let a_revoked: HashSet<i32> = a.revoked.lock().unwrap().iter().map(|t| t.1).collect();
    let b_assigned: HashSet<i32> = b.assigned.lock().unwrap().iter().map(|t| t.1).collect();
    assert_eq!(
        a.revoked.lock().unwrap().len(),
        3,
        "a revoked {a_revoked:?}"
    );
    assert_eq!(a_revoked, b_assigned);
    assert!(a_revoked.is_disjoint(&a.partitions()));
    assert!(b.revoked.lock().unwrap().is_empty());
    // The first 600 were read once, by a (it committed them before letting go).
    let first = a.seen_from(0);
    assert_eq!(first.len(), 600);
    assert!(b.seen_from(0).is_empty(), "b re-read committed records");
    // New records go to whoever holds each partition now, each read exactly once.
    let (from_a, from_b) = (a.seen.lock().unwrap().len(), 0);
    produce_numbered(&addr, "coop", 6, 600..900).await;
    wait_for("the next 300", Duration::from_secs(20), || {
        a.seen.lock().unwrap().len() - from_a + b.seen.lock().unwrap().len() >= 300
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (got_a, got_b) = (a.seen_from(from_a), b.seen_from(from_b));
    let mut values: Vec<String> = got_a.iter().chain(&got_b).map(|r| r.2.clone()).collect();
    values.sort_by_key(|v| v[2..].parse::<usize>().unwrap());
    let expected: Vec<String> = (600..900).map(|i| format!("m-{i}")).collect();
    assert_eq!(values, expected);
    assert!(got_a.iter().all(|r| a.partitions().contains(&r.0)));
    assert!(got_b.iter().all(|r| b.partitions().contains(&r.0)));
    b.close().await;
    a.close().await;
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_sticky_with_a_librdkafka_member_and_a_growing_topic() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path()).await;
    let addr = broker.bootstrap_address().to_string();
    create_topic(&addr, "grow", 2, &[]).await;
    // Ours joins first, so it leads the group and watches the topic (metadata every 500 ms).
    let ours = Member::start(&addr, "grow-g", "grow", Duration::from_millis(500)).await;
    wait_for("ours holds both", Duration::from_secs(20), || {
        ours.partitions().len() == 2
    })
    .await;
    let theirs = GroupMember::start(
        client_config(&addr)
            .set("group.id", "grow-g")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "200"),
        "grow",
        rdkafka::consumer::DefaultConsumerContext,
    );
    wait_for("one each", Duration::from_secs(30), || {
        ours.partitions().len() == 1 && theirs.assignment().len() == 1
    })
    .await;
    assert_eq!(ours.revoked.lock().unwrap().len(), 1, "only one moved");
    // The topic grows to 4: the leader notices and the group spreads over 4.
    let c = rafka_client::Client::connect(rafka_client::ClientConfig::new(&addr))
        .await
        .unwrap();
    c.create_partitions("grow", 4).await.unwrap();
    wait_for("two each after growth", Duration::from_secs(30), || {
        ours.partitions().len() == 2 && theirs.assignment().len() == 2
    })
    .await;
    let mine = ours.partitions();
    assert!(mine.is_disjoint(&theirs.assignment().into_iter().collect()));
    produce_numbered(&addr, "grow", 4, 0..400).await;
    wait_for("all 400", Duration::from_secs(30), || {
        ours.seen.lock().unwrap().len() + theirs.seen().len() >= 400
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got_ours = ours.seen_from(0);
    let got_theirs = theirs.stop();
    let mut values: Vec<String> = got_ours
        .iter()
        .chain(&got_theirs)
        .map(|r| r.2.clone())
        .collect();
    values.sort_by_key(|v| v[2..].parse::<usize>().unwrap());
    let expected: Vec<String> = (0..400).map(|i| format!("m-{i}")).collect();
    assert_eq!(
        values, expected,
        "every record read exactly once by the group"
    );
    assert!(got_ours.iter().all(|r| mine.contains(&r.0)));
    ours.close().await;
    broker.shutdown().await.unwrap();
}

/// (partition, offset, key) of everything `c` hands out until nothing new comes for
/// `quiet`, sorted.
async fn drain(c: &Consumer, quiet: Duration) -> Vec<(i32, i64, String)> {
    let mut out = Vec::new();
    while let Ok(r) = tokio::time::timeout(quiet, c.recv()).await {
        let r = r.expect("recv");
        out.push((
            r.partition,
            r.offset,
            String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned(),
        ));
    }
    out.sort();
    out
}

/// Transactions 0..6 over 3 partitions with rafka-producer (3 records per partition each,
/// even ones committed, odd ones aborted): rafka-consumer at read_committed (the default)
/// sees exactly the committed records at their offsets, at read_uncommitted all of them,
/// and never a marker; librdkafka reading the same topic agrees at both levels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_committed_skips_aborted_transactions_and_markers() {
    use crate::transactions::{blocking, broker, expected, read_all};
    use rafka_consumer::IsolationLevel;
    use rafka_producer::{Producer, Record};

    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path()).await;
    let addr = b.bootstrap_address().to_string();
    create_topic(&addr, "rc-tx", 3, &[]).await;
    let p = Producer::builder()
        .bootstrap(&addr)
        .transactional_id("rc-tx-id")
        .build()
        .await
        .unwrap();
    p.init_transactions().await.unwrap();
    for t in 0..6 {
        p.begin_transaction().unwrap();
        for part in 0..3 {
            for i in 0..3 {
                let r = Record::to("rc-tx")
                    .partition(part)
                    .key(format!("t{t}-p{part}-{i}"))
                    .value("v");
                p.enqueue(r).await.unwrap();
            }
        }
        if t % 2 == 0 {
            p.commit_transaction().await.unwrap();
        } else {
            p.abort_transaction().await.unwrap();
        }
    }
    let parts: Vec<(&str, i32)> = (0..3).map(|p| ("rc-tx", p)).collect();
    let committed = Consumer::builder()
        .bootstrap(&addr)
        .assign(parts.clone())
        .auto_offset_reset(OffsetReset::Earliest)
        .fetch_max_wait(Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    assert_eq!(
        drain(&committed, Duration::from_secs(2)).await,
        expected(true)
    );
    // Past the last commit marker (offset 23 on every partition).
    for part in 0..3 {
        assert_eq!(committed.position("rc-tx", part), Some(24));
    }
    let all = Consumer::builder()
        .bootstrap(&addr)
        .assign(parts)
        .auto_offset_reset(OffsetReset::Earliest)
        .isolation_level(IsolationLevel::ReadUncommitted)
        .fetch_max_wait(Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    assert_eq!(drain(&all, Duration::from_secs(2)).await, expected(false));
    let a = addr.clone();
    let rd_committed =
        blocking(move || read_all(&a, "rc-tx", 3, "read_committed", Duration::from_secs(2))).await;
    assert_eq!(rd_committed, expected(true));
    let a = addr.clone();
    let rd_all =
        blocking(move || read_all(&a, "rc-tx", 3, "read_uncommitted", Duration::from_secs(2)))
            .await;
    assert_eq!(rd_all, expected(false));
    b.shutdown().await.unwrap();
}

/// An open transaction holds a read_committed rafka-consumer at its first offset (the LSO),
/// while a read_uncommitted one reads on; the commit releases it. ListOffsets LATEST under
/// read_committed answers the LSO.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_transaction_holds_a_read_committed_consumer() {
    use crate::transactions::broker;
    use rafka_consumer::IsolationLevel;
    use rafka_producer::{Producer, Record};

    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path()).await;
    let addr = b.bootstrap_address().to_string();
    create_topic(&addr, "rc-open", 1, &[]).await;
    let plain = Producer::builder().bootstrap(&addr).build().await.unwrap();
    plain
        .send(Record::to("rc-open").partition(0).key("before"))
        .await
        .unwrap();
    let p = Producer::builder()
        .bootstrap(&addr)
        .transactional_id("rc-open-id")
        .build()
        .await
        .unwrap();
    p.init_transactions().await.unwrap();
    p.begin_transaction().unwrap();
    let md = p
        .send(Record::to("rc-open").partition(0).key("in-txn"))
        .await
        .unwrap();
    assert_eq!(md.offset, 1);
    plain
        .send(Record::to("rc-open").partition(0).key("after"))
        .await
        .unwrap();
    let client = plain.client();
    let lso = client
        .list_offsets_isolated("rc-open", &[0], -1, 1)
        .await
        .unwrap();
    let hw = client.list_offsets("rc-open", &[0], -1).await.unwrap();
    assert_eq!((lso[&0], hw[&0]), (1, 3));
    let rc = Consumer::builder()
        .bootstrap(&addr)
        .assign([("rc-open", 0)])
        .auto_offset_reset(OffsetReset::Earliest)
        .fetch_max_wait(Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    let ru = Consumer::builder()
        .bootstrap(&addr)
        .assign([("rc-open", 0)])
        .auto_offset_reset(OffsetReset::Earliest)
        .isolation_level(IsolationLevel::ReadUncommitted)
        .fetch_max_wait(Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    let key = |r: rafka_consumer::ConsumerRecord| {
        (
            r.offset,
            String::from_utf8_lossy(&r.key.unwrap()).into_owned(),
        )
    };
    assert_eq!(key(recv(&rc).await), (0, "before".to_string()));
    assert!(
        tokio::time::timeout(Duration::from_millis(800), rc.recv())
            .await
            .is_err(),
        "read_committed must stop at the open transaction"
    );
    assert_eq!(
        drain(&ru, Duration::from_secs(1)).await,
        vec![
            (0, 0, "before".to_string()),
            (0, 1, "in-txn".to_string()),
            (0, 2, "after".to_string())
        ]
    );
    p.commit_transaction().await.unwrap();
    assert_eq!(key(recv(&rc).await), (1, "in-txn".to_string()));
    assert_eq!(key(recv(&rc).await), (2, "after".to_string()));
    b.shutdown().await.unwrap();
}
