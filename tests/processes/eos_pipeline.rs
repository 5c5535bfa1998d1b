//! An exactly-once pipeline under SIGKILL: start the `rafka` binary, write N input records
//! to `eos-in`, then run a librdkafka consume-transform-produce loop (a transactional
//! producer and a read_committed consumer of group `eos-group`, offsets sent to each
//! transaction, a commit every few records, some transactions aborted on purpose) while
//! the broker is SIGKILLed and restarted on the same port and data directory at random
//! moments. Each pipeline instance is a process of its own (this test binary, started
//! again on the ignored test `pipeline_instance`), and it is SIGKILLed at random moments
//! too, sometimes together with the broker. After any error or kill the pipeline starts
//! over: a new process with a new producer with the same `transactional.id` (which fences
//! the old one and aborts what it left open) and a consumer resuming from the group's
//! committed offsets. Each instance appends what it does to a ledger file before and
//! after each transaction, so a transaction whose instance died in between has an unknown
//! outcome. Checked at the end, Jepsen-style, from a read_committed read of `eos-out` and a
//! read_uncommitted one:
//!
//! - every input record appears transformed exactly once (no loss, no duplicate), in input
//!   order per partition;
//! - the group's committed offset of each input partition equals its end;
//! - no record of a transaction the pipeline aborted is visible;
//! - no torn transaction: each transaction's records are all visible or none.
//!
//! `RAFKA_EOS_CYCLES` (default 10) sets the kill cycles per engine (each kills the broker,
//! the pipeline or both), `RAFKA_EOS_SEED`
//! replays a run (the seed is printed), `RAFKA_EOS_RECORDS` the input size per partition.

use crate::crash_torture::{env_u64, start, Rng};
use crate::support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// What the pipeline did, read back from the ledger file its instances append to: the
/// transactions committed (acknowledged), aborted on purpose, and begun without a known
/// outcome (the instance failed or was killed in between), by transaction tag, with sizes.
#[derive(Default)]
struct Ledger {
    committed: HashMap<String, usize>,
    aborted: HashSet<String>,
    unknown: HashSet<String>,
}

impl Ledger {
    fn read(path: &Path) -> Ledger {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut ledger = Ledger::default();
        let mut begun = HashSet::new();
        // A killed instance may leave a torn last line: it names no outcome, so the
        // transaction stays unknown.
        for line in text.lines() {
            let mut it = line.split(' ');
            match (it.next(), it.next(), it.next()) {
                (Some("begin"), Some(tag), None) => {
                    begun.insert(tag.to_string());
                }
                (Some("abort"), Some(tag), None) => {
                    ledger.aborted.insert(tag.to_string());
                }
                (Some("commit"), Some(tag), Some(n)) => {
                    if let Ok(n) = n.parse() {
                        ledger.committed.insert(tag.to_string(), n);
                    }
                }
                _ => {}
            }
        }
        ledger.unknown = begun
            .into_iter()
            .filter(|t| !ledger.committed.contains_key(t) && !ledger.aborted.contains(t))
            .collect();
        ledger
    }
}

/// An instance's side of the ledger: one line per step, written before the next step.
struct Journal(std::fs::File);

impl Journal {
    fn open(path: &Path) -> Journal {
        Journal(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("ledger"),
        )
    }

    fn line(&mut self, line: &str) {
        // One write per line; the page cache keeps it when the process is killed.
        self.0
            .write_all(format!("{line}\n").as_bytes())
            .expect("ledger write");
    }
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
    journal: &mut Journal,
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
    loop {
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
        journal.line(&format!("begin {tag}"));
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
            return false;
        }
        if abort {
            // A BaseProducer's delivery reports must be served before abort_transaction.
            let _ = producer.flush(T);
            match producer.abort_transaction(T) {
                Ok(()) => {
                    journal.line(&format!("abort {tag}"));
                    // Rewind to the committed positions: the aborted records come again.
                    return false;
                }
                Err(e) => {
                    eprintln!("eos: abort: {e}");
                    return false;
                }
            }
        }
        match producer.commit_transaction(T) {
            Ok(()) => {
                journal.line(&format!("commit {tag} {}", batch.len()));
                committed = next;
            }
            Err(e) => {
                eprintln!("eos: commit: {e}");
                return false;
            }
        }
    }
}

/// One pipeline instance as a process of its own: started by `pipeline` as this test
/// binary with this test selected and its parameters in the environment, exits 0 once every
/// input partition is committed to its end and 1 after an error. Without the environment
/// (a plain `--ignored` run) it has nothing to do.
#[test]
#[ignore = "a pipeline instance, started as a child process by the eos_pipeline tests"]
fn pipeline_instance() {
    let Ok(addr) = std::env::var("RAFKA_EOS_CHILD_ADDR") else {
        eprintln!("pipeline_instance runs only as a child of an eos_pipeline test");
        return;
    };
    let num = |name: &str| env_u64(name).unwrap_or_else(|| panic!("{name} not set"));
    let per_partition = num("RAFKA_EOS_CHILD_RECORDS") as i64;
    let instance = num("RAFKA_EOS_CHILD_INSTANCE");
    let mut rng = Rng(num("RAFKA_EOS_CHILD_SEED"));
    let ledger = PathBuf::from(std::env::var("RAFKA_EOS_CHILD_LEDGER").expect("ledger path"));
    let mut journal = Journal::open(&ledger);
    let ends = vec![per_partition; PARTITIONS as usize];
    let done = run_instance(&addr, &ends, instance, &mut rng, &mut journal);
    std::process::exit(if done { 0 } else { 1 });
}

/// What the test shares with the thread that runs pipeline instances: the running one (so
/// the killer can SIGKILL it), how many were started, and the stop and done flags.
#[derive(Default)]
struct Instances {
    current: Mutex<Option<Child>>,
    started: AtomicU64,
    stop: AtomicBool,
    done: AtomicBool,
    /// Instances killed for making no progress.
    stalled: AtomicU64,
}

/// How long an instance may go without a ledger line.
const STALL: Duration = Duration::from_secs(30);

/// Starts pipeline instances one after another until one finishes (`done`) or `stop`.
fn supervise(addr: &str, per_partition: i64, seed: u64, ledger: &Path, run: &Instances) {
    let Instances {
        current,
        started: instances,
        stop,
        done,
        ..
    } = run;
    let exe = std::env::current_exe().expect("test binary");
    while !stop.load(Ordering::SeqCst) {
        let instance = instances.fetch_add(1, Ordering::SeqCst) + 1;
        let child = Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "eos_pipeline::pipeline_instance",
                "--nocapture",
                "--test-threads=1",
                "-q",
            ])
            .env("RAFKA_EOS_CHILD_ADDR", addr)
            .env("RAFKA_EOS_CHILD_RECORDS", per_partition.to_string())
            .env("RAFKA_EOS_CHILD_INSTANCE", instance.to_string())
            .env(
                "RAFKA_EOS_CHILD_SEED",
                (seed ^ 0x5eed ^ instance.wrapping_mul(0x9E37_79B9)).to_string(),
            )
            .env("RAFKA_EOS_CHILD_LEDGER", ledger)
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn pipeline instance");
        *current.lock().unwrap() = Some(child);
        // An instance that writes nothing to the ledger for this long is stuck (its client
        // calls all have timeouts of a few seconds): its threads' stacks are printed, it is
        // killed, and the run counts it as a violation.
        let (mut ledger_len, mut changed) = (0u64, Instant::now());
        let status = loop {
            std::thread::sleep(Duration::from_millis(50));
            let mut slot = current.lock().unwrap();
            let child = slot.as_mut().expect("running instance");
            if stop.load(Ordering::SeqCst) {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            let len = std::fs::metadata(ledger).map_or(0, |m| m.len());
            if len != ledger_len {
                (ledger_len, changed) = (len, Instant::now());
            } else if changed.elapsed() > STALL {
                eprintln!("eos: instance {instance} made no progress for {STALL:?}; stacks:");
                let _ = Command::new("gdb")
                    .args(["-p", &child.id().to_string(), "-batch", "-ex"])
                    .arg("thread apply all bt 12")
                    .stdout(Stdio::inherit())
                    .stderr(Stdio::null())
                    .status();
                run.stalled.fetch_add(1, Ordering::SeqCst);
                let _ = child.kill();
                changed = Instant::now();
            }
            if let Some(status) = child.try_wait().expect("instance status") {
                slot.take();
                break status;
            }
        };
        if status.success() {
            done.store(true, Ordering::SeqCst);
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
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

    let ledger_path = dir.path().join("ledger");
    let run = Arc::new(Instances::default());
    let supervisor = {
        let (addr, ledger_path, run) = (addr.clone(), ledger_path.clone(), run.clone());
        std::thread::spawn(move || supervise(&addr, per_partition, seed, &ledger_path, &run))
    };

    // Each cycle kills the broker (half the time), the pipeline instance (three in ten) or
    // both at once (one in five).
    let (mut broker_kills, mut pipeline_kills) = (0u64, 0u64);
    for _ in 0..cycles {
        if run.done.load(Ordering::SeqCst) {
            break;
        }
        std::thread::sleep(Duration::from_millis(rng.between(300, 2500)));
        let victim = rng.between(0, 9);
        if victim >= 5 {
            if let Some(instance) = run.current.lock().unwrap().as_mut() {
                if instance.kill().is_ok() {
                    pipeline_kills += 1;
                }
            }
        }
        if victim <= 4 || victim >= 8 {
            child.kill().expect("SIGKILL");
            child.wait().expect("reap");
            broker_kills += 1;
            std::thread::sleep(Duration::from_millis(rng.between(0, 500)));
            (child, _) = start(&cfg, &broker_log);
        }
    }
    // No more kills: the pipeline finishes.
    let deadline = Instant::now() + Duration::from_secs(180);
    while !run.done.load(Ordering::SeqCst) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    run.stop.store(true, Ordering::SeqCst);
    supervisor.join().expect("pipeline supervisor");
    let finished = run.done.load(Ordering::SeqCst);

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
    let ledger = Ledger::read(&ledger_path);
    let mut violations = Vec::new();
    if !finished {
        violations.push("the pipeline did not finish".to_string());
    }
    let stalled = run.stalled.load(Ordering::SeqCst);
    if stalled > 0 {
        violations.push(format!(
            "{stalled} pipeline instances made no progress for {STALL:?} (stacks above)"
        ));
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
        "eos pipeline {storage_type}: seed {seed}, {broker_kills} broker and {pipeline_kills} \
         pipeline SIGKILLs, {} pipeline instances, {} committed transactions acknowledged, {} aborted on purpose, {} with an \
         unknown outcome; {} output records written, {} visible; {} transactions visible, {} \
         not; committed offsets {group_committed:?}; {} violations",
        run.started.load(Ordering::SeqCst),
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
