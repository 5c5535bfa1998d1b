//! Transactions end to end: librdkafka's transactional producer and read_committed
//! consumer against an in-process Rafka (interleaved commits and aborts, the LSO holding a
//! reader back, zombie fencing, the coordinator's timeout abort, offsets sent to a
//! transaction, a restart), and raw refusals with Kafka's error codes.

use crate::{common, support};

use std::path::Path;
use std::time::{Duration, Instant};

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, ApiKey, DescribeTransactionsRequest, EndTxnRequest,
    FindCoordinatorRequest, InitProducerIdRequest, ProducerId, RequestKind, ResponseKind,
    TransactionalId, WriteTxnMarkersRequest,
};
use kafka_protocol::protocol::StrBytes;
use rafka_broker::{Broker, Config};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use common::{topic_name, KafkaConn};
use support::{client_config, create_topic, start_broker_with};

const T: Duration = Duration::from_secs(20);

/// The timer runs often so a timed-out transaction is aborted within the test.
fn fast(c: &mut Config) {
    c.broker
        .transaction_abort_timed_out_transaction_cleanup_interval_ms = 100;
    c.broker.group_initial_rebalance_delay_ms = 0;
    c.broker.transaction_state_log_num_partitions = 5;
}

pub(crate) async fn broker(dir: &Path) -> Broker {
    start_broker_with(dir, fast).await
}

async fn broker_on(dir: &Path, engine: &str) -> Broker {
    let engine = engine.to_string();
    start_broker_with(dir, move |c| {
        fast(c);
        c.storage.storage_type = engine;
    })
    .await
}

fn txn_producer(bootstrap: &str, id: &str, extra: &[(&str, &str)]) -> BaseProducer {
    let mut c = client_config(bootstrap);
    c.set("transactional.id", id).set("linger.ms", "5");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    let p: BaseProducer = c.create().expect("producer");
    p.init_transactions(T).expect("init_transactions");
    p
}

fn send(p: &BaseProducer, topic: &str, partition: i32, key: &str, value: &str) {
    p.send(
        BaseRecord::to(topic)
            .partition(partition)
            .key(key)
            .payload(value),
    )
    .map_err(|(e, _)| e)
    .expect("enqueued");
}

/// (partition, offset, key) of what a consumer at `isolation` reads from `topic`, until
/// nothing new arrives for `quiet`.
pub(crate) fn read_all(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    isolation: &str,
    quiet: Duration,
) -> Vec<(i32, i64, String)> {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", "txn-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let mut last = Instant::now();
    let deadline = Instant::now() + T;
    while last.elapsed() < quiet && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.expect("consumer error");
            out.push((
                m.partition(),
                m.offset(),
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
            ));
            last = Instant::now();
        }
    }
    out.sort();
    out
}

pub(crate) async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

/// Transactions 0..6 over 3 partitions, 3 records each per partition; even ones commit,
/// odd ones abort. Each transaction takes 4 offsets per partition (3 records + marker).
pub(crate) fn interleave(addr: &str, topic: &str, id: &str) {
    let p = txn_producer(addr, id, &[]);
    for t in 0..6 {
        p.begin_transaction().expect("begin");
        for part in 0..3 {
            for i in 0..3 {
                send(&p, topic, part, &format!("t{t}-p{part}-{i}"), "v");
            }
        }
        if t % 2 == 0 {
            p.commit_transaction(T).expect("commit");
        } else {
            p.flush(T).expect("flush");
            p.abort_transaction(T).expect("abort");
        }
    }
}

pub(crate) fn expected(only_committed: bool) -> Vec<(i32, i64, String)> {
    let mut want = Vec::new();
    for t in 0..6i64 {
        if only_committed && t % 2 == 1 {
            continue;
        }
        for part in 0..3 {
            for i in 0..3 {
                want.push((part, t * 4 + i, format!("t{t}-p{part}-{i}")));
            }
        }
    }
    want.sort();
    want
}

async fn committed_and_aborted_on(engine: &str) {
    let dir = tempfile::tempdir().unwrap();
    let b = broker_on(dir.path(), engine).await;
    let addr = b.bootstrap_address();
    create_topic(&addr, "tx-a", 3, &[]).await;
    let a = addr.clone();
    blocking(move || interleave(&a, "tx-a", "tx-a-producer")).await;
    let a = addr.clone();
    let committed =
        blocking(move || read_all(&a, "tx-a", 3, "read_committed", Duration::from_secs(2))).await;
    assert_eq!(committed, expected(true), "read_committed on {engine}");
    let a = addr.clone();
    let all =
        blocking(move || read_all(&a, "tx-a", 3, "read_uncommitted", Duration::from_secs(2))).await;
    assert_eq!(all, expected(false), "read_uncommitted on {engine}");
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_committed_sees_exactly_the_committed_transactions() {
    committed_and_aborted_on("log").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_committed_on_the_memory_engine() {
    committed_and_aborted_on("memory").await;
}

#[cfg(feature = "rocksdb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_committed_on_the_rocksdb_engine() {
    committed_and_aborted_on("rocksdb").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lso_holds_a_reader_at_an_open_transaction_until_commit() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path()).await;
    let addr = b.bootstrap_address();
    create_topic(&addr, "tx-b", 1, &[]).await;
    let a = addr.clone();
    let p = blocking(move || {
        let p = txn_producer(&a, "tx-b-producer", &[]);
        p.begin_transaction().unwrap();
        send(&p, "tx-b", 0, "open-0", "v");
        send(&p, "tx-b", 0, "open-1", "v");
        p.flush(T).unwrap();
        // A plain record after the open transaction: behind the LSO too.
        let plain: BaseProducer = client_config(&a).create().unwrap();
        send(&plain, "tx-b", 0, "plain", "v");
        plain.flush(T).unwrap();
        p
    })
    .await;
    let a = addr.clone();
    let held =
        blocking(move || read_all(&a, "tx-b", 1, "read_committed", Duration::from_secs(2))).await;
    assert_eq!(held, vec![], "nothing past the LSO");
    let a = addr.clone();
    let dirty =
        blocking(move || read_all(&a, "tx-b", 1, "read_uncommitted", Duration::from_secs(2))).await;
    assert_eq!(dirty.len(), 3);
    blocking(move || p.commit_transaction(T).unwrap()).await;
    let a = addr.clone();
    let released =
        blocking(move || read_all(&a, "tx-b", 1, "read_committed", Duration::from_secs(2))).await;
    assert_eq!(
        released,
        vec![
            (0, 0, "open-0".to_string()),
            (0, 1, "open-1".to_string()),
            (0, 2, "plain".to_string()),
        ]
    );
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_is_fenced_and_its_writes_never_become_visible() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path()).await;
    let addr = b.bootstrap_address();
    create_topic(&addr, "tx-c", 1, &[]).await;
    let a = addr.clone();
    let (old_commit, later_send) = blocking(move || {
        let old = txn_producer(&a, "tx-c-id", &[]);
        old.begin_transaction().unwrap();
        send(&old, "tx-c", 0, "old-1", "v");
        old.flush(T).unwrap();
        // A new instance with the same transactional id fences the old one and aborts its
        // open transaction.
        let new = txn_producer(&a, "tx-c-id", &[]);
        new.begin_transaction().unwrap();
        send(&new, "tx-c", 0, "new-1", "v");
        new.commit_transaction(T).unwrap();
        // The zombie keeps going: its writes and its commit fail.
        let sent = old.send(
            BaseRecord::to("tx-c")
                .partition(0)
                .key("old-2")
                .payload("v"),
        );
        let flushed = old.flush(Duration::from_secs(5));
        let commit = old.commit_transaction(Duration::from_secs(5));
        (
            commit.is_err(),
            sent.is_err() || flushed.is_err() || commit.is_err(),
        )
    })
    .await;
    assert!(old_commit, "the fenced producer could commit");
    assert!(later_send);
    let a = addr.clone();
    let seen =
        blocking(move || read_all(&a, "tx-c", 1, "read_committed", Duration::from_secs(2))).await;
    let keys: Vec<_> = seen.iter().map(|s| s.2.as_str()).collect();
    assert_eq!(keys, ["new-1"]);
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_past_its_timeout_is_aborted_by_the_coordinator() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path()).await;
    let addr = b.bootstrap_address();
    create_topic(&addr, "tx-d", 1, &[]).await;
    let a = addr.clone();
    blocking(move || {
        let p = txn_producer(
            &a,
            "tx-d-hanging",
            &[
                ("transaction.timeout.ms", "1000"),
                ("message.timeout.ms", "1000"),
            ],
        );
        p.begin_transaction().unwrap();
        send(&p, "tx-d", 0, "hang", "v");
        p.flush(T).unwrap();
        // Left open: the producer stays alive but never ends the transaction.
        std::thread::sleep(Duration::from_secs(3));
        let q = txn_producer(&a, "tx-d-after", &[]);
        q.begin_transaction().unwrap();
        send(&q, "tx-d", 0, "after", "v");
        q.commit_transaction(T).unwrap();
        drop(p);
    })
    .await;
    let a = addr.clone();
    let seen =
        blocking(move || read_all(&a, "tx-d", 1, "read_committed", Duration::from_secs(2))).await;
    let keys: Vec<_> = seen.iter().map(|s| s.2.as_str()).collect();
    assert_eq!(keys, ["after"], "the timed-out transaction is aborted");
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_sent_to_a_transaction_are_visible_after_commit_only() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path()).await;
    let addr = b.bootstrap_address();
    create_topic(&addr, "tx-in", 1, &[]).await;
    create_topic(&addr, "tx-out", 1, &[]).await;
    let a = addr.clone();
    blocking(move || {
        let plain: BaseProducer = client_config(&a).create().unwrap();
        for i in 0..5 {
            send(&plain, "tx-in", 0, &format!("in-{i}"), "v");
        }
        plain.flush(T).unwrap();
        let consumer: BaseConsumer = client_config(&a)
            .set("group.id", "tx-eos")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .create()
            .unwrap();
        consumer.subscribe(&["tx-in"]).unwrap();
        let mut got = Vec::new();
        let deadline = Instant::now() + T;
        while got.len() < 5 && Instant::now() < deadline {
            if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                let m = m.unwrap();
                got.push(String::from_utf8_lossy(m.key().unwrap()).into_owned());
            }
        }
        assert_eq!(got.len(), 5);
        let p = txn_producer(&a, "tx-eos-id", &[]);
        let offsets = |o: i64| {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset("tx-in", 0, Offset::Offset(o))
                .unwrap();
            tpl
        };
        let committed = |c: &BaseConsumer| {
            let tpl = c.committed(T).unwrap();
            tpl.find_partition("tx-in", 0).unwrap().offset()
        };
        // Committed: the offsets and the transformed records together.
        p.begin_transaction().unwrap();
        for k in &got {
            send(&p, "tx-out", 0, &format!("{k}-out"), "v");
        }
        p.send_offsets_to_transaction(&offsets(5), &consumer.group_metadata().unwrap(), T)
            .unwrap();
        p.commit_transaction(T).unwrap();
        assert_eq!(committed(&consumer), Offset::Offset(5));
        // Aborted: neither.
        p.begin_transaction().unwrap();
        send(&p, "tx-out", 0, "aborted-out", "v");
        p.send_offsets_to_transaction(&offsets(2), &consumer.group_metadata().unwrap(), T)
            .unwrap();
        p.flush(T).unwrap();
        p.abort_transaction(T).unwrap();
        assert_eq!(committed(&consumer), Offset::Offset(5));
    })
    .await;
    let a = addr.clone();
    let out =
        blocking(move || read_all(&a, "tx-out", 1, "read_committed", Duration::from_secs(2))).await;
    let keys: Vec<_> = out.iter().map(|s| s.2.clone()).collect();
    assert_eq!(
        keys,
        (0..5).map(|i| format!("in-{i}-out")).collect::<Vec<_>>()
    );
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_transactions_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path()).await;
    let addr = b.bootstrap_address();
    create_topic(&addr, "tx-a", 3, &[]).await;
    let a = addr.clone();
    blocking(move || interleave(&a, "tx-a", "tx-restart")).await;
    b.shutdown().await.unwrap();
    let b = broker(dir.path()).await;
    let addr = b.bootstrap_address();
    let a = addr.clone();
    let committed =
        blocking(move || read_all(&a, "tx-a", 3, "read_committed", Duration::from_secs(2))).await;
    assert_eq!(committed, expected(true), "after the restart");
    // The coordinator knows the id again: a new instance continues with a later epoch and
    // its transaction commits.
    let a = addr.clone();
    blocking(move || {
        let p = txn_producer(&a, "tx-restart", &[]);
        p.begin_transaction().unwrap();
        send(&p, "tx-a", 0, "after-restart", "v");
        p.commit_transaction(T).unwrap();
    })
    .await;
    let a = addr.clone();
    let committed =
        blocking(move || read_all(&a, "tx-a", 3, "read_committed", Duration::from_secs(2))).await;
    assert_eq!(committed.len(), expected(true).len() + 1);
    assert!(committed.contains(&(0, 24, "after-restart".to_string())));
    b.shutdown().await.unwrap();
}

/// Transactions `ts` of 3 records each on partition 0 of `topic`, all committed but, with
/// `abort_odd`, the odd ones aborted.
fn transactions(p: &BaseProducer, topic: &str, ts: std::ops::Range<usize>, abort_odd: bool) {
    for t in ts {
        p.begin_transaction().expect("begin");
        for i in 0..3 {
            send(p, topic, 0, &format!("t{t}-{i}"), "v");
        }
        if abort_odd && t % 2 == 1 {
            p.flush(T).expect("flush");
            p.abort_transaction(T).expect("abort");
        } else {
            p.commit_transaction(T).expect("commit");
        }
    }
}

/// The open-time replay of partition 0 of `topic`.
fn open_scan(b: &Broker, topic: &str) -> rafka_broker::OpenScan {
    b.shared().cluster.topic(topic).expect("topic").partitions[0].open_scan()
}

/// Aborted transactions and an open one survive restarts: each restart opens from the
/// producer snapshot its shutdown wrote (replaying nothing), and a raw read_committed
/// Fetch still answers the aborted transactions and the LSO, and a read_committed consumer
/// exactly the committed records.
async fn aborted_and_open_transactions_survive_restarts_on(engine: &str) {
    let dir = tempfile::tempdir().unwrap();
    let b = broker_on(dir.path(), engine).await;
    let addr = b.bootstrap_address();
    create_topic(&addr, "tx-r", 1, &[]).await;
    let a = addr.clone();
    // t0..t3 at offsets 4t..4t+2, markers at 4t+3; t1 and t3 aborted.
    blocking(move || transactions(&txn_producer(&a, "tx-r-p", &[]), "tx-r", 0..4, true)).await;
    b.shutdown().await.unwrap();

    let b = broker_on(dir.path(), engine).await;
    let scan = open_scan(&b, "tx-r");
    assert_eq!(
        (scan.from.0, scan.n_batches, scan.from_snapshot),
        (16, 0, true),
        "{engine}"
    );
    let a = b.bootstrap_address();
    // t4 at 16..18 aborted (marker 19), then t5 at 20, 21 left open.
    let p = blocking(move || {
        let p = txn_producer(&a, "tx-r-p", &[]);
        p.begin_transaction().expect("begin");
        for i in 0..3 {
            send(&p, "tx-r", 0, &format!("t4-{i}"), "v");
        }
        p.flush(T).expect("flush");
        p.abort_transaction(T).expect("abort");
        p.begin_transaction().expect("begin");
        send(&p, "tx-r", 0, "t5-0", "v");
        send(&p, "tx-r", 0, "t5-1", "v");
        p.flush(T).expect("flush");
        p
    })
    .await;
    b.shutdown().await.unwrap();

    let b = broker_on(dir.path(), engine).await;
    let scan = open_scan(&b, "tx-r");
    assert_eq!(
        (scan.from.0, scan.n_batches, scan.from_snapshot),
        (22, 0, true),
        "{engine}"
    );
    let mut conn = KafkaConn::connect(&b.bootstrap_address()).await;
    let req = common::fetch_request("tx-r", Default::default(), 0, common::FetchArgs::at(0))
        .with_isolation_level(1);
    let ResponseKind::Fetch(r) = conn.send(ApiKey::Fetch, 12, RequestKind::Fetch(req)).await else {
        panic!("not a Fetch response")
    };
    let part = &r.responses[0].partitions[0];
    assert_eq!(part.error_code, 0);
    assert_eq!(part.high_watermark, 22, "{engine}");
    assert_eq!(
        part.last_stable_offset, 20,
        "{engine}: the open transaction holds the LSO"
    );
    let aborted = part.aborted_transactions.clone().unwrap_or_default();
    let firsts: Vec<i64> = aborted.iter().map(|t| t.first_offset).collect();
    assert_eq!(firsts, [4, 12, 16], "{engine}");
    assert!(aborted
        .iter()
        .all(|t| t.producer_id.0 == aborted[0].producer_id.0 && t.producer_id.0 >= 0));
    let a = b.bootstrap_address();
    let committed =
        blocking(move || read_all(&a, "tx-r", 1, "read_committed", Duration::from_secs(2))).await;
    let want: Vec<(i32, i64, String)> = [0, 2]
        .iter()
        .flat_map(|t| (0..3).map(move |i| (0, t * 4 + i, format!("t{t}-{i}"))))
        .collect();
    assert_eq!(committed, want, "{engine}");
    drop(p);
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_and_open_transactions_survive_restarts() {
    aborted_and_open_transactions_survive_restarts_on("log").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_and_open_transactions_survive_restarts_on_memory() {
    aborted_and_open_transactions_survive_restarts_on("memory").await;
}

#[cfg(feature = "rocksdb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_and_open_transactions_survive_restarts_on_rocksdb() {
    aborted_and_open_transactions_survive_restarts_on("rocksdb").await;
}

fn tid(s: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(s.to_string()))
}

async fn init_pid(conn: &mut KafkaConn, id: &str) -> (i64, i16) {
    let ResponseKind::InitProducerId(r) = conn
        .send(
            ApiKey::InitProducerId,
            4,
            RequestKind::InitProducerId(
                InitProducerIdRequest::default()
                    .with_transactional_id(Some(tid(id)))
                    .with_transaction_timeout_ms(60_000)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
            ),
        )
        .await
    else {
        panic!("not InitProducerId")
    };
    assert_eq!(r.error_code, 0);
    (r.producer_id.0, r.producer_epoch)
}

async fn add_partitions(
    conn: &mut KafkaConn,
    id: &str,
    (pid, epoch): (i64, i16),
    topics: &[(&str, i32)],
) -> Vec<(String, i32, i16)> {
    let req = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(tid(id))
        .with_v3_and_below_producer_id(ProducerId(pid))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(
            topics
                .iter()
                .map(|(t, p)| {
                    AddPartitionsToTxnTopic::default()
                        .with_name(topic_name(t))
                        .with_partitions(vec![*p])
                })
                .collect(),
        );
    let ResponseKind::AddPartitionsToTxn(r) = conn
        .send(
            ApiKey::AddPartitionsToTxn,
            3,
            RequestKind::AddPartitionsToTxn(req),
        )
        .await
    else {
        panic!("not AddPartitionsToTxn")
    };
    let mut out: Vec<_> = r
        .results_by_topic_v3_and_below
        .iter()
        .flat_map(|t| {
            t.results_by_partition.iter().map(|p| {
                (
                    t.name.to_string(),
                    p.partition_index,
                    p.partition_error_code,
                )
            })
        })
        .collect();
    out.sort();
    out
}

async fn end_txn(conn: &mut KafkaConn, id: &str, (pid, epoch): (i64, i16), version: i16) -> i16 {
    let ResponseKind::EndTxn(r) = conn
        .send(
            ApiKey::EndTxn,
            version,
            RequestKind::EndTxn(
                EndTxnRequest::default()
                    .with_transactional_id(tid(id))
                    .with_producer_id(ProducerId(pid))
                    .with_producer_epoch(epoch)
                    .with_committed(true),
            ),
        )
        .await
    else {
        panic!("not EndTxn")
    };
    r.error_code
}

async fn describe(conn: &mut KafkaConn, id: &str) -> (String, usize) {
    let ResponseKind::DescribeTransactions(r) = conn
        .send(
            ApiKey::DescribeTransactions,
            0,
            RequestKind::DescribeTransactions(
                DescribeTransactionsRequest::default().with_transactional_ids(vec![tid(id)]),
            ),
        )
        .await
    else {
        panic!("not DescribeTransactions")
    };
    let s = &r.transaction_states[0];
    assert_eq!(s.error_code, 0);
    (s.transaction_state.to_string(), s.topics.len())
}

/// Produce v9 of `records` to tx-f-0 with the request's transactional id; the error code.
async fn produce_txn(conn: &mut KafkaConn, id: &str, records: bytes::Bytes) -> i16 {
    produce_txn_at(conn, id, records, 9).await
}

/// `produce_txn` at Produce `version`.
async fn produce_txn_at(
    conn: &mut KafkaConn,
    id: &str,
    records: bytes::Bytes,
    version: i16,
) -> i16 {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    let req = kafka_protocol::messages::ProduceRequest::default()
        .with_transactional_id(Some(tid(id)))
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name("tx-f"))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    let ResponseKind::Produce(r) = conn
        .send(ApiKey::Produce, version, RequestKind::Produce(req))
        .await
    else {
        panic!("not Produce")
    };
    r.responses[0].partition_responses[0].error_code
}

fn txn_batch(pid: i64, epoch: i16) -> bytes::Bytes {
    rafka_core::batch::BatchBuilder::new(rafka_core::Offset(0))
        .producer(pid, epoch, 0)
        .transactional()
        .kv(b"k", b"v", rafka_core::Timestamp(1_000))
        .build()
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_kafkas_codes_and_change_nothing() {
    let b = common::start_broker(fast).await;
    let mut conn = KafkaConn::connect(&b.addr()).await;
    assert_eq!(common::create_topic(&mut conn, "tx-f", 1, &[]).await, 0);
    // FindCoordinator for a transactional id: this broker (v3 and batched v4).
    for version in [3, 4] {
        let req = if version >= 4 {
            FindCoordinatorRequest::default()
                .with_key_type(1)
                .with_coordinator_keys(vec![StrBytes::from_static_str("raw")])
        } else {
            FindCoordinatorRequest::default()
                .with_key_type(1)
                .with_key(StrBytes::from_static_str("raw"))
        };
        let ResponseKind::FindCoordinator(r) = conn
            .send(
                ApiKey::FindCoordinator,
                version,
                RequestKind::FindCoordinator(req),
            )
            .await
        else {
            panic!("not FindCoordinator")
        };
        if version >= 4 {
            assert_eq!(r.coordinators[0].error_code, 0);
            assert_eq!(r.coordinators[0].node_id.0, 0);
        } else {
            assert_eq!((r.error_code, r.node_id.0), (0, 0));
        }
    }
    let ids = init_pid(&mut conn, "raw").await;
    // EndTxn with no transaction open.
    assert_eq!(
        end_txn(&mut conn, "raw", ids, 3).await,
        48,
        "INVALID_TXN_STATE"
    );
    // AddPartitions naming an unknown topic: that one UNKNOWN_TOPIC_OR_PARTITION, the
    // others OPERATION_NOT_ATTEMPTED, and nothing added.
    let r = add_partitions(&mut conn, "raw", ids, &[("tx-f", 0), ("no-such-topic", 0)]).await;
    assert_eq!(
        r,
        vec![
            ("no-such-topic".to_string(), 0, 3),
            ("tx-f".to_string(), 0, 55)
        ]
    );
    assert_eq!(describe(&mut conn, "raw").await, ("Empty".to_string(), 0));
    // A transactional batch for a partition outside the transaction: INVALID_TXN_STATE,
    // nothing appended.
    let r = produce_txn(&mut conn, "raw", txn_batch(ids.0, ids.1)).await;
    assert_eq!(r, 48);
    // Without the request's transactional id: TRANSACTIONAL_ID_AUTHORIZATION_FAILED.
    let r = common::produce(&mut conn, "tx-f", 0, txn_batch(ids.0, ids.1)).await;
    assert_eq!(r.error_code, 53);
    let o = common::list_offsets(&mut conn, "tx-f", 0, common::LATEST).await;
    assert_eq!(o.offset, 0);
    // WriteTxnMarkers from a client: CLUSTER_AUTHORIZATION_FAILED, nothing written.
    let req = WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
        .with_producer_id(ProducerId(ids.0))
        .with_producer_epoch(ids.1)
        .with_transaction_result(true)
        .with_coordinator_epoch(0)
        .with_topics(vec![WritableTxnMarkerTopic::default()
            .with_name(topic_name("tx-f"))
            .with_partition_indexes(vec![0])])]);
    let ResponseKind::WriteTxnMarkers(r) = conn
        .send(
            ApiKey::WriteTxnMarkers,
            1,
            RequestKind::WriteTxnMarkers(req),
        )
        .await
    else {
        panic!("not WriteTxnMarkers")
    };
    assert_eq!(r.markers[0].topics[0].partitions[0].error_code, 31);
    let o = common::list_offsets(&mut conn, "tx-f", 0, common::LATEST).await;
    assert_eq!(o.offset, 0);
    // A stale epoch: a second InitProducerId bumps it; the old one is fenced.
    let newer = init_pid(&mut conn, "raw").await;
    assert_eq!(newer, (ids.0, ids.1 + 1));
    let r = add_partitions(&mut conn, "raw", ids, &[("tx-f", 0)]).await;
    assert_eq!(r, vec![("tx-f".to_string(), 0, 90)], "PRODUCER_FENCED");
    assert_eq!(
        end_txn(&mut conn, "raw", ids, 1).await,
        47,
        "INVALID_PRODUCER_EPOCH"
    );
    assert_eq!(describe(&mut conn, "raw").await, ("Empty".to_string(), 0));
    // The current epoch works: added, produced, committed.
    let r = add_partitions(&mut conn, "raw", newer, &[("tx-f", 0)]).await;
    assert_eq!(r, vec![("tx-f".to_string(), 0, 0)]);
    let r = produce_txn(&mut conn, "raw", txn_batch(newer.0, newer.1)).await;
    assert_eq!(r, 0);
    assert_eq!(end_txn(&mut conn, "raw", newer, 3).await, 0);
    b.shutdown().await;
}

/// `(transactional data batches, abort markers, commit markers)` in `__consumer_offsets`-0.
fn offsets_topic_txn_batches(b: &Broker) -> (usize, usize, usize) {
    let p = b
        .shared()
        .cluster
        .topic("__consumer_offsets")
        .unwrap()
        .partitions[0]
        .clone();
    let (mut data, mut aborts, mut commits) = (0, 0, 0);
    let mut at = p.log_start_offset();
    while at < p.log_end_offset() {
        let r = p
            .read(at, 1 << 20, rafka_broker::IsolationLevel::ReadUncommitted)
            .unwrap();
        let batches = rafka_core::RecordBatch::split_all(r.records).unwrap();
        let Some(last) = batches.last() else { break };
        at = last.next_offset();
        for b in &batches {
            match b.control_type() {
                Some(rafka_core::ControlType::Abort) => aborts += 1,
                Some(rafka_core::ControlType::Commit) => commits += 1,
                None if b.is_transactional() => data += 1,
                None => {}
            }
        }
    }
    (data, aborts, commits)
}

/// The committed offset of the consumer's group on tx-in-0.
fn committed_on_tx_in(c: &BaseConsumer) -> Offset {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition("tx-in", 0);
    let got = c.committed_offsets(tpl, T).unwrap();
    got.find_partition("tx-in", 0).unwrap().offset()
}

/// Plain commits of group `filler` (offsets 1..=n over tx-in-0), as a non-member.
async fn filler_commits(addr: &str, n: i64) {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    let mut conn = KafkaConn::connect(addr).await;
    for i in 1..=n {
        let ResponseKind::OffsetCommit(r) = conn
            .send(
                ApiKey::OffsetCommit,
                8,
                RequestKind::OffsetCommit(
                    kafka_protocol::messages::OffsetCommitRequest::default()
                        .with_group_id(kafka_protocol::messages::GroupId(
                            StrBytes::from_static_str("filler"),
                        ))
                        .with_generation_id_or_member_epoch(-1)
                        .with_topics(vec![OffsetCommitRequestTopic::default()
                            .with_name(topic_name("tx-in"))
                            .with_partitions(vec![
                                OffsetCommitRequestPartition::default().with_committed_offset(i)
                            ])]),
                ),
            )
            .await
        else {
            panic!("not an OffsetCommit response")
        };
        assert_eq!(r.topics[0].partitions[0].error_code, 0);
    }
}

/// Offsets sent to transactions while `__consumer_offsets` and `__transaction_state` are
/// compacted: the aborted transaction's offset record goes and so do committed ones a later
/// commit replaced (their markers stay within `delete.retention.ms`), an open one is never
/// touched while plain commits around it are cleaned; after commit and a restart the group
/// has the committed offset, and the transactional id goes on from the compacted state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_in_transactions_survive_compaction() {
    for engine in ["log", "memory"] {
        let dir = tempfile::tempdir().unwrap();
        let start = || {
            start_broker_with(dir.path(), move |c| {
                fast(c);
                c.storage.storage_type = engine.to_string();
                c.broker.offsets_topic_num_partitions = 1;
                c.broker.offsets_topic_segment_bytes = 16 * 1024;
                c.broker.transaction_state_log_num_partitions = 1;
                c.broker.transaction_state_log_segment_bytes = 4096;
                c.broker.log_cleaner_backoff_ms = 100;
            })
        };
        let b = start().await;
        let addr = b.bootstrap_address();
        create_topic(&addr, "tx-in", 1, &[]).await;
        let a = addr.clone();
        let (p, consumer) = blocking(move || {
            // read_uncommitted: OffsetFetch without require_stable, so the offset is read
            // while a transaction holds a pending one.
            let consumer: BaseConsumer = client_config(&a)
                .set("group.id", "tx-cg")
                .set("isolation.level", "read_uncommitted")
                .create()
                .unwrap();
            let p = txn_producer(&a, "tx-compact-id", &[]);
            let offsets = |o: i64| {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset("tx-in", 0, Offset::Offset(o))
                    .unwrap();
                tpl
            };
            let meta = consumer.group_metadata().unwrap();
            p.begin_transaction().unwrap();
            p.send_offsets_to_transaction(&offsets(99), &meta, T)
                .unwrap();
            p.abort_transaction(T).unwrap();
            // Forty committed transactions: `__transaction_state` rolls segments to clean.
            for o in 1_000..1_040 {
                p.begin_transaction().unwrap();
                p.send_offsets_to_transaction(&offsets(o), &meta, T)
                    .unwrap();
                p.commit_transaction(T).unwrap();
            }
            (p, consumer)
        })
        .await;
        filler_commits(&addr, 2_000).await;
        // Open a third transaction, then more plain commits behind it.
        let (p, consumer) = blocking(move || {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset("tx-in", 0, Offset::Offset(77))
                .unwrap();
            p.begin_transaction().unwrap();
            p.send_offsets_to_transaction(&tpl, &consumer.group_metadata().unwrap(), T)
                .unwrap();
            (p, consumer)
        })
        .await;
        filler_commits(&addr, 1_000).await;
        // The open transaction holds the last stable offset: nothing from its first record
        // on is cleaned.
        // The cleaner removes the aborted offset record and the 39 committed ones that a
        // later commit of the same key replaced; the markers stay (`delete.retention.ms`).
        support::wait_for("the transactional offsets to be cleaned", T, || {
            offsets_topic_txn_batches(&b).0 == 2
        })
        .await;
        let (data, aborts, commits) = offsets_topic_txn_batches(&b);
        assert_eq!((data, aborts, commits), (2, 1, 40), "{engine}");
        // `__transaction_state`: one transactional id, its latest state kept.
        let txn_state = b
            .shared()
            .cluster
            .topic("__transaction_state")
            .unwrap()
            .partitions[0]
            .clone();
        assert!(txn_state.log_end_offset().0 > 120, "{engine}");
        support::wait_for("__transaction_state to be cleaned", T, || {
            txn_state.size_bytes() < 6 * 1024
        })
        .await;
        let part = b
            .shared()
            .cluster
            .topic("__consumer_offsets")
            .unwrap()
            .partitions[0]
            .clone();
        assert!(
            part.size_bytes() < 3_000 * 60,
            "{engine}: {} bytes: the plain commits before the open transaction were cleaned",
            part.size_bytes()
        );
        let committed = blocking(move || {
            let before = committed_on_tx_in(&consumer);
            p.commit_transaction(T).unwrap();
            (before, committed_on_tx_in(&consumer))
        })
        .await;
        assert_eq!(
            committed,
            (Offset::Offset(1_039), Offset::Offset(77)),
            "{engine}"
        );
        b.shutdown().await.unwrap();

        let b = start().await;
        let a = b.bootstrap_address();
        let after_restart = blocking(move || {
            let consumer: BaseConsumer =
                client_config(&a).set("group.id", "tx-cg").create().unwrap();
            let before = committed_on_tx_in(&consumer);
            // The coordinator replayed the compacted `__transaction_state`: the id goes on
            // with a new instance, whose transaction commits.
            let p = txn_producer(&a, "tx-compact-id", &[]);
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset("tx-in", 0, Offset::Offset(88))
                .unwrap();
            p.begin_transaction().unwrap();
            p.send_offsets_to_transaction(&tpl, &consumer.group_metadata().unwrap(), T)
                .unwrap();
            p.commit_transaction(T).unwrap();
            (before, committed_on_tx_in(&consumer))
        })
        .await;
        assert_eq!(
            after_restart,
            (Offset::Offset(77), Offset::Offset(88)),
            "{engine}: after a restart"
        );
        b.shutdown().await.unwrap();
    }
}

/// AddPartitionsToTxn right after EndTxn, while the coordinator still writes the previous
/// transaction's markers and completing record, waits for them instead of answering
/// CONCURRENT_TRANSACTIONS: every round's add is accepted at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_transaction_starts_without_concurrent_transactions() {
    let b = common::start_broker(fast).await;
    let mut conn = KafkaConn::connect(&b.addr()).await;
    assert_eq!(common::create_topic(&mut conn, "tx-f", 2, &[]).await, 0);
    let ids = init_pid(&mut conn, "tx-next").await;
    for round in 0..5 {
        let added = add_partitions(&mut conn, "tx-next", ids, &[("tx-f", 0), ("tx-f", 1)]).await;
        assert_eq!(
            added,
            vec![("tx-f".to_string(), 0, 0), ("tx-f".to_string(), 1, 0)],
            "round {round}"
        );
        assert_eq!(describe(&mut conn, "tx-next").await, ("Ongoing".into(), 1));
        assert_eq!(
            end_txn(&mut conn, "tx-next", ids, 3).await,
            0,
            "round {round}"
        );
    }
    b.shutdown().await;
}

/// (error code, LSO, offsets of the records and markers) of a read_committed Fetch of
/// tx-f-0 from 0.
async fn read_committed(conn: &mut KafkaConn) -> (i16, i64, Vec<i64>) {
    let req = common::fetch_request("tx-f", Default::default(), 0, common::FetchArgs::at(0))
        .with_isolation_level(1);
    let ResponseKind::Fetch(r) = conn.send(ApiKey::Fetch, 12, RequestKind::Fetch(req)).await else {
        panic!("not a Fetch response")
    };
    let part = &r.responses[0].partitions[0];
    let (offsets, _) = common::decode_records(part.records.clone());
    (part.error_code, part.last_stable_offset, offsets)
}

/// Transaction version 2 on the wire, as Kafka 4 clients drive it (no client here does):
/// a transactional Produce v12 adds its partition implicitly, without AddPartitionsToTxn;
/// read_committed does not see the record until EndTxn v5 commits; EndTxn v5 answers with
/// the producer's next epoch, which the next transaction produces with (its sequence
/// starting again at 0), while the old epoch is refused and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_version_2_adds_partitions_implicitly_and_bumps_the_epoch_at_each_end() {
    let b = common::start_broker(fast).await;
    let mut conn = KafkaConn::connect(&b.addr()).await;
    assert_eq!(common::create_topic(&mut conn, "tx-f", 1, &[]).await, 0);
    let (pid, mut epoch) = init_pid(&mut conn, "tv2").await;
    for round in 0..3i64 {
        // Each round: one record, then the commit marker.
        let at = 2 * round;
        let code = produce_txn_at(&mut conn, "tv2", txn_batch(pid, epoch), 12).await;
        assert_eq!(code, 0, "round {round}: implicit add");
        assert_eq!(describe(&mut conn, "tv2").await, ("Ongoing".into(), 1));
        let (code, lso, seen) = read_committed(&mut conn).await;
        assert_eq!(
            (code, lso),
            (0, at),
            "round {round}: the open transaction holds the LSO"
        );
        // Everything below the LSO: the earlier records and their commit markers.
        assert_eq!(seen, (0..at).collect::<Vec<_>>(), "round {round}");

        let ResponseKind::EndTxn(r) = conn
            .send(
                ApiKey::EndTxn,
                5,
                RequestKind::EndTxn(
                    EndTxnRequest::default()
                        .with_transactional_id(tid("tv2"))
                        .with_producer_id(ProducerId(pid))
                        .with_producer_epoch(epoch)
                        .with_committed(true),
                ),
            )
            .await
        else {
            panic!("not EndTxn")
        };
        assert_eq!(r.error_code, 0, "round {round}");
        assert_eq!(
            (r.producer_id.0, r.producer_epoch),
            (pid, epoch + 1),
            "round {round}: EndTxn v5 bumps the epoch"
        );
        epoch = r.producer_epoch;
        // The markers land a moment after the answer.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, lso, seen) = read_committed(&mut conn).await;
            if lso == at + 2 {
                assert_eq!(seen, (0..at + 2).collect::<Vec<_>>(), "round {round}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: LSO stuck at {lso}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // The epoch before the last bump is stale: refused, nothing written.
    let end = common::log_end_offset(&mut conn, "tx-f", 0).await;
    let code = produce_txn_at(&mut conn, "tv2", txn_batch(pid, epoch - 1), 12).await;
    assert_eq!(
        code, 47,
        "a stale epoch: INVALID_PRODUCER_EPOCH, as Kafka's producer state answers"
    );
    assert_eq!(common::log_end_offset(&mut conn, "tx-f", 0).await, end);
    b.shutdown().await;
}
