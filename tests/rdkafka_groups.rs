//! Consumer groups driven by librdkafka's high-level consumer (and a raw protocol member
//! where a client must misbehave): sharing partitions, failover on close and on a silent
//! death, committed offsets across a broker restart, static membership, assignor choice,
//! cooperative rebalancing, group administration, and churn.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use support::{
    client_config, create_topic, produce_numbered, start_broker_with, values, wait_for, GroupMember,
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
