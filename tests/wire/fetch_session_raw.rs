//! KIP-227 incremental fetch sessions over raw Fetch requests: a full fetch (epoch 0) opens
//! a session; incremental fetches name only what changed and are answered only with
//! partitions that have something new; forgotten partitions leave; a wrong epoch, an
//! unknown session and a switch between topic names and ids are the errors Kafka sends;
//! epoch -1 closes; a full cache answers sessionless; an empty incremental fetch long-polls.
//! With an authorizer, every fetch of a session is authorized over all the partitions it
//! reads: a revoked READ answers TOPIC_AUTHORIZATION_FAILED on the next incremental fetch.

use crate::common;

use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, RequestKind, ResponseKind};

use common::{
    create_topic, decode_records, produce, simple_batch, start_broker, topic_name, KafkaConn,
};

const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
const INVALID_FETCH_SESSION_EPOCH: i16 = 71;
const FETCH_SESSION_TOPIC_ID_ERROR: i16 = 106;

const TOPIC: &str = "sessions";

/// Partitions of another topic to fetch: (name, id, [(partition, fetch offset)]); the
/// name is sent before v13, the id from v13.
type MoreTopic<'a> = (&'a str, uuid::Uuid, &'a [(i32, i64)]);

/// One Fetch of `TOPIC`: partitions `parts` at their fetch offsets, `forgotten` partitions;
/// then the partitions of `more`.
struct SessionFetch<'a> {
    version: i16,
    topic_id: uuid::Uuid,
    id: i32,
    epoch: i32,
    parts: &'a [(i32, i64)],
    forgotten: &'a [i32],
    max_wait_ms: i32,
    more: &'a [MoreTopic<'a>],
}

impl SessionFetch<'_> {
    fn new(id: i32, epoch: i32, parts: &[(i32, i64)]) -> SessionFetch<'_> {
        SessionFetch {
            version: 12,
            topic_id: uuid::Uuid::nil(),
            id,
            epoch,
            parts,
            forgotten: &[],
            max_wait_ms: 0,
            more: &[],
        }
    }

    async fn send(&self, conn: &mut KafkaConn) -> FetchResponse {
        let by_id = self.version >= 13;
        let (name, id) = if by_id {
            (topic_name(""), self.topic_id)
        } else {
            (topic_name(TOPIC), uuid::Uuid::nil())
        };
        let topic = |name, id, parts: &[(i32, i64)]| {
            FetchTopic::default()
                .with_topic(name)
                .with_topic_id(id)
                .with_partitions(
                    parts
                        .iter()
                        .map(|&(p, offset)| {
                            FetchPartition::default()
                                .with_partition(p)
                                .with_current_leader_epoch(-1)
                                .with_fetch_offset(offset)
                                .with_log_start_offset(-1)
                                .with_partition_max_bytes(1 << 20)
                        })
                        .collect(),
                )
        };
        let mut topics = if self.parts.is_empty() {
            vec![]
        } else {
            vec![topic(name.clone(), id, self.parts)]
        };
        for &(other, other_id, parts) in self.more {
            topics.push(if by_id {
                topic(topic_name(""), other_id, parts)
            } else {
                topic(topic_name(other), uuid::Uuid::nil(), parts)
            });
        }
        let forgotten = if self.forgotten.is_empty() {
            vec![]
        } else {
            vec![ForgottenTopic::default()
                .with_topic(name)
                .with_topic_id(id)
                .with_partitions(self.forgotten.to_vec())]
        };
        let req = FetchRequest::default()
            .with_replica_id((-1).into())
            .with_max_wait_ms(self.max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_session_id(self.id)
            .with_session_epoch(self.epoch)
            .with_topics(topics)
            .with_forgotten_topics_data(forgotten);
        let ResponseKind::Fetch(r) = conn
            .send(ApiKey::Fetch, self.version, RequestKind::Fetch(req))
            .await
        else {
            panic!("not a Fetch response")
        };
        r
    }
}

/// (partition, high watermark, keys of the records) of each partition answered.
fn answered(r: &FetchResponse) -> Vec<(i32, i64, Vec<String>)> {
    assert_eq!(r.error_code, 0, "top-level error");
    r.responses
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| {
            assert_eq!(p.error_code, 0, "partition {}", p.partition_index);
            let (_, records) = decode_records(p.records.clone());
            let keys = records.into_iter().map(|r| r.key).collect();
            (p.partition_index, p.high_watermark, keys)
        })
        .collect()
}

fn keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

async fn produce_to(conn: &mut KafkaConn, partition: i32, prefix: &str, n: usize) -> i64 {
    let r = produce(
        conn,
        TOPIC,
        partition,
        simple_batch(prefix, n, 1_000).into_bytes(),
    )
    .await;
    assert_eq!(r.error_code, 0);
    r.base_offset
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_fetches_answer_only_partitions_with_news() {
    let broker = start_broker(|_| {}).await;
    let mut conn = KafkaConn::connect(&broker.addr()).await;
    assert_eq!(create_topic(&mut conn, TOPIC, 3, &[]).await, 0);
    assert_eq!(produce_to(&mut conn, 0, "a", 2).await, 0);
    assert_eq!(produce_to(&mut conn, 1, "b", 3).await, 0);

    // Full fetch, epoch 0: a session, every partition answered.
    let r = SessionFetch::new(0, 0, &[(0, 0), (1, 0), (2, 0)])
        .send(&mut conn)
        .await;
    let id = r.session_id;
    assert!(id > 0, "no session opened");
    assert_eq!(
        answered(&r),
        vec![(0, 2, keys("a", 2)), (1, 3, keys("b", 3)), (2, 0, vec![])]
    );

    // Epoch 1 names the new positions; nothing new anywhere: an empty answer.
    let r = SessionFetch::new(id, 1, &[(0, 2), (1, 3)])
        .send(&mut conn)
        .await;
    assert_eq!((r.session_id, answered(&r)), (id, vec![]));

    // New data on partition 2 only: only it is answered, without naming anything.
    assert_eq!(produce_to(&mut conn, 2, "c", 1).await, 0);
    let r = SessionFetch::new(id, 2, &[]).send(&mut conn).await;
    assert_eq!(
        (r.session_id, answered(&r)),
        (id, vec![(2, 1, keys("c", 1))])
    );

    // Partition 2 forgotten: its new data is not answered; partition 0's is.
    assert_eq!(produce_to(&mut conn, 2, "d", 1).await, 1);
    assert_eq!(produce_to(&mut conn, 0, "e", 2).await, 2);
    let r = SessionFetch {
        forgotten: &[2],
        ..SessionFetch::new(id, 3, &[])
    }
    .send(&mut conn)
    .await;
    assert_eq!(answered(&r), vec![(0, 4, keys("e", 2))]);

    // The same epoch again: INVALID_FETCH_SESSION_EPOCH, no partitions, session id 0;
    // the session still expects epoch 4.
    let r = SessionFetch::new(id, 3, &[(0, 4)]).send(&mut conn).await;
    assert_eq!(
        (r.error_code, r.session_id, r.responses.len()),
        (INVALID_FETCH_SESSION_EPOCH, 0, 0)
    );
    let r = SessionFetch::new(id, 4, &[(0, 4)]).send(&mut conn).await;
    assert_eq!((r.session_id, answered(&r)), (id, vec![]));

    // An id the broker never gave: FETCH_SESSION_ID_NOT_FOUND.
    let other = if id == i32::MAX { 1 } else { id + 1 };
    let r = SessionFetch::new(other, 1, &[(0, 0)]).send(&mut conn).await;
    assert_eq!(
        (r.error_code, r.session_id, r.responses.len()),
        (FETCH_SESSION_ID_NOT_FOUND, 0, 0)
    );

    // A session belongs to no connection: another one goes on with it.
    let mut again = KafkaConn::connect(&broker.addr()).await;
    let r = SessionFetch::new(id, 5, &[(1, 0)]).send(&mut again).await;
    assert_eq!(
        (r.session_id, answered(&r)),
        (id, vec![(1, 3, keys("b", 3))])
    );

    // Epoch -1 closes it and is answered sessionless, with what it names.
    let r = SessionFetch::new(id, -1, &[(2, 1)]).send(&mut conn).await;
    assert_eq!(
        (r.session_id, answered(&r)),
        (0, vec![(2, 2, keys("d", 1))])
    );
    let r = SessionFetch::new(id, 6, &[]).send(&mut conn).await;
    assert_eq!(r.error_code, FETCH_SESSION_ID_NOT_FOUND);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_by_topic_id_refuse_names() {
    let broker = start_broker(|_| {}).await;
    let mut conn = KafkaConn::connect(&broker.addr()).await;
    assert_eq!(create_topic(&mut conn, TOPIC, 2, &[]).await, 0);
    let m = common::metadata(&mut conn, Some(&[TOPIC])).await;
    let topic_id = m.topics[0].topic_id;
    assert_eq!(produce_to(&mut conn, 1, "a", 2).await, 0);
    let v13 = |id, epoch, parts| SessionFetch {
        version: 13,
        topic_id,
        ..SessionFetch::new(id, epoch, parts)
    };
    let r = v13(0, 0, &[(0, 0), (1, 0)]).send(&mut conn).await;
    let id = r.session_id;
    assert!(id > 0);
    assert_eq!(answered(&r), vec![(0, 0, vec![]), (1, 2, keys("a", 2))]);
    assert_eq!(r.responses[0].topic_id, topic_id);

    // The session names topics by id: a v12 incremental fetch is FETCH_SESSION_TOPIC_ID_ERROR.
    let r = SessionFetch::new(id, 1, &[]).send(&mut conn).await;
    assert_eq!(
        (r.error_code, r.responses.len()),
        (FETCH_SESSION_TOPIC_ID_ERROR, 0)
    );
    assert_eq!(produce_to(&mut conn, 0, "b", 1).await, 0);
    let r = v13(id, 1, &[(1, 2)]).send(&mut conn).await;
    assert_eq!(
        (r.session_id, answered(&r)),
        (id, vec![(0, 1, keys("b", 1))])
    );
    assert_eq!(r.responses[0].topic_id, topic_id);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_cache_answers_sessionless() {
    let broker = start_broker(|c| c.broker.max_incremental_fetch_session_cache_slots = 1).await;
    let mut conn = KafkaConn::connect(&broker.addr()).await;
    assert_eq!(create_topic(&mut conn, TOPIC, 2, &[]).await, 0);
    assert_eq!(produce_to(&mut conn, 0, "a", 1).await, 0);
    let r = SessionFetch::new(0, 0, &[(0, 0), (1, 0)])
        .send(&mut conn)
        .await;
    let first = r.session_id;
    assert!(first > 0);

    // The one slot is taken by a session with more partitions: answered without one.
    let r = SessionFetch::new(0, 0, &[(0, 0)]).send(&mut conn).await;
    assert_eq!(
        (r.session_id, answered(&r)),
        (0, vec![(0, 1, keys("a", 1))])
    );
    let r = SessionFetch::new(first, 1, &[(0, 1)]).send(&mut conn).await;
    assert_eq!((r.session_id, answered(&r)), (first, vec![]));
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_fetch_with_nothing_new_waits() {
    let broker = start_broker(|_| {}).await;
    let mut conn = KafkaConn::connect(&broker.addr()).await;
    let mut producer = KafkaConn::connect(&broker.addr()).await;
    assert_eq!(create_topic(&mut conn, TOPIC, 2, &[]).await, 0);
    let r = SessionFetch::new(0, 0, &[(0, 0), (1, 0)])
        .send(&mut conn)
        .await;
    let id = r.session_id;
    assert!(id > 0);

    // Nothing arrives: answered empty after about max_wait_ms.
    let started = Instant::now();
    let r = SessionFetch {
        max_wait_ms: 300,
        ..SessionFetch::new(id, 1, &[])
    }
    .send(&mut conn)
    .await;
    let elapsed = started.elapsed();
    assert_eq!((r.session_id, answered(&r)), (id, vec![]));
    assert!(
        elapsed >= Duration::from_millis(250),
        "did not wait: {elapsed:?}"
    );

    // Data arrives while it waits: answered with that partition alone, at once.
    let produced = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        produce_to(&mut producer, 1, "late", 1).await
    });
    let started = Instant::now();
    let r = SessionFetch {
        max_wait_ms: 10_000,
        ..SessionFetch::new(id, 2, &[])
    }
    .send(&mut conn)
    .await;
    let elapsed = started.elapsed();
    assert_eq!(produced.await.expect("producer"), 0);
    assert_eq!(answered(&r), vec![(1, 1, keys("late", 1))]);
    assert!(
        elapsed < Duration::from_millis(5_000),
        "answered after {elapsed:?}"
    );
    broker.shutdown().await;
}

/// An incremental fetch leaves out, unread, a partition at its end whose marks are those
/// the session sent; one whose log start moved (DeleteRecords up to its end) is still
/// answered, with no records and the new log start, and so is another topic's news while
/// this one's partitions are all left out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caught_up_partitions_are_answered_when_their_marks_move() {
    let broker = start_broker(|_| {}).await;
    let mut conn = KafkaConn::connect(&broker.addr()).await;
    assert_eq!(create_topic(&mut conn, TOPIC, 2, &[]).await, 0);
    assert_eq!(create_topic(&mut conn, "other", 1, &[]).await, 0);
    assert_eq!(produce_to(&mut conn, 0, "a", 2).await, 0);
    assert_eq!(produce_to(&mut conn, 1, "b", 3).await, 0);
    let other = [(0, 0)];
    let more: &[MoreTopic] = &[("other", uuid::Uuid::nil(), &other)];
    let r = SessionFetch {
        more,
        ..SessionFetch::new(0, 0, &[(0, 0), (1, 0)])
    }
    .send(&mut conn)
    .await;
    let id = r.session_id;
    assert!(id > 0);
    assert_eq!(
        answered(&r),
        vec![(0, 2, keys("a", 2)), (1, 3, keys("b", 3)), (0, 0, vec![])]
    );
    let r = SessionFetch::new(id, 1, &[(0, 2), (1, 3)])
        .send(&mut conn)
        .await;
    assert_eq!((r.session_id, answered(&r)), (id, vec![]));

    // Partition 0's log start moves to its end: answered, empty, with the new log start.
    let d = common::delete_records(&mut conn, TOPIC, 0, 2).await;
    assert_eq!((d.error_code, d.low_watermark), (0, 2));
    let r = SessionFetch::new(id, 2, &[]).send(&mut conn).await;
    assert_eq!((r.session_id, answered(&r)), (id, vec![(0, 2, vec![])]));
    assert_eq!(r.responses[0].topic, topic_name(TOPIC));
    assert_eq!(r.responses[0].partitions[0].log_start_offset, 2);
    // Sent once: the next fetch leaves it out again.
    let r = SessionFetch::new(id, 3, &[]).send(&mut conn).await;
    assert_eq!((r.session_id, answered(&r)), (id, vec![]));

    // News on the other topic alone: answered under its own name.
    let p = produce(
        &mut conn,
        "other",
        0,
        simple_batch("c", 1, 1_000).into_bytes(),
    )
    .await;
    assert_eq!(p.error_code, 0);
    let r = SessionFetch::new(id, 4, &[]).send(&mut conn).await;
    assert_eq!(
        (r.session_id, answered(&r)),
        (id, vec![(0, 1, keys("c", 1))])
    );
    assert_eq!(r.responses.len(), 1);
    assert_eq!(r.responses[0].topic, topic_name("other"));
    broker.shutdown().await;
}

/// (topic, partition, error code, high watermark, keys of the records) of each partition
/// answered, the topic by name (before v13) or by id.
fn outcome(r: &FetchResponse) -> Vec<(String, i32, i16, i64, Vec<String>)> {
    assert_eq!(r.error_code, 0, "top-level error");
    let mut out: Vec<_> = r
        .responses
        .iter()
        .flat_map(|t| {
            let topic = if t.topic.is_empty() {
                t.topic_id.to_string()
            } else {
                t.topic.to_string()
            };
            t.partitions.iter().map(move |p| {
                let (_, records) = decode_records(p.records.clone());
                let keys = records.into_iter().map(|r| r.key).collect();
                (
                    topic.clone(),
                    p.partition_index,
                    p.error_code,
                    p.high_watermark,
                    keys,
                )
            })
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_under_acls_authorize_every_partition_they_read() {
    use crate::authz_raw::{authz_broker, connect, grant, login, revoke, Grant, READ, TOPIC as T};
    const REFUSED: i16 = 29;
    let broker = authz_broker(&[]).await;
    let mut admin = connect(&broker, "PLAIN_TEXT").await;
    assert_eq!(create_topic(&mut admin, TOPIC, 2, &[]).await, 0);
    assert_eq!(create_topic(&mut admin, "audit", 1, &[]).await, 0);
    let ids = common::metadata(&mut admin, Some(&[TOPIC, "audit"])).await;
    let id_of = |name: &str| {
        ids.topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == name))
            .map(|t| t.topic_id)
            .expect("topic id")
    };
    let (sessions_id, audit_id) = (id_of(TOPIC), id_of("audit"));
    assert_eq!(produce_to(&mut admin, 0, "a", 2).await, 0);
    let r = produce(
        &mut admin,
        "audit",
        0,
        simple_batch("x", 1, 1_000).into_bytes(),
    )
    .await;
    assert_eq!(r.error_code, 0);
    const AUDIT_READ: &[Grant] = &[(T, "audit", READ)];
    grant(&mut admin, &[(T, TOPIC, READ), (T, "audit", READ)]).await;
    let mut alice = login(&broker, "alice").await;

    // With ACLs on, a full fetch opens a session; every partition is answered.
    let audit = [("audit", audit_id, &[(0, 0)][..])];
    let r = SessionFetch {
        more: &audit,
        ..SessionFetch::new(0, 0, &[(0, 0), (1, 0)])
    }
    .send(&mut alice)
    .await;
    let id = r.session_id;
    assert!(id > 0, "no session opened with ACLs on");
    let s = |t: &str| t.to_string();
    assert_eq!(
        outcome(&r),
        vec![
            (s("audit"), 0, 0, 1, keys("x", 1)),
            (s(TOPIC), 0, 0, 2, keys("a", 2)),
            (s(TOPIC), 1, 0, 0, vec![]),
        ]
    );
    let r = SessionFetch {
        more: &[("audit", audit_id, &[(0, 1)])],
        ..SessionFetch::new(id, 1, &[(0, 2)])
    }
    .send(&mut alice)
    .await;
    assert_eq!((r.session_id, outcome(&r)), (id, vec![]));

    // READ on audit revoked while the session lives; new records on both topics. The next
    // incremental fetch names nothing: audit's partition is refused, no records, and the
    // allowed topic's news is answered.
    let r = produce(
        &mut admin,
        "audit",
        0,
        simple_batch("y", 1, 1_000).into_bytes(),
    )
    .await;
    assert_eq!(r.error_code, 0);
    assert_eq!(produce_to(&mut admin, 1, "b", 1).await, 0);
    revoke(&mut admin, AUDIT_READ).await;
    let r = SessionFetch::new(id, 2, &[]).send(&mut alice).await;
    assert_eq!(
        (r.session_id, outcome(&r)),
        (
            id,
            vec![
                (s("audit"), 0, REFUSED, -1, vec![]),
                (s(TOPIC), 1, 0, 1, keys("b", 1)),
            ]
        )
    );

    // The refused partition stays in the session and is answered refused on every fetch
    // (it carries an error), but it does not end the long poll on the others.
    let started = Instant::now();
    let r = SessionFetch {
        max_wait_ms: 300,
        ..SessionFetch::new(id, 3, &[(1, 1)])
    }
    .send(&mut alice)
    .await;
    assert_eq!(
        (r.session_id, outcome(&r)),
        (id, vec![(s("audit"), 0, REFUSED, -1, vec![])])
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(250),
        "did not wait: {elapsed:?}"
    );

    // Another principal going on with alice's session is authorized as itself: bob may
    // read nothing, so every partition of the session is refused; the session goes on.
    let mut bob = login(&broker, "bob").await;
    let r = SessionFetch::new(id, 4, &[]).send(&mut bob).await;
    assert_eq!(
        (r.session_id, outcome(&r)),
        (
            id,
            vec![
                (s("audit"), 0, REFUSED, -1, vec![]),
                (s(TOPIC), 0, REFUSED, -1, vec![]),
                (s(TOPIC), 1, REFUSED, -1, vec![]),
            ]
        )
    );

    // READ granted again: the session's partition answers from the position the client
    // gave it (offset 1), without naming it again; the others' marks are sent again.
    grant(&mut admin, AUDIT_READ).await;
    let r = SessionFetch::new(id, 5, &[]).send(&mut alice).await;
    assert_eq!(
        (r.session_id, outcome(&r)),
        (
            id,
            vec![
                (s("audit"), 0, 0, 2, keys("y", 1)),
                (s(TOPIC), 0, 0, 2, vec![]),
                (s(TOPIC), 1, 0, 1, vec![]),
            ]
        )
    );

    // By topic id (v13): a refused topic is found by its name; the session opens and its
    // incremental fetch refuses the revoked topic too.
    revoke(&mut admin, AUDIT_READ).await;
    let by_id = [("audit", audit_id, &[(0, 0)][..])];
    let r = SessionFetch {
        version: 13,
        topic_id: sessions_id,
        more: &by_id,
        ..SessionFetch::new(0, 0, &[(0, 2)])
    }
    .send(&mut alice)
    .await;
    let v13 = r.session_id;
    assert!(v13 > 0);
    let mut want = vec![
        (sessions_id.to_string(), 0, 0, 2, vec![]),
        (audit_id.to_string(), 0, REFUSED, -1, vec![]),
    ];
    want.sort();
    assert_eq!(outcome(&r), want);
    grant(&mut admin, AUDIT_READ).await;
    let r = SessionFetch {
        version: 13,
        topic_id: sessions_id,
        ..SessionFetch::new(v13, 1, &[])
    }
    .send(&mut alice)
    .await;
    assert_eq!(
        (r.session_id, outcome(&r)),
        (
            v13,
            vec![(
                audit_id.to_string(),
                0,
                0,
                2,
                [keys("x", 1), keys("y", 1)].concat()
            )]
        )
    );
    broker.shutdown().await;
}
