//! The KIP-848 consumer group protocol driven by librdkafka (`group.protocol=consumer`):
//! incremental reassignment that never gives a partition to two members at once, exactly
//! once consumption with commits, coexistence with a classic group, a broker restart, and
//! bad heartbeats answered with Kafka's error codes.

use crate::common;
use crate::support;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::{
    ApiKey, ConsumerGroupDescribeRequest, ConsumerGroupHeartbeatRequest, GroupId, RequestKind,
    ResponseKind,
};
use kafka_protocol::ResponseError;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::ClientContext;

use common::{str_bytes as s, topic_name, KafkaConn};
use support::{
    client_config, create_topic, produce_numbered, start_broker_with, values, wait_for, GroupMember,
};

const T: Duration = Duration::from_secs(20);

fn fast(cfg: &mut rafka_broker::Config) {
    cfg.broker.group_consumer_heartbeat_interval_ms = 200;
    cfg.broker.offsets_topic_num_partitions = 4;
    cfg.broker.group_initial_rebalance_delay_ms = 200;
}

/// Every assignment change of every member, in one order (a global lock), so the test can
/// replay ownership and prove no partition was ever held by two members.
type Log = Arc<Mutex<Vec<(String, bool, Vec<i32>)>>>;

struct Ctx {
    name: String,
    log: Log,
}
impl ClientContext for Ctx {}
impl ConsumerContext for Ctx {
    fn post_rebalance(&self, _c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        let (assign, tpl) = match r {
            Rebalance::Assign(t) => (true, t),
            Rebalance::Revoke(t) => (false, t),
            Rebalance::Error(_) => return,
        };
        let parts = tpl.elements().iter().map(|e| e.partition()).collect();
        self.log
            .lock()
            .unwrap()
            .push((self.name.clone(), assign, parts));
    }
}

/// A group member speaking `protocol` (classic or consumer), logging its rebalances.
fn member(
    addr: &str,
    group: &str,
    topic: &str,
    name: &str,
    log: &Log,
    protocol: &str,
) -> GroupMember {
    let mut cfg = client_config(addr);
    cfg.set("group.id", group)
        .set("group.protocol", protocol)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "100");
    if protocol == "classic" {
        cfg.set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "300");
    }
    GroupMember::start(
        &cfg,
        topic,
        Ctx {
            name: name.to_string(),
            log: log.clone(),
        },
    )
}

/// Replays the assignment log: no partition is ever assigned while another member owns it.
fn check_exclusive(log: &Log) -> usize {
    let mut owner: BTreeMap<i32, String> = BTreeMap::new();
    let events = log.lock().unwrap().clone();
    for (member, assign, parts) in &events {
        for p in parts {
            if *assign {
                if let Some(o) = owner.get(p) {
                    assert_eq!(
                        o, member,
                        "partition {p} given to {member} while {o} owned it; log: {events:?}"
                    );
                }
                owner.insert(*p, member.clone());
            } else if owner.get(p) == Some(member) {
                owner.remove(p);
            }
        }
    }
    events.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_share_and_reconcile_incrementally() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker_with(dir.path(), fast).await;
    let addr = broker.bootstrap_address();
    create_topic(&addr, "k848", 6, &[]).await;
    produce_numbered(&addr, "k848", 6, 0..300).await;
    let log: Log = Arc::default();
    let a = member(&addr, "g848", "k848", "a", &log, "consumer");
    let b = member(&addr, "g848", "k848", "b", &log, "consumer");
    wait_for("a 3 + 3 split", T, || {
        a.assignment().len() == 3 && b.assignment().len() == 3
    })
    .await;
    let (before_a, before_b) = (a.assignment(), b.assignment());
    wait_for("first 300 consumed", T, || {
        a.seen().len() + b.seen().len() >= 300
    })
    .await;

    let c = member(&addr, "g848", "k848", "c", &log, "consumer");
    wait_for("a 2 + 2 + 2 split", T, || {
        a.assignment().len() == 2 && b.assignment().len() == 2 && c.assignment().len() == 2
    })
    .await;
    assert!(
        a.assignment().is_subset(&before_a),
        "a only gave partitions away"
    );
    assert!(
        b.assignment().is_subset(&before_b),
        "b only gave partitions away"
    );
    produce_numbered(&addr, "k848", 6, 300..600).await;
    wait_for("600 consumed", T, || {
        a.seen().len() + b.seen().len() + c.seen().len() >= 600
    })
    .await;

    // b leaves: its partitions go to the others.
    let seen_b = values(&b.stop());
    wait_for("a and c own all 6", T, || {
        a.assignment().len() + c.assignment().len() == 6
    })
    .await;
    produce_numbered(&addr, "k848", 6, 600..900).await;
    wait_for("900 consumed", T, || {
        a.seen().len() + seen_b.len() + c.seen().len() >= 900
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut all = values(&a.stop());
    all.extend(seen_b);
    all.extend(values(&c.stop()));
    assert_eq!(all.len(), 900, "exactly once");
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 900);
    assert!(check_exclusive(&log) >= 4);
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_and_consumer_groups_coexist() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker_with(dir.path(), fast).await;
    let addr = broker.bootstrap_address();
    create_topic(&addr, "both", 2, &[]).await;
    produce_numbered(&addr, "both", 2, 0..100).await;
    let log: Log = Arc::default();
    let new = member(&addr, "g-new", "both", "new", &log, "consumer");
    let old = member(&addr, "g-old", "both", "old", &log, "classic");
    wait_for("both read everything", T, || {
        new.seen().len() >= 100 && old.seen().len() >= 100
    })
    .await;
    // Each group keeps its type while it has members: a classic join to the consumer
    // group, and a consumer-protocol join to the classic group, are refused.
    let mut conn = KafkaConn::connect(&addr).await;
    let classic_join = kafka_protocol::messages::JoinGroupRequest::default()
        .with_group_id(GroupId(s("g-new")))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![
            kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(bytes::Bytes::from_static(b"\0\0")),
        ]);
    let ResponseKind::JoinGroup(j) = conn
        .send(ApiKey::JoinGroup, 5, RequestKind::JoinGroup(classic_join))
        .await
    else {
        panic!()
    };
    assert_eq!(
        j.error_code,
        ResponseError::InconsistentGroupProtocol.code()
    );
    let hb = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s("g-old")))
        .with_member_id(s("intruder"))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(10_000)
        .with_subscribed_topic_names(Some(vec![topic_name("both")]));
    assert_eq!(
        send(&mut conn, hb).await.error_code,
        ResponseError::GroupIdNotFound.code()
    );
    assert_eq!(new.stop().len(), 100);
    assert_eq!(old.stop().len(), 100);
    broker.shutdown().await.unwrap();
}

async fn describe(conn: &mut KafkaConn, group: &str) -> (i32, Vec<(String, i32, usize)>) {
    let ResponseKind::ConsumerGroupDescribe(d) = conn
        .send(
            ApiKey::ConsumerGroupDescribe,
            0,
            RequestKind::ConsumerGroupDescribe(
                ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(group))]),
            ),
        )
        .await
    else {
        panic!()
    };
    let g = &d.groups[0];
    assert_eq!(g.error_code, 0, "{g:?}");
    let mut members: Vec<(String, i32, usize)> = g
        .members
        .iter()
        .map(|m| {
            (
                m.member_id.to_string(),
                m.member_epoch,
                m.assignment
                    .topic_partitions
                    .iter()
                    .map(|t| t.partitions.len())
                    .sum(),
            )
        })
        .collect();
    members.sort();
    (g.group_epoch, members)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_survives_a_broker_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker_with(dir.path(), fast).await;
    let addr = broker.bootstrap_address();
    create_topic(&addr, "survive", 4, &[]).await;
    produce_numbered(&addr, "survive", 4, 0..200).await;
    let log: Log = Arc::default();
    let a = member(&addr, "g-survive", "survive", "a", &log, "consumer");
    let b = member(&addr, "g-survive", "survive", "b", &log, "consumer");
    wait_for("2 + 2", T, || {
        a.assignment().len() == 2 && b.assignment().len() == 2
    })
    .await;
    wait_for("200 consumed", T, || a.seen().len() + b.seen().len() >= 200).await;
    let mut conn = KafkaConn::connect(&addr).await;
    let before = describe(&mut conn, "g-survive").await;
    assert_eq!(before.1.len(), 2);
    drop(conn);

    broker.shutdown().await.unwrap();
    let broker = start_broker_with(dir.path(), |cfg| {
        fast(cfg);
        cfg.broker.listen = addr.clone();
    })
    .await;
    let mut conn = KafkaConn::connect(&addr).await;
    let after = describe(&mut conn, "g-survive").await;
    assert_eq!(after, before, "epochs, members and assignments came back");

    // The members carry on with their epochs and resume at their committed offsets.
    produce_numbered(&addr, "survive", 4, 200..400).await;
    wait_for("400 consumed", T, || a.seen().len() + b.seen().len() >= 400).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut all = values(&a.stop());
    all.extend(values(&b.stop()));
    assert_eq!(all.len(), 400);
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 400);
    check_exclusive(&log);
    broker.shutdown().await.unwrap();
}

async fn send(
    conn: &mut KafkaConn,
    req: ConsumerGroupHeartbeatRequest,
) -> kafka_protocol::messages::ConsumerGroupHeartbeatResponse {
    let ResponseKind::ConsumerGroupHeartbeat(r) = conn
        .send(
            ApiKey::ConsumerGroupHeartbeat,
            1,
            RequestKind::ConsumerGroupHeartbeat(req),
        )
        .await
    else {
        panic!()
    };
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_heartbeats_get_error_codes() {
    let b = common::start_broker(fast).await;
    let addr = b.addr();
    create_topic(&addr, "hb", 1, &[]).await;
    let mut conn = KafkaConn::connect(&addr).await;
    let hb = |member: &str, epoch: i32| {
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s("g-hb")))
            .with_member_id(s(member))
            .with_member_epoch(epoch)
            .with_rebalance_timeout_ms(10_000)
    };
    let joined = send(
        &mut conn,
        hb("m1", 0).with_subscribed_topic_names(Some(vec![topic_name("hb")])),
    )
    .await;
    assert_eq!(joined.error_code, 0);
    assert!(joined.member_epoch > 0);
    let r = send(&mut conn, hb("m1", joined.member_epoch + 3)).await;
    assert_eq!(
        r.error_code,
        ResponseError::FencedMemberEpoch.code(),
        "stale member epoch"
    );
    let r = send(
        &mut conn,
        hb("m2", 0)
            .with_subscribed_topic_names(Some(vec![topic_name("hb")]))
            .with_server_assignor(Some(s("magic"))),
    )
    .await;
    assert_eq!(
        r.error_code,
        ResponseError::UnsupportedAssignor.code(),
        "unknown assignor"
    );
    let r = send(
        &mut conn,
        hb("m3", 0).with_subscribed_topic_regex(Some(s("hb("))),
    )
    .await;
    assert_eq!(
        r.error_code,
        ResponseError::InvalidRegularExpression.code(),
        "invalid regex"
    );
    let r = send(&mut conn, hb("nobody", 5)).await;
    assert_eq!(r.error_code, ResponseError::UnknownMemberId.code());
    // A regex subscription picks up a topic created later, without a restart.
    let r = send(
        &mut conn,
        hb("m4", 0).with_subscribed_topic_regex(Some(s("late-.*"))),
    )
    .await;
    assert_eq!(r.error_code, 0);
    create_topic(&addr, "late-topic", 2, &[]).await;
    let mut epoch = r.member_epoch;
    let mut got = 0;
    for _ in 0..20 {
        let r = send(&mut conn, hb("m4", epoch)).await;
        assert_eq!(r.error_code, 0);
        epoch = r.member_epoch;
        if let Some(a) = r.assignment {
            got = a
                .topic_partitions
                .iter()
                .map(|t| t.partitions.len())
                .sum::<usize>();
        }
        if got == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(got, 2, "the new topic's partitions were assigned");

    // New partitions of a subscribed topic are assigned too.
    let admin = support::admin(&addr);
    let grown = admin
        .create_partitions(
            &[rdkafka::admin::NewPartitions::new("hb", 3)],
            &rdkafka::admin::AdminOptions::new(),
        )
        .await
        .unwrap();
    assert!(grown[0].is_ok());
    let mut epoch = joined.member_epoch;
    let mut got = 0;
    for _ in 0..20 {
        let r = send(&mut conn, hb("m1", epoch)).await;
        assert_eq!(r.error_code, 0, "{r:?}");
        epoch = r.member_epoch;
        if let Some(a) = r.assignment {
            got = a
                .topic_partitions
                .iter()
                .map(|t| t.partitions.len())
                .sum::<usize>();
        }
        if got == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(got, 3, "all 3 partitions of the grown topic");
    b.shutdown().await;
}

/// One OffsetCommit: per (topic, partition) the error code.
async fn commit(
    conn: &mut KafkaConn,
    version: i16,
    group: &str,
    member: &str,
    epoch: i32,
    parts: &[(&str, i32)],
) -> Vec<(String, i32, i16)> {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    let req = kafka_protocol::messages::OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(member))
        .with_generation_id_or_member_epoch(epoch)
        .with_topics(
            parts
                .iter()
                .map(|(t, p)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(topic_name(t))
                        .with_partitions(vec![OffsetCommitRequestPartition::default()
                            .with_partition_index(*p)
                            .with_committed_offset(1)])
                })
                .collect(),
        );
    let ResponseKind::OffsetCommit(r) = conn
        .send(
            ApiKey::OffsetCommit,
            version,
            RequestKind::OffsetCommit(req),
        )
        .await
    else {
        panic!()
    };
    r.topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.to_string(), p.partition_index, p.error_code))
        })
        .collect()
}

/// OffsetCommit to a consumer group, in Kafka's check order (written down at
/// `GroupCoordinator::commit_offsets`): unknown topics first, per partition and without
/// looking at the group; then the group, then the member and its epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_commits_to_a_consumer_group_are_checked_in_kafkas_order() {
    let b = common::start_broker(fast).await;
    let addr = b.addr();
    create_topic(&addr, "oc", 2, &[]).await;
    let mut conn = KafkaConn::connect(&addr).await;
    let joined = send(
        &mut conn,
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s("g-oc")))
            .with_member_id(s("m1"))
            .with_member_epoch(0)
            .with_rebalance_timeout_ms(10_000)
            .with_subscribed_topic_names(Some(vec![topic_name("oc")])),
    )
    .await;
    assert_eq!(joined.error_code, 0);
    let epoch = joined.member_epoch;
    let code = |e: ResponseError| e.code();
    let unknown_topic = code(ResponseError::UnknownTopicOrPartition);

    // A non-member (epoch -1, no member id), as a standalone consumer with a group.id:
    // unknown topics and partitions get UNKNOWN_TOPIC_OR_PARTITION, the known partition
    // UNKNOWN_MEMBER_ID (the group has members).
    let r = commit(
        &mut conn,
        9,
        "g-oc",
        "",
        -1,
        &[("no-such-topic", 0), ("oc", 7), ("oc", 0)],
    )
    .await;
    assert_eq!(
        r,
        vec![
            ("no-such-topic".into(), 0, unknown_topic),
            ("oc".into(), 7, unknown_topic),
            ("oc".into(), 0, code(ResponseError::UnknownMemberId)),
        ]
    );
    // Only unknown topics: the group is not even looked at (nor created).
    let r = commit(&mut conn, 9, "g-never", "m", 5, &[("no-such-topic", 1)]).await;
    assert_eq!(r, vec![("no-such-topic".into(), 1, unknown_topic)]);
    assert_eq!(
        commit(&mut conn, 9, "g-never", "m", 5, &[("oc", 1)]).await[0].2,
        code(ResponseError::GroupIdNotFound),
        "a missing group, from v9"
    );
    assert_eq!(
        commit(&mut conn, 8, "g-never", "m", 5, &[("oc", 1)]).await[0].2,
        code(ResponseError::IllegalGeneration),
        "a missing group, before v9"
    );
    // The member and its epoch.
    for (version, member, e, want) in [
        (9, "m1", epoch + 1, code(ResponseError::FencedMemberEpoch)),
        (9, "m1", epoch - 1, code(ResponseError::StaleMemberEpoch)),
        (9, "m2", epoch, code(ResponseError::UnknownMemberId)),
        (8, "m1", epoch, code(ResponseError::UnsupportedVersion)),
        (9, "m1", epoch, 0),
    ] {
        let r = commit(&mut conn, version, "g-oc", member, e, &[("oc", 0)]).await;
        assert_eq!(r[0].2, want, "v{version} {member} epoch {e}");
    }

    // librdkafka as a standalone consumer of that group (group.protocol=consumer, no
    // subscription) committing for a topic that does not exist.
    let a = addr.clone();
    let err = tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = support::client_config(&a)
            .set("group.id", "g-oc")
            .set("group.protocol", "consumer")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition_offset("no-such-topic", 0, rdkafka::Offset::Offset(3))
            .unwrap();
        rdkafka::consumer::Consumer::commit(&c, &tpl, rdkafka::consumer::CommitMode::Sync)
    })
    .await
    .unwrap();
    assert_eq!(
        err.unwrap_err().rdkafka_error_code(),
        Some(rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition)
    );
    b.shutdown().await;
}

/// A member that re-subscribes with a new regular expression gives up the partitions of
/// the topics it no longer matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_regex_subscription_drops_the_topics_it_no_longer_matches() {
    let b = common::start_broker(fast).await;
    let addr = b.addr();
    create_topic(&addr, "rx-big", 8, &[]).await;
    create_topic(&addr, "rx-small", 2, &[]).await;
    let a = addr.clone();
    let (first, second) = tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::Consumer;
        let c: BaseConsumer = support::client_config(&a)
            .set("group.id", "g-rx")
            .set("group.protocol", "consumer")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let assigned = |c: &BaseConsumer| -> Vec<(String, i32)> {
            let mut v: Vec<(String, i32)> = c
                .assignment()
                .unwrap()
                .elements()
                .iter()
                .map(|e| (e.topic().to_string(), e.partition()))
                .collect();
            v.sort();
            v
        };
        let poll_until = |c: &BaseConsumer, n: usize| {
            let deadline = std::time::Instant::now() + T;
            while assigned(c).len() != n && std::time::Instant::now() < deadline {
                let _ = c.poll(Duration::from_millis(50));
            }
            assigned(c)
        };
        c.subscribe(&["^rx-.*"]).unwrap();
        let first = poll_until(&c, 10);
        c.subscribe(&["^rx-sm.*"]).unwrap();
        let second = poll_until(&c, 2);
        // Changed again before the previous change settled: only the last one counts.
        c.subscribe(&["^rx-.*"]).unwrap();
        let _ = c.poll(Duration::from_millis(50));
        c.subscribe(&["^rx-bi.*"]).unwrap();
        let third = poll_until(&c, 8);
        assert_eq!(
            third,
            (0..8)
                .map(|p| ("rx-big".to_string(), p))
                .collect::<Vec<_>>()
        );
        // Leave with nothing assigned. Closing with partitions assigned makes rust-rdkafka's
        // drop revoke them from inside librdkafka's close, and once in CI that revocation
        // (`rd_kafka_assign`, no timeout) waited forever for librdkafka's own group thread.
        c.unsubscribe();
        assert_eq!(
            poll_until(&c, 0),
            vec![],
            "still assigned after unsubscribe"
        );
        (first, second)
    })
    .await
    .unwrap();
    assert_eq!(first.len(), 10, "{first:?}");
    assert_eq!(
        second,
        vec![("rx-small".to_string(), 0), ("rx-small".to_string(), 1)]
    );
    b.shutdown().await;
}
