//! Consumer groups driven by librdkafka's high-level consumer (and a raw protocol member
//! where a client must misbehave): sharing partitions, failover on close and on a silent
//! death, committed offsets across a broker restart, static membership, assignor choice,
//! cooperative rebalancing, group administration, and churn.

use crate::support;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use support::{
    client_config, create_topic, produce_numbered, start_broker_with, values, wait_for,
    GroupMember, LogCapture,
};

const T: Duration = Duration::from_secs(10);

fn fast_groups(cfg: &mut rafka_broker::Config) {
    cfg.broker.group_initial_rebalance_delay_ms = 300;
    cfg.broker.offsets_topic_num_partitions = 4;
}

/// Counts rebalances and remembers the latest assignment, as seen by the client.
#[derive(Default)]
struct Tracker {
    assigns: AtomicUsize,
    revokes: AtomicUsize,
    revoked: Mutex<Vec<(String, i32)>>,
}

struct Ctx(Arc<Tracker>);
impl ClientContext for Ctx {}
impl ConsumerContext for Ctx {
    fn post_rebalance(&self, _c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        match r {
            Rebalance::Assign(_) => {
                self.0.assigns.fetch_add(1, Ordering::SeqCst);
            }
            Rebalance::Revoke(tpl) => {
                self.0.revokes.fetch_add(1, Ordering::SeqCst);
                self.0.revoked.lock().unwrap().extend(
                    tpl.elements()
                        .iter()
                        .map(|e| (e.topic().to_string(), e.partition())),
                );
            }
            Rebalance::Error(_) => {}
        }
    }
}

/// A group member (see `support::GroupMember`) with its rebalance tracker.
struct Member {
    inner: GroupMember,
    tracker: Arc<Tracker>,
}

impl Member {
    fn start(addr: &str, group: &str, topic: &str, extra: &[(&str, &str)]) -> Member {
        let mut cfg = client_config(addr);
        cfg.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "300")
            .set("fetch.wait.max.ms", "100");
        for (k, v) in extra {
            cfg.set(*k, *v);
        }
        let tracker = Arc::new(Tracker::default());
        let inner = GroupMember::start(&cfg, topic, Ctx(tracker.clone()));
        Member { inner, tracker }
    }

    fn assignment(&self) -> BTreeSet<i32> {
        self.inner.assignment()
    }

    fn seen(&self) -> Vec<(i32, i64, String)> {
        self.inner.seen()
    }

    fn stop(self) -> Vec<(i32, i64, String)> {
        self.inner.stop()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_share_and_the_survivor_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker_with(dir.path(), fast_groups).await;
    let addr = broker.bootstrap_address();
    create_topic(&addr, "shared", 4, &[]).await;
    produce_numbered(&addr, "shared", 4, 0..200).await;

    let a = Member::start(&addr, "g-share", "shared", &[]);
    let b = Member::start(&addr, "g-share", "shared", &[]);
    wait_for("a 2 + 2 split", T * 2, || {
        a.assignment().len() == 2 && b.assignment().len() == 2
    })
    .await;
    let (pa, pb) = (a.assignment(), b.assignment());
    assert!(pa.is_disjoint(&pb), "{pa:?} and {pb:?} overlap");
    wait_for("the first 200 consumed", T * 2, || {
        a.seen().len() + b.seen().len() >= 200
    })
    .await;

    let seen_b = b.stop();
    wait_for("the survivor owns all 4", T, || a.assignment().len() == 4).await;
    produce_numbered(&addr, "shared", 4, 200..400).await;
    wait_for("all 400 consumed", T * 2, || {
        a.seen().len() + seen_b.len() >= 400
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen_a = a.stop();

    let mut all: Vec<String> = values(&seen_a);
    all.extend(values(&seen_b));
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(all.len(), 400, "every message consumed exactly once");
    assert_eq!(unique.len(), 400);
    for p in &pb {
        assert!(
            seen_b.iter().any(|(q, _, _)| q == p),
            "b consumed its partition {p}"
        );
    }
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_and_metadata_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker_with(dir.path(), fast_groups).await;
    let addr = broker.bootstrap_address();
    create_topic(&addr, "resume", 2, &[]).await;
    produce_numbered(&addr, "resume", 2, 0..100).await;

    let a = addr.clone();
    tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = client_config(&a)
            .set("group.id", "g-resume")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        let mut e = tpl.add_partition("resume", 0);
        e.set_offset(Offset::Offset(17)).unwrap();
        e.set_metadata("first ✓ {json: 1}");
        let mut e = tpl.add_partition("resume", 1);
        e.set_offset(Offset::Offset(42)).unwrap();
        e.set_metadata("");
        c.commit(&tpl, CommitMode::Sync).unwrap();
    })
    .await
    .unwrap();
    broker.shutdown().await.unwrap();

    let broker = start_broker_with(dir.path(), fast_groups).await;
    let addr = broker.bootstrap_address();
    let a = addr.clone();
    let committed = tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = client_config(&a)
            .set("group.id", "g-resume")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition("resume", 0);
        tpl.add_partition("resume", 1);
        let got = c.committed_offsets(tpl, T).unwrap();
        got.elements()
            .iter()
            .map(|e| (e.partition(), e.offset(), e.metadata().to_string()))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_eq!(
        committed,
        vec![
            (0, Offset::Offset(17), "first ✓ {json: 1}".to_string()),
            (1, Offset::Offset(42), String::new())
        ]
    );

    // A group member resumes exactly there: nothing before the commit point again.
    let m = Member::start(&addr, "g-resume", "resume", &[]);
    wait_for("the rest consumed", T * 2, || {
        m.seen().len() >= (50 - 17) + (50 - 42)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = m.stop();
    assert_eq!(seen.len(), (50 - 17) + (50 - 42));
    let first: BTreeMap<i32, i64> = seen.iter().fold(BTreeMap::new(), |mut acc, (p, o, _)| {
        acc.entry(*p).or_insert(*o);
        acc
    });
    assert_eq!(first, BTreeMap::from([(0, 17), (1, 42)]));
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_member_restart_keeps_its_partitions_without_a_rebalance() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker_with(dir.path(), fast_groups).await;
    let addr = broker.bootstrap_address();
    create_topic(&addr, "static", 4, &[]).await;
    let a = Member::start(&addr, "g-static", "static", &[("group.instance.id", "a")]);
    let b = Member::start(&addr, "g-static", "static", &[("group.instance.id", "b")]);
    wait_for("a 2 + 2 split", T * 2, || {
        a.assignment().len() == 2 && b.assignment().len() == 2
    })
    .await;
    let before_b = b.assignment();
    let a_rebalances =
        a.tracker.assigns.load(Ordering::SeqCst) + a.tracker.revokes.load(Ordering::SeqCst);
    drop(b); // a static member leaves no LeaveGroup behind
    let b = Member::start(&addr, "g-static", "static", &[("group.instance.id", "b")]);
    wait_for("b back with its partitions", T, || {
        b.assignment().len() == 2
    })
    .await;
    assert_eq!(b.assignment(), before_b);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        a.tracker.assigns.load(Ordering::SeqCst) + a.tracker.revokes.load(Ordering::SeqCst),
        a_rebalances,
        "the other member saw no rebalance"
    );
    assert_eq!(a.assignment().len(), 2);
    drop((a, b));
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_protocol_all_members_support_is_chosen() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker_with(dir.path(), fast_groups).await;
    let addr = broker.bootstrap_address();
    create_topic(&addr, "assignors", 4, &[]).await;
    let a = Member::start(
        &addr,
        "g-mixed",
        "assignors",
        &[("partition.assignment.strategy", "range,roundrobin")],
    );
    let b = Member::start(
        &addr,
        "g-mixed",
        "assignors",
        &[("partition.assignment.strategy", "roundrobin")],
    );
    wait_for("a 2 + 2 split", T * 2, || {
        a.assignment().len() == 2 && b.assignment().len() == 2
    })
    .await;
    // Round robin over one topic gives each member every other partition.
    let (pa, pb) = (a.assignment(), b.assignment());
    assert!(pa.is_disjoint(&pb));
    assert!(
        pa == BTreeSet::from([0, 2]) || pa == BTreeSet::from([1, 3]),
        "{pa:?}"
    );
    let a2 = addr.clone();
    let protocol = tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = client_config(&a2).create().unwrap();
        let groups = c.fetch_group_list(Some("g-mixed"), T).unwrap();
        let g = &groups.groups()[0];
        (
            g.state().to_string(),
            g.protocol().to_string(),
            g.protocol_type().to_string(),
            g.members().len(),
        )
    })
    .await
    .unwrap();
    assert_eq!(
        protocol,
        ("Stable".into(), "roundrobin".into(), "consumer".into(), 2)
    );
    drop((a, b));
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_rebalance_moves_only_what_it_must() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker_with(dir.path(), fast_groups).await;
    let addr = broker.bootstrap_address();
    create_topic(&addr, "coop", 6, &[]).await;
    let coop = [("partition.assignment.strategy", "cooperative-sticky")];
    let a = Member::start(&addr, "g-coop", "coop", &coop);
    wait_for("a owns all 6", T * 2, || a.assignment().len() == 6).await;
    let b = Member::start(&addr, "g-coop", "coop", &coop);
    wait_for("a 3 + 3 split", T * 2, || {
        a.assignment().len() == 3 && b.assignment().len() == 3
    })
    .await;
    assert!(a.assignment().is_disjoint(&b.assignment()));
    // Only the 3 partitions that moved to b were revoked from a.
    assert_eq!(
        a.tracker.revoked.lock().unwrap().len(),
        3,
        "{:?}",
        a.tracker.revoked.lock().unwrap()
    );
    drop((a, b));
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_joins_and_leaves_never_leave_the_group_stuck() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker_with(dir.path(), fast_groups).await;
    let addr = broker.bootstrap_address();
    create_topic(&addr, "churn", 4, &[]).await;
    let steady = Member::start(&addr, "g-churn", "churn", &[]);
    wait_for("steady owns all 4", T * 2, || {
        steady.assignment().len() == 4
    })
    .await;
    for _ in 0..20 {
        let m = Member::start(&addr, "g-churn", "churn", &[]);
        tokio::time::sleep(Duration::from_millis(150)).await;
        drop(m);
    }
    wait_for("steady owns all 4 again", T * 3, || {
        steady.assignment().len() == 4
    })
    .await;
    produce_numbered(&addr, "churn", 4, 0..40).await;
    wait_for("new messages consumed", T * 2, || steady.seen().len() >= 40).await;
    let a2 = addr.clone();
    let (state, members) = tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = client_config(&a2).create().unwrap();
        let groups = c.fetch_group_list(Some("g-churn"), T).unwrap();
        let g = &groups.groups()[0];
        (g.state().to_string(), g.members().len())
    })
    .await
    .unwrap();
    assert_eq!((state.as_str(), members), ("Stable", 1));
    drop(steady);
    broker.shutdown().await.unwrap();
}

/// librdkafka's admin test (0081, DescribeConsumerGroups) in small: three groups, each with
/// one static member (`group.instance.id`), close; their groups are deleted "session
/// timeout + 1 s" later. A static member sends no LeaveGroup when it closes (KIP-345;
/// librdkafka's `rd_kafka_cgrp_leave_maybe`), so Kafka keeps it until its session times
/// out: DeleteGroups answers NON_EMPTY_GROUP before that, and deletes the groups after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_static_members_expire_and_their_groups_can_be_deleted() {
    use rdkafka::admin::AdminOptions;
    use rdkafka::types::RDKafkaErrorCode;
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker_with(dir.path(), |cfg| {
        fast_groups(cfg);
        // librdkafka's test uses session.timeout.ms=5000.
        cfg.broker.group_min_session_timeout_ms = 5_000;
    })
    .await;
    let addr = broker.bootstrap_address();
    create_topic(&addr, "static-close", 2, &[]).await;
    produce_numbered(&addr, "static-close", 2, 0..20).await;
    let groups = ["g-sc-0", "g-sc-1", "g-sc-2"];
    let instances: Vec<String> = (0..groups.len()).map(|i| format!("instance-{i}")).collect();
    let members: Vec<Member> = groups
        .iter()
        .zip(&instances)
        .map(|(g, i)| {
            Member::start(
                &addr,
                g,
                "static-close",
                &[("group.instance.id", i), ("session.timeout.ms", "5000")],
            )
        })
        .collect();
    wait_for("each member read all 20", T * 2, || {
        members.iter().all(|m| m.seen().len() >= 20)
    })
    .await;
    // Each member heartbeats every 300 ms until it closes: its session ends at the earliest
    // 5 s after this instant, minus one heartbeat interval.
    let closed = std::time::Instant::now();
    for m in members {
        assert_eq!(m.stop().len(), 20);
    }
    let admin = support::admin(&addr);
    let early = admin
        .delete_groups(&groups, &AdminOptions::new())
        .await
        .unwrap();
    assert!(
        closed.elapsed() < Duration::from_secs(4),
        "too slow to tell"
    );
    for r in &early {
        assert_eq!(
            r.as_ref().unwrap_err().1,
            RDKafkaErrorCode::NonEmptyGroup,
            "a closed static member stays until its session times out: {early:?}"
        );
    }
    // Polled with a deadline rather than slept: each group empties once its member's
    // session has timed out.
    let lister: BaseConsumer = client_config(&addr).create().unwrap();
    let states = move |l: &BaseConsumer| -> Vec<String> {
        let list = l.fetch_group_list(None, T).unwrap();
        groups
            .iter()
            .map(|g| {
                list.groups()
                    .iter()
                    .find(|x| x.name() == *g)
                    .map_or("missing".into(), |x| x.state().to_string())
            })
            .collect()
    };
    let emptied = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + T;
        loop {
            let s = states(&lister);
            if s.iter().all(|s| s == "Empty") || std::time::Instant::now() > deadline {
                return s;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .unwrap();
    assert_eq!(emptied, vec!["Empty"; 3]);
    assert!(
        closed.elapsed() >= Duration::from_millis(4_500),
        "emptied after {:?}, before the 5 s session timeout",
        closed.elapsed()
    );
    let deleted = admin
        .delete_groups(&groups, &AdminOptions::new())
        .await
        .unwrap();
    assert!(deleted.iter().all(|r| r.is_ok()), "{deleted:?}");
    broker.shutdown().await.unwrap();
}

/// A cooperative-sticky member that commits every record it consumes and, when partitions
/// are revoked, their positions: a per-record commit may race a rebalance and be refused
/// with ILLEGAL_GENERATION (Kafka answers so too: the commit carries the generation the
/// JoinGroup just replaced), and the commit on revocation covers it, so the next owner
/// starts where this one stopped.
struct CoopMember {
    stop: Arc<std::sync::atomic::AtomicBool>,
    seen: Arc<Mutex<Vec<(i32, i64, String)>>>,
    assignment: Arc<Mutex<BTreeSet<i32>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct CoopCtx;
impl ClientContext for CoopCtx {}
impl ConsumerContext for CoopCtx {
    fn pre_rebalance(&self, c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        if let Rebalance::Revoke(revoked) = r {
            let Ok(positions) = c.position() else { return };
            let mut commit = TopicPartitionList::new();
            for e in positions.elements() {
                let moving = revoked
                    .elements()
                    .iter()
                    .any(|x| x.topic() == e.topic() && x.partition() == e.partition());
                if let (true, Offset::Offset(_)) = (moving, e.offset()) {
                    commit
                        .add_partition_offset(e.topic(), e.partition(), e.offset())
                        .unwrap();
                }
            }
            // Async: the coordinator answers requests in order, so the commit lands before
            // the JoinGroup that hands these partitions on; a sync commit could block this
            // thread for good when the coordinator connection is gone.
            if commit.count() > 0 {
                c.commit(&commit, CommitMode::Async)
                    .expect("commit on revocation");
            }
        }
    }
}

impl CoopMember {
    fn start(addr: &str, group: &str, topic: &str) -> CoopMember {
        use rdkafka::message::Message;
        let mut cfg = client_config(addr);
        cfg.set("group.id", group)
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "300")
            .set("fetch.wait.max.ms", "100");
        let consumer: BaseConsumer<CoopCtx> = cfg.create_with_context(CoopCtx).unwrap();
        consumer.subscribe(&[topic]).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let assignment = Arc::new(Mutex::new(BTreeSet::new()));
        let thread = {
            let (stop, seen, assignment) = (stop.clone(), seen.clone(), assignment.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
                        let v = String::from_utf8_lossy(m.payload().unwrap_or_default());
                        seen.lock()
                            .unwrap()
                            .push((m.partition(), m.offset(), v.to_string()));
                        // May race a rebalance (see above); the revocation commit covers it.
                        let _ = consumer.commit_message(&m, CommitMode::Sync);
                    }
                    if let Ok(a) = consumer.assignment() {
                        *assignment.lock().unwrap() =
                            a.elements().iter().map(|e| e.partition()).collect();
                    }
                }
            })
        };
        CoopMember {
            stop,
            seen,
            assignment,
            thread: Some(thread),
        }
    }

    fn assignment(&self) -> BTreeSet<i32> {
        self.assignment.lock().unwrap().clone()
    }

    fn seen(&self) -> Vec<(i32, i64, String)> {
        self.seen.lock().unwrap().clone()
    }

    fn stop(mut self) -> Vec<(i32, i64, String)> {
        self.halt();
        self.seen()
    }

    /// Bounded: a consumer stuck in librdkafka (a broken group) must not hang the test
    /// after its assertion failed; the thread is left behind then.
    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let deadline = std::time::Instant::now() + T * 2;
        while self.thread.as_ref().is_some_and(|t| !t.is_finished()) {
            if std::time::Instant::now() > deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for CoopMember {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Issue 15: librdkafka's cooperative-sticky leader sends SyncGroup requests in which one
/// member's assignment (long topic names, user data) is most of the body; the pre-decode
/// guard closed those connections as malformed, so the second member never got partitions.
/// Here member A holds all 4 partitions of a 60-character topic and is busy consuming a
/// backlog when B joins: both end with partitions, every record is consumed exactly once,
/// and the broker's own log shows no connection closed.
#[test]
fn cooperative_sticky_member_joins_a_busy_member_with_a_long_topic_name() {
    const RECORDS: usize = 2000;
    // Broker log lines of this test only: the broker runs on a runtime whose threads log to
    // `captured` (a process-wide subscriber would also see the other tests' brokers).
    let captured = LogCapture::default();
    let rt = captured.runtime();
    let topic = format!("cooperative-sticky-{}", "t".repeat(41));
    assert_eq!(topic.len(), 60);
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let broker = start_broker_with(dir.path(), fast_groups).await;
        let addr = broker.bootstrap_address();
        create_topic(&addr, &topic, 4, &[]).await;
        produce_numbered(&addr, &topic, 4, 0..RECORDS).await;
        let a = CoopMember::start(&addr, "g-coop-long", &topic);
        wait_for("a owns all 4", T * 2, || a.assignment().len() == 4).await;
        // A commits every record synchronously: the backlog keeps it busy while B joins.
        wait_for("a is consuming", T, || !a.seen().is_empty()).await;
        let b = CoopMember::start(&addr, "g-coop-long", &topic);
        let seen_at_join = a.seen().len();
        assert!(seen_at_join < RECORDS, "b joins while a is still consuming");
        wait_for("a 2 + 2 split", T * 3, || {
            a.assignment().len() == 2 && b.assignment().len() == 2
        })
        .await;
        produce_numbered(&addr, &topic, 4, RECORDS..2 * RECORDS).await;
        wait_for("all records consumed", T * 3, || {
            a.seen().len() + b.seen().len() >= 2 * RECORDS
        })
        .await;
        // Anything consumed twice would arrive meanwhile.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (pa, pb) = (a.assignment(), b.assignment());
        assert!(pa.is_disjoint(&pb), "{pa:?} and {pb:?} overlap");
        assert_eq!(pa.union(&pb).copied().collect::<Vec<_>>(), [0, 1, 2, 3]);
        let (seen_a, seen_b) = (a.stop(), b.stop());
        assert!(!seen_b.is_empty(), "b consumed records");

        // Exactly once, by position and by value: record m-i went to partition i % 4 at
        // offset i / 4 (one producer, in order).
        let mut all: Vec<(i32, i64, String)> = seen_a.into_iter().chain(seen_b).collect();
        all.sort();
        let expected: Vec<(i32, i64, String)> = (0..4)
            .flat_map(|p| {
                (0..2 * RECORDS)
                    .filter(move |i| i % 4 == p as usize)
                    .map(move |i| (p, (i / 4) as i64, format!("m-{i}")))
            })
            .collect();
        assert_eq!(all.len(), expected.len(), "consumed count");
        assert!(all == expected, "every record exactly once, in place");
        broker.shutdown().await.unwrap();
    });
    assert!(
        captured.lines_with("closing connection").is_empty(),
        "{:#?}",
        captured.lines_with("closing connection")
    );

    // The capture sees the broker's own lines: a SyncGroup v3 claiming i32::MAX assignments
    // is closed as malformed, and logged.
    let lines = rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let broker = start_broker_with(dir.path(), fast_groups).await;
        let mut frame = Vec::new();
        frame.extend_from_slice(&14i16.to_be_bytes()); // SyncGroup
        frame.extend_from_slice(&3i16.to_be_bytes());
        frame.extend_from_slice(&7i32.to_be_bytes()); // correlation id
        frame.extend_from_slice(&(-1i16).to_be_bytes()); // no client id
        frame.extend_from_slice(&[0, 1, b'g']); // group "g"
        frame.extend_from_slice(&1i32.to_be_bytes()); // generation
        frame.extend_from_slice(&[0, 1, b'm']); // member "m"
        frame.extend_from_slice(&(-1i16).to_be_bytes()); // no instance id
        frame.extend_from_slice(&i32::MAX.to_be_bytes()); // assignments
        let mut s = std::net::TcpStream::connect(broker.bootstrap_address()).unwrap();
        use std::io::{Read, Write};
        s.write_all(&(frame.len() as i32).to_be_bytes()).unwrap();
        s.write_all(&frame).unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        assert_eq!(
            s.read(&mut [0u8; 16]).unwrap(),
            0,
            "closed without an answer"
        );
        wait_for("the close is logged", T, || {
            !captured.lines_with("closing connection").is_empty()
        })
        .await;
        broker.shutdown().await.unwrap();
        captured.lines_with("closing connection")
    });
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains("malformed SyncGroup v3 request"),
        "{}",
        lines[0]
    );
}
