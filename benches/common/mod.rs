//! What the benchmarks share: librdkafka's producer driven the same way everywhere.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

/// Counts delivery reports: a callback per record and nothing else, as librdkafka's own
/// performance tool does (a future per record would cost the client more than the
/// broker spends).
#[derive(Default)]
struct Counting {
    delivered: AtomicUsize,
    failed: AtomicUsize,
}

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.delivered.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// Produces `records` records of `size` bytes to partition 0 of `topic` and waits for
/// every delivery report; panics if any record fails.
pub fn librdkafka_produce(
    addr: &str,
    topic: &str,
    records: usize,
    size: usize,
    acks: &str,
) -> Duration {
    produce(
        addr,
        &Workload {
            topic,
            records,
            size,
            acks,
            ..Workload::default()
        },
    )
}

/// A produce workload: by default unkeyed records, no idempotence, no transactions.
#[derive(Default)]
pub struct Workload<'a> {
    pub topic: &'a str,
    pub records: usize,
    pub size: usize,
    pub acks: &'a str,
    /// Keys `key-{i % keys}` when set (a compacted topic needs them).
    pub keys: Option<usize>,
    /// Further librdkafka settings (`enable.idempotence`, ...).
    pub config: &'a [(&'a str, &'a str)],
    /// A transactional id: records go in transactions committed every `commit_every`.
    pub transactional_id: Option<&'a str>,
    pub commit_every: Duration,
}

/// Runs `w` with librdkafka tuned for throughput and waits for every delivery report (and
/// the last commit); panics if any record fails.
pub fn produce(addr: &str, w: &Workload) -> Duration {
    let (topic, records, size) = (w.topic, w.records, w.size);
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", addr)
        .set("acks", w.acks)
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576");
    for (k, v) in w.config {
        cfg.set(*k, *v);
    }
    if let Some(id) = w.transactional_id {
        cfg.set("transactional.id", id);
    }
    let p: BaseProducer<Counting> = cfg.create_with_context(Counting::default()).unwrap();
    if w.transactional_id.is_some() {
        p.init_transactions(Duration::from_secs(30))
            .expect("init_transactions");
        p.begin_transaction().expect("begin");
    }
    let mut last_commit = Instant::now();
    let mut key = String::new();
    let payload = vec![b'x'; size];
    let threads_before = thread_cpu();
    let start = Instant::now();
    for i in 0..records {
        if w.transactional_id.is_some() && last_commit.elapsed() >= w.commit_every {
            p.commit_transaction(Duration::from_secs(60))
                .expect("commit");
            p.begin_transaction().expect("begin");
            last_commit = Instant::now();
        }
        if let Some(keys) = w.keys {
            use std::fmt::Write;
            key.clear();
            let _ = write!(key, "key-{}", i % keys.max(1));
        }
        loop {
            let record = BaseRecord::<str, _>::to(topic)
                .payload(&payload[..])
                .partition(0);
            let record = if w.keys.is_some() {
                record.key(key.as_str())
            } else {
                record
            };
            match p.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    p.poll(Duration::from_millis(1));
                }
                Err((e, _)) => panic!("produce {i}: {e}"),
            }
        }
        if i % 1024 == 0 {
            p.poll(Duration::ZERO); // serve delivery reports as they come
        }
    }
    if w.transactional_id.is_some() {
        p.commit_transaction(Duration::from_secs(120))
            .expect("last commit");
    }
    p.flush(Duration::from_secs(120)).unwrap();
    let ctx = p.context();
    let (delivered, failed) = (
        ctx.delivered.load(Ordering::Relaxed),
        ctx.failed.load(Ordering::Relaxed),
    );
    assert_eq!((delivered, failed), (records, 0), "every record delivered");
    let took = start.elapsed();
    // librdkafka does a broker's protocol work on one thread per broker connection; when
    // that thread is busy for the whole run, the client is what bounds the figure.
    if let Some((thread, cpu)) = busiest_thread(&threads_before) {
        eprintln!(
            "    client: busiest thread {thread} {cpu:.2} CPU-s in {:.2} s",
            took.as_secs_f64()
        );
    }
    took
}

/// CPU-seconds used so far by each thread of this process, by thread id.
fn thread_cpu() -> HashMap<String, (String, f64)> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return HashMap::new();
    };
    tasks
        .flatten()
        .filter_map(|t| {
            let name = std::fs::read_to_string(t.path().join("comm")).ok()?;
            let cpu = cpu_seconds_in(&t.path().join("stat"));
            Some((
                t.file_name().to_string_lossy().into_owned(),
                (name.trim().to_string(), cpu),
            ))
        })
        .collect()
}

/// The thread (name, CPU-seconds) that used the most CPU since `before` was taken.
fn busiest_thread(before: &HashMap<String, (String, f64)>) -> Option<(String, f64)> {
    thread_cpu()
        .into_iter()
        .map(|(tid, (name, cpu))| (name, cpu - before.get(&tid).map_or(0.0, |b| b.1)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

/// User + system CPU-seconds from a `/proc/.../stat` file (0 if unreadable).
pub fn cpu_seconds_in(stat: &std::path::Path) -> f64 {
    let stat = std::fs::read_to_string(stat).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(") ").map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0 // USER_HZ
}
