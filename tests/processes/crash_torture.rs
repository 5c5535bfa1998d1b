//! Crash torture: start the `rafka` binary, run two acks=all librdkafka producers (one
//! idempotent, one not) and a consumer group that commits, SIGKILL the broker after a
//! random delay, restart it on the same data directory, and repeat. Segments are tiny and
//! memory-engine snapshots frequent, so kills land mid-append, mid-fsync, mid-roll and
//! mid-snapshot. Checked, Jepsen-style:
//!
//! - after every restart, each partition's committed group offset is at least the last one
//!   a commit was acknowledged for, and never lower than what the previous restart showed;
//! - at the end, each partition's offsets are contiguous from 0; every record read (by the
//!   group or the final read) was sent by a producer; every acknowledged record sits at its
//!   acknowledged partition and offset; the idempotent producer's records appear at most
//!   once.
//!
//! `RAFKA_TORTURE_CYCLES` (default 10) sets the cycles per engine; `RAFKA_TORTURE_SEED`
//! replays a run (the seed is printed); `RAFKA_TORTURE_BIN` runs another `rafka` binary.

use crate::support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use support::{client_config, consume};

const TOPIC: &str = "torture";
const PARTITIONS: i32 = 4;
const GROUP: &str = "torture-group";
/// Pads payloads so the 16 KiB segments roll every few dozen records.
const PAD: usize = 150;

#[test]
fn crash_torture_log() {
    torture("log");
}

#[test]
fn crash_torture_memory() {
    torture("memory");
}

#[cfg(feature = "rocksdb")]
#[test]
fn crash_torture_rocksdb() {
    torture("rocksdb");
}

/// splitmix64: small, seedable, good enough to place kills.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

pub(crate) fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {v:?}"))
    })
}

/// The broker config: tiny segments, snapshots as often as the memory engine allows, fsync
/// on every acks=all answer, group timers short enough for a member per cycle, and
/// `__consumer_offsets` in 4 KiB segments with a busy cleaner, so kills land while it
/// compacts the committed offsets.
fn write_config(dir: &Path, data: &Path, storage_type: &str) -> std::path::PathBuf {
    let path = dir.join("torture.yaml");
    let yaml = format!(
        "broker:\n  listen: 127.0.0.1:0\n  num_partitions: {PARTITIONS}\n  \
         group_min_session_timeout_ms: 500\n  group_initial_rebalance_delay_ms: 0\n  \
         offsets_topic_num_partitions: 2\n  offsets_topic_segment_bytes: 4096\n  \
         log_cleaner_backoff_ms: 50\n\
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

/// `rafka serve --config cfg`, waiting for its startup line.
/// Its log (info level) is appended to `log`, for the recovery counts in the summary.
pub(crate) fn start(cfg: &Path, log: &Path) -> (Child, String) {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    // A long run may pin a copy of the binary, so rebuilding meanwhile does not change it.
    let bin = std::env::var("RAFKA_TORTURE_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_rafka").to_string());
    let mut child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(cfg)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn rafka");
    let (_, addr) = support::startup_line(&mut child);
    (child, addr)
}

/// Acknowledged records: payload → (partition, offset).
type Acked = Arc<Mutex<Vec<(String, i32, i64)>>>;

struct AckContext {
    acked: Acked,
}

impl ClientContext for AckContext {}

impl ProducerContext for AckContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Ok(m) = result {
            let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
            self.acked
                .lock()
                .unwrap()
                .push((v, m.partition(), m.offset()));
        }
    }
}

/// A producer thread sending `{tag}:{cycle}:{seq}:` + padding round-robin over the
/// partitions until `stop`, about 1,000 records a second (so 200 cycles stay readable);
/// every payload is recorded in `sent` before it is handed over.
fn run_producer(
    addr: &str,
    tag: &'static str,
    cycle: u64,
    idempotent: bool,
    stop: Arc<AtomicBool>,
    sent: Arc<Mutex<HashSet<String>>>,
    acked: Acked,
) -> JoinHandle<()> {
    let mut cfg = client_config(addr);
    cfg.set("acks", "all")
        .set(
            "enable.idempotence",
            if idempotent { "true" } else { "false" },
        )
        .set("linger.ms", "2")
        .set("message.timeout.ms", "3000")
        .set("queue.buffering.max.messages", "2000");
    let producer: ThreadedProducer<AckContext> = cfg
        .create_with_context(AckContext { acked })
        .expect("producer");
    std::thread::spawn(move || {
        let pad = "x".repeat(PAD);
        let mut seq = 0u64;
        while !stop.load(Ordering::SeqCst) {
            let v = format!("{tag}:{cycle}:{seq}:{pad}");
            sent.lock().unwrap().insert(v.clone());
            let partition = (seq % PARTITIONS as u64) as i32;
            let rec = BaseRecord::<(), _>::to(TOPIC)
                .payload(&v)
                .partition(partition);
            match producer.send(rec) {
                Ok(()) => {
                    seq += 1;
                    if seq.is_multiple_of(10) {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
        drop(producer); // purges what the dead broker never answered
    })
}

/// What the group member saw and which commits were acknowledged.
#[derive(Default)]
struct GroupLog {
    read: Vec<(i32, i64, String)>,
    /// Highest acknowledged commit per partition.
    committed: BTreeMap<i32, i64>,
    commits: u64,
}

/// A group member that commits its position synchronously every 25 records.
fn run_member(addr: &str, stop: Arc<AtomicBool>, log: Arc<Mutex<GroupLog>>) -> JoinHandle<()> {
    let consumer: BaseConsumer = client_config(addr)
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "1000")
        .set("heartbeat.interval.ms", "200")
        .set("max.poll.interval.ms", "2000")
        .set("fetch.wait.max.ms", "50")
        .create()
        .expect("consumer");
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    std::thread::spawn(move || {
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        let mut since_commit = 0;
        while !stop.load(Ordering::SeqCst) {
            // Errors (the broker is gone) are what this loop lives through: poll again.
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
                let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
                log.lock()
                    .unwrap()
                    .read
                    .push((m.partition(), m.offset(), v));
                next.insert(m.partition(), m.offset() + 1);
                since_commit += 1;
            }
            if since_commit >= 25 {
                since_commit = 0;
                let mut tpl = TopicPartitionList::new();
                for (p, o) in &next {
                    tpl.add_partition_offset(TOPIC, *p, Offset::Offset(*o))
                        .unwrap();
                }
                if consumer.commit(&tpl, CommitMode::Sync).is_ok() {
                    let mut l = log.lock().unwrap();
                    l.commits += 1;
                    for (p, o) in &next {
                        let c = l.committed.entry(*p).or_insert(*o);
                        *c = (*c).max(*o);
                    }
                }
            }
        }
        // Closing talks to a dead broker: let it time out on this thread, not the test's.
        drop(consumer);
    })
}

/// The group's committed offsets (OffsetFetch), retried while the broker warms up.
fn committed_offsets(addr: &str) -> BTreeMap<i32, i64> {
    let consumer: BaseConsumer = client_config(addr)
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .create()
        .expect("offset reader");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(TOPIC, p);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match consumer.committed_offsets(tpl.clone(), Duration::from_secs(5)) {
            Ok(got) => {
                return got
                    .elements()
                    .iter()
                    .filter_map(|e| match e.offset() {
                        Offset::Offset(o) => Some((e.partition(), o)),
                        _ => None,
                    })
                    .collect();
            }
            Err(e) if Instant::now() < deadline => {
                eprintln!("OffsetFetch: {e}; retrying");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("OffsetFetch kept failing: {e}"),
        }
    }
}

fn create_topic(addr: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(support::create_topic(addr, TOPIC, PARTITIONS, &[]));
}

/// Parses `{tag}:{cycle}:{seq}:…`, the producer tag and cycle and sequence.
fn parse(v: &str) -> Option<(&str, u64, u64)> {
    let mut it = v.split(':');
    let tag = it.next()?;
    let cycle = it.next()?.parse().ok()?;
    let seq = it.next()?.parse().ok()?;
    Some((tag, cycle, seq))
}

fn torture(storage_type: &str) {
    let cycles = env_u64("RAFKA_TORTURE_CYCLES").unwrap_or(10);
    let seed = env_u64("RAFKA_TORTURE_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    eprintln!("crash torture {storage_type}: {cycles} cycles, RAFKA_TORTURE_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = write_config(dir.path(), &data, storage_type);
    let broker_log = dir.path().join("broker.log");

    let sent: Arc<Mutex<HashSet<String>>> = Arc::default();
    let acked: Acked = Arc::default();
    let group = Arc::new(Mutex::new(GroupLog::default()));
    // Lowest committed offset each partition may show after a restart.
    let mut floor: BTreeMap<i32, i64> = BTreeMap::new();
    let mut violations: Vec<String> = Vec::new();
    let mut lingering = Vec::new();

    let (mut child, mut addr) = start(&cfg, &broker_log);
    create_topic(&addr);
    for cycle in 0..cycles {
        let stop = Arc::new(AtomicBool::new(false));
        let producers = [("I", true), ("N", false)].map(|(tag, idempotent)| {
            run_producer(
                &addr,
                tag,
                cycle,
                idempotent,
                stop.clone(),
                sent.clone(),
                acked.clone(),
            )
        });
        lingering.push(run_member(&addr, stop.clone(), group.clone()));
        std::thread::sleep(Duration::from_millis(rng.between(200, 1500)));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        stop.store(true, Ordering::SeqCst);
        for t in producers {
            t.join().expect("producer thread");
        }
        lingering.retain(|h| !h.is_finished());

        (child, addr) = start(&cfg, &broker_log);
        let committed = committed_offsets(&addr);
        for (p, o) in &group.lock().unwrap().committed {
            let f = floor.entry(*p).or_insert(*o);
            *f = (*f).max(*o);
        }
        for (p, f) in &floor {
            let now = committed.get(p).copied().unwrap_or(-1);
            if now < *f {
                violations.push(format!(
                    "cycle {cycle}: partition {p} committed offset {now} < {f} acknowledged \
                     or seen before"
                ));
            }
        }
        for (p, o) in &committed {
            let f = floor.entry(*p).or_insert(*o);
            *f = (*f).max(*o);
        }
        if cycle % 10 == 9 || cycle + 1 == cycles {
            eprintln!(
                "{storage_type}: {} cycles; {} sent, {} acked, {} group commits, committed {:?}",
                cycle + 1,
                sent.lock().unwrap().len(),
                acked.lock().unwrap().len(),
                group.lock().unwrap().commits,
                committed
            );
        }
    }

    // The final read: everything up to each partition's log end.
    let ends = {
        let c: BaseConsumer = client_config(&addr).create().expect("watermarks");
        (0..PARTITIONS)
            .map(|p| {
                let (lo, hi) = c
                    .fetch_watermarks(TOPIC, p, Duration::from_secs(10))
                    .expect("watermarks");
                assert_eq!(lo, 0, "partition {p} log start");
                hi
            })
            .collect::<Vec<_>>()
    };
    let total: i64 = ends.iter().sum();
    let all = consume(
        &addr,
        TOPIC,
        PARTITIONS,
        total as usize,
        Duration::from_secs(120),
    );
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    if all.len() as i64 != total {
        violations.push(format!(
            "final read got {} records, the log ends say {total}",
            all.len()
        ));
    }

    let sent = sent.lock().unwrap();
    let mut next = vec![0i64; PARTITIONS as usize];
    let mut at: HashMap<(i32, i64), String> = HashMap::new();
    let mut idempotent_seen: HashSet<&str> = HashSet::new();
    let mut duplicates_non_idempotent = 0u64;
    let mut non_idempotent_seen: HashSet<&str> = HashSet::new();
    for r in &all {
        let p = r.partition as usize;
        if r.offset != next[p] {
            violations.push(format!(
                "partition {p}: offset {} follows {} (not contiguous)",
                r.offset,
                next[p] - 1
            ));
        }
        next[p] = r.offset + 1;
        let v = std::str::from_utf8(r.value.as_deref().unwrap_or_default()).unwrap_or("");
        if !sent.contains(v) {
            violations.push(format!(
                "{p}:{}: a record never produced: {:?}",
                r.offset,
                &v[..v.len().min(40)]
            ));
            continue;
        }
        match parse(v) {
            Some(("I", _, _)) => {
                if !idempotent_seen.insert(v) {
                    violations.push(format!(
                        "{p}:{}: idempotent duplicate {}",
                        r.offset,
                        &v[..20]
                    ));
                }
            }
            _ => {
                if !non_idempotent_seen.insert(v) {
                    duplicates_non_idempotent += 1;
                }
            }
        }
        at.insert((r.partition, r.offset), v.to_string());
    }
    let acked = acked.lock().unwrap();
    for (v, p, o) in acked.iter() {
        if at.get(&(*p, *o)) != Some(v) {
            violations.push(format!(
                "acknowledged record {} missing from {p}:{o}",
                &v[..v.len().min(24)]
            ));
        }
    }
    let group = group.lock().unwrap();
    for (p, o, v) in &group.read {
        if !sent.contains(v) {
            violations.push(format!("the group read a record never produced at {p}:{o}"));
        }
    }
    eprintln!(
        "crash torture {storage_type}: seed {seed}, {cycles} SIGKILL/restart cycles, {} records \
         sent, {} acknowledged, {} on disk, {} read by the group, {} group commits, {} \
         non-idempotent duplicates, {} violations",
        sent.len(),
        acked.len(),
        all.len(),
        group.read.len(),
        group.commits,
        duplicates_non_idempotent,
        violations.len()
    );
    let log_text = std::fs::read_to_string(&broker_log).unwrap_or_default();
    let count = |needle: &str| log_text.matches(needle).count();
    eprintln!(
        "crash torture {storage_type}: recoveries seen in the broker log: {} log tails cut, {} \
         WAL tails cut, {} unfinished snapshots removed, {} unreadable snapshots skipped, {} \
         compactions, {} interrupted compaction swaps completed, {} uncommitted compaction \
         files removed",
        count("cutting the log tail"),
        count("cutting the WAL"),
        count("removing an unfinished snapshot"),
        count("skipping an unreadable snapshot"),
        count(" compacted"),
        count("completed an interrupted compaction swap"),
        count("removed an uncommitted compaction file"),
    );
    if storage_type == "log" {
        let segments = std::fs::read_dir(&data)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(TOPIC))
            .map(|e| {
                std::fs::read_dir(e.path())
                    .unwrap()
                    .flatten()
                    .filter(|f| f.file_name().to_string_lossy().ends_with(".log"))
                    .count()
            })
            .sum::<usize>();
        eprintln!("crash torture log: {segments} segments in {TOPIC}");
    }
    // Consumers that were still closing against a dead broker get a moment to finish.
    let deadline = Instant::now() + Duration::from_secs(10);
    while lingering.iter().any(|h| !h.is_finished()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        violations.is_empty(),
        "{} violations (seed {seed}):\n{}",
        violations.len(),
        violations[..violations.len().min(30)].join("\n")
    );
    assert!(acked.len() > cycles as usize, "the producers made progress");
}
