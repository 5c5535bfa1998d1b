//! An exactly-once pipeline under SIGKILL: start the `rafka` binary, write N input records
//! to `eos-in`, then run a librdkafka consume-transform-produce loop (a transactional
//! producer and a read_committed consumer of group `eos-group`, offsets sent to each
//! transaction, a commit every few records, some transactions aborted on purpose) while
//! the broker is SIGKILLed and restarted on the same port and data directory at random
//! moments. After any error the pipeline starts over: a new producer with the same
//! `transactional.id` (which fences the old one) and a consumer resuming from the group's
//! committed offsets. Checked at the end, Jepsen-style, from a read_committed read of
//! `eos-out` and a read_uncommitted one:
//!
//! - every input record appears transformed exactly once (no loss, no duplicate), in input
//!   order per partition;
//! - the group's committed offset of each input partition equals its end;
//! - no record of a transaction the pipeline aborted is visible;
//! - no torn transaction: each transaction's records are all visible or none.
//!
//! `RAFKA_EOS_CYCLES` (default 10) sets the kill cycles per engine, `RAFKA_EOS_SEED`
//! replays a run (the seed is printed), `RAFKA_EOS_RECORDS` the input size per partition.

use crate::crash_torture::{env_u64, start, Rng};
use crate::support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use support::client_config;

const IN: &str = "eos-in";
const OUT: &str = "eos-out";
const PARTITIONS: i32 = 2;
const GROUP: &str = "eos-group";
const TXN_ID: &str = "eos-pipeline";
const T: Duration = Duration::from_secs(5);

#[test]
fn eos_pipeline_log() {
    pipeline("log");
}

#[test]
fn eos_pipeline_memory() {
    pipeline("memory");
}

#[cfg(feature = "rocksdb")]
#[test]
fn eos_pipeline_rocksdb() {
    pipeline("rocksdb");
}

/// The broker's config. The retention tick (which also writes each partition's producer
/// snapshot) runs every 300 ms, so most SIGKILLs land between snapshots and a restart
/// opens from one, replaying only the batches after it.
fn write_config(dir: &Path, data: &Path, storage_type: &str, listen: &str) -> std::path::PathBuf {
    let path = dir.join("eos.yaml");
    let yaml = format!(
        "broker:\n  listen: {listen}\n  num_partitions: {PARTITIONS}\n  \
         log_retention_check_interval_ms: 300\n  \
         group_initial_rebalance_delay_ms: 0\n  offsets_topic_num_partitions: 2\n  \
         transaction_state_log_num_partitions: 2\n  \
         transaction_abort_timed_out_transaction_cleanup_interval_ms: 500\n\
         storage:\n  storage_type: {storage_type}\n  path: {}\n  \
         log_segment_bytes: 16384\n  snapshot_interval_bytes: 32768\n  \
         snapshot_interval_ms: 20\n\
         durability:\n  fsync: on_ack_all\n\
         admin:\n  listen: \"\"\n",
        data.display()
    );
    std::fs::write(&path, yaml).unwrap();
    path
}

/// What the pipeline did: the transactions it committed (acknowledged), aborted on purpose,
/// and left with an unknown outcome, by transaction tag, with their sizes.
#[derive(Default)]
struct Ledger {
    committed: HashMap<String, usize>,
    aborted: HashSet<String>,
    unknown: HashSet<String>,
    instances: u64,
    errors: u64,
}

fn new_producer(addr: &str) -> Option<BaseProducer> {
    let p: BaseProducer = client_config(addr)
        .set("transactional.id", TXN_ID)
        .set("transaction.timeout.ms", "10000")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "5000")
        .create()
        .ok()?;
    match p.init_transactions(Duration::from_secs(10)) {
        Ok(()) => Some(p),
        Err(e) => {
            eprintln!("eos: init_transactions: {e}");
            None
        }
    }
}

/// A consumer assigned to every input partition at the group's committed offsets (the
/// beginning when none), read_committed, committed offsets fetched as stable.
fn new_consumer(addr: &str) -> Option<(BaseConsumer, Vec<i64>)> {
    let c: BaseConsumer = client_config(addr)
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "50")
        .create()
        .ok()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(IN, p);
    }
    let committed = match c.committed_offsets(tpl, T) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("eos: committed offsets: {e}");
            return None;
        }
    };
    let mut positions = vec![0i64; PARTITIONS as usize];
    let mut assign = TopicPartitionList::new();
    for e in committed.elements() {
        let o = match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        };
        positions[e.partition() as usize] = o;
        assign
            .add_partition_offset(IN, e.partition(), Offset::Offset(o))
            .ok()?;
    }
    c.assign(&assign).ok()?;
    Some((c, positions))
}

/// One pipeline instance: transactions until an error (returns false) or until every
/// input partition is committed to its end (returns true).
fn run_instance(
    addr: &str,
    ends: &[i64],
    instance: u64,
    rng: &mut Rng,
    stop: &AtomicBool,
    ledger: &Mutex<Ledger>,
) -> bool {
    let Some(producer) = new_producer(addr) else {
        return false;
    };
    let Some((consumer, mut committed)) = new_consumer(addr) else {
        return false;
    };
    let Some(group) = consumer.group_metadata() else {
        return false;
    };
    eprintln!("eos: instance {instance} resumes at {committed:?}");
    let mut seq = 0u64;
    let mut idle_since = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        if committed.iter().zip(ends).all(|(c, e)| c >= e) {
            return true;
        }
        let want = rng.between(1, 6) as usize;
        let mut batch = Vec::new();
        let deadline = Instant::now() + Duration::from_millis(500);
        while batch.len() < want && Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => batch.push((
                    m.partition(),
                    m.offset(),
                    String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                )),
                Some(Err(e)) => {
                    eprintln!("eos: consume: {e}");
                    return false;
                }
                None => {}
            }
        }
        if batch.is_empty() {
            if idle_since.elapsed() > Duration::from_secs(5) {
                eprintln!(
                    "eos: instance {instance} idle at {committed:?}, position {:?}",
                    consumer.position().map(|t| t
                        .elements()
                        .iter()
                        .map(|e| (e.partition(), e.offset()))
                        .collect::<Vec<_>>())
                );
                idle_since = Instant::now();
            }
            continue;
        }
        idle_since = Instant::now();
        seq += 1;
        let tag = format!("{instance}.{seq}");
        let abort = rng.between(0, 9) == 0;
        if let Err(e) = producer.begin_transaction() {
            eprintln!("eos: begin: {e}");
            return false;
        }
        for (p, _, v) in &batch {
            let value = format!("T:{v}:{tag}:{}", batch.len());
            if let Err((e, _)) = producer.send(
                BaseRecord::to(OUT)
                    .partition(*p)
                    .key(v.as_str())
                    .payload(&value),
            ) {
                eprintln!("eos: send: {e}");
                ledger.lock().unwrap().unknown.insert(tag);
                return false;
            }
        }
        let mut next = committed.clone();
        for (p, o, _) in &batch {
            next[*p as usize] = next[*p as usize].max(o + 1);
        }
        let mut offsets = TopicPartitionList::new();
        for (p, o) in next.iter().enumerate() {
            offsets
                .add_partition_offset(IN, p as i32, Offset::Offset(*o))
                .unwrap();
        }
        if let Err(e) = producer.send_offsets_to_transaction(&offsets, &group, T) {
            eprintln!("eos: send_offsets: {e}");
            ledger.lock().unwrap().unknown.insert(tag);
            return false;
        }
        if abort {
            // A BaseProducer's delivery reports must be served before abort_transaction.
            let _ = producer.flush(T);
            match producer.abort_transaction(T) {
                Ok(()) => {
                    ledger.lock().unwrap().aborted.insert(tag);
                    // Rewind to the committed positions: the aborted records come again.
                    return false;
                }
                Err(e) => {
                    eprintln!("eos: abort: {e}");
                    ledger.lock().unwrap().unknown.insert(tag);
                    return false;
                }
            }
        }
        match producer.commit_transaction(T) {
            Ok(()) => {
                ledger.lock().unwrap().committed.insert(tag, batch.len());
                committed = next;
            }
            Err(e) => {
                eprintln!("eos: commit: {e}");
                ledger.lock().unwrap().unknown.insert(tag);
                return false;
            }
        }
    }
    false
}

/// Every record of `topic` at `isolation`, read until nothing new comes for two seconds:
/// (partition, offset, value).
fn read_all(addr: &str, topic: &str, isolation: &str) -> Vec<(i32, i64, String)> {
    let c: BaseConsumer = client_config(addr)
        .set("group.id", "eos-checker")
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("checker");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let mut last = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(120);
    while last.elapsed() < Duration::from_secs(2) && Instant::now() < deadline {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                out.push((
                    m.partition(),
                    m.offset(),
                    String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                ));
                last = Instant::now();
            }
            Some(Err(e)) => eprintln!("eos checker: {e}"),
            None => {}
        }
    }
    out
}

fn produce_input(addr: &str, per_partition: i64) {
    let p: BaseProducer = client_config(addr)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("input producer");
    for i in 0..per_partition {
        for part in 0..PARTITIONS {
            let v = format!("{part}:{i}");
            p.send(BaseRecord::to(IN).partition(part).key(&v).payload(&v))
                .map_err(|(e, _)| e)
                .expect("enqueued");
        }
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(30)).expect("input flushed");
}

fn pipeline(storage_type: &str) {
    let cycles = env_u64("RAFKA_EOS_CYCLES").unwrap_or(10);
    let per_partition = env_u64("RAFKA_EOS_RECORDS").unwrap_or(150 + 30 * cycles) as i64;
    let seed = env_u64("RAFKA_EOS_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    eprintln!(
        "eos pipeline {storage_type}: {cycles} cycles, {per_partition} records per partition, \
         RAFKA_EOS_SEED={seed}"
    );
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker_log = dir.path().join("broker.log");
    // The broker's log, printed if the test fails (a restart that does not come up).
    struct ShowLog(std::path::PathBuf);
    impl Drop for ShowLog {
        fn drop(&mut self) {
            if std::thread::panicking() {
                let text = std::fs::read_to_string(&self.0).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                eprintln!(
                    "broker log tail:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
    }
    let _show = ShowLog(broker_log.clone());
    let cfg = write_config(dir.path(), &data, storage_type, "127.0.0.1:0");
    let (mut child, addr) = start(&cfg, &broker_log);
    // Restarts listen on the same port, so the pipeline's clients reconnect by themselves.
    let cfg = write_config(dir.path(), &data, storage_type, &addr);
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(support::create_topic(&addr, IN, PARTITIONS, &[]));
        rt.block_on(support::create_topic(&addr, OUT, PARTITIONS, &[]));
    }
    produce_input(&addr, per_partition);
    let ends = vec![per_partition; PARTITIONS as usize];

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let worker = {
        let (addr, ends, ledger, stop, done) = (
            addr.clone(),
            ends.clone(),
            ledger.clone(),
            stop.clone(),
            done.clone(),
        );
        let mut rng = Rng(seed ^ 0x5eed);
        std::thread::spawn(move || {
            let mut instance = 0;
            while !stop.load(Ordering::SeqCst) {
                instance += 1;
                ledger.lock().unwrap().instances = instance;
                if run_instance(&addr, &ends, instance, &mut rng, &stop, &ledger) {
                    done.store(true, Ordering::SeqCst);
                    return;
                }
                ledger.lock().unwrap().errors += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    for _ in 0..cycles {
        if done.load(Ordering::SeqCst) {
            break;
        }
        std::thread::sleep(Duration::from_millis(rng.between(300, 2500)));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        std::thread::sleep(Duration::from_millis(rng.between(0, 500)));
        (child, _) = start(&cfg, &broker_log);
    }
    let kills = cycles;
    // No more kills: the pipeline finishes.
    let deadline = Instant::now() + Duration::from_secs(180);
    while !done.load(Ordering::SeqCst) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::SeqCst);
    worker.join().expect("pipeline thread");
    let finished = done.load(Ordering::SeqCst);

    let visible = read_all(&addr, OUT, "read_committed");
    let everything = read_all(&addr, OUT, "read_uncommitted");
    let group_committed = {
        let c: BaseConsumer = client_config(&addr)
            .set("group.id", GROUP)
            .create()
            .expect("offset reader");
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition(IN, p);
        }
        c.committed_offsets(tpl, Duration::from_secs(10))
            .expect("committed offsets")
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => o,
                _ => -1,
            })
            .collect::<Vec<_>>()
    };
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");

    // The checker. Values: T:{in partition}:{in seq}:{txn tag}:{txn size}.
    let parse = |v: &str| -> Option<(i32, i64, String, usize)> {
        let mut it = v.split(':');
        (it.next()? == "T").then_some(())?;
        Some((
            it.next()?.parse().ok()?,
            it.next()?.parse().ok()?,
            it.next()?.to_string(),
            it.next()?.parse().ok()?,
        ))
    };
    let ledger = ledger.lock().unwrap();
    let mut violations = Vec::new();
    if !finished {
        violations.push("the pipeline did not finish".to_string());
    }
    if group_committed != ends {
        violations.push(format!(
            "committed offsets {group_committed:?}, input ends {ends:?}"
        ));
    }
    let mut seqs: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    let mut visible_per_txn: HashMap<String, usize> = HashMap::new();
    let mut sizes: HashMap<String, usize> = HashMap::new();
    for (p, o, v) in &visible {
        let Some((in_p, in_seq, tag, size)) = parse(v) else {
            violations.push(format!("{p}:{o}: unparsable {v:?}"));
            continue;
        };
        if in_p != *p {
            violations.push(format!("{p}:{o}: input partition {in_p} on output {p}"));
        }
        seqs.entry(in_p).or_default().push(in_seq);
        *visible_per_txn.entry(tag.clone()).or_default() += 1;
        sizes.insert(tag, size);
    }
    for p in 0..PARTITIONS {
        let got = seqs.remove(&p).unwrap_or_default();
        let want: Vec<i64> = (0..per_partition).collect();
        if got != want {
            let distinct: HashSet<_> = got.iter().collect();
            violations.push(format!(
                "partition {p}: {} records visible ({} distinct), want {per_partition} in order; \
                 first difference at {:?}",
                got.len(),
                distinct.len(),
                got.iter().zip(&want).position(|(a, b)| a != b)
            ));
        }
    }
    for (tag, n) in &visible_per_txn {
        if ledger.aborted.contains(tag) {
            violations.push(format!(
                "transaction {tag} was aborted, {n} records visible"
            ));
        }
        if sizes[tag] != *n {
            violations.push(format!(
                "transaction {tag} torn: {n} of {} records visible",
                sizes[tag]
            ));
        }
    }
    for (tag, n) in &ledger.committed {
        if visible_per_txn.get(tag) != Some(n) {
            violations.push(format!(
                "transaction {tag} acknowledged as committed, {:?} of {n} records visible",
                visible_per_txn.get(tag)
            ));
        }
    }
    let attempted: HashSet<&str> = everything
        .iter()
        .filter_map(|(_, _, v)| v.split(':').nth(3))
        .collect();
    let invisible = attempted
        .iter()
        .filter(|t| !visible_per_txn.contains_key(**t))
        .count();
    eprintln!(
        "eos pipeline {storage_type}: seed {seed}, {kills} SIGKILL/restart cycles, {} pipeline \
         instances, {} committed transactions acknowledged, {} aborted on purpose, {} with an \
         unknown outcome; {} output records written, {} visible; {} transactions visible, {} \
         not; committed offsets {group_committed:?}; {} violations",
        ledger.instances,
        ledger.committed.len(),
        ledger.aborted.len(),
        ledger.unknown.len(),
        everything.len(),
        visible.len(),
        visible_per_txn.len(),
        invisible,
        violations.len()
    );
    assert!(
        violations.is_empty(),
        "{} violations (seed {seed}):\n{}",
        violations.len(),
        violations[..violations.len().min(30)].join("\n")
    );
}
