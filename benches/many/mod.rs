//! `RAFKA_BENCH_ONLY=many`: many partitions over many connections against one partition,
//! on one broker, alternated `RAFKA_BENCH_ROUNDS` times (default 2).
//!
//! - one partition: one producer connection and one consumer connection (each in its own
//!   client process);
//! - 1,000 partitions (one topic): 50 producer connections in 5 client processes (each
//!   producer writes 20 partitions round-robin) and 10 consumer connections in 2 client
//!   processes (each consumer assigned 100 partitions, reading from the start while the
//!   producers write).
//!
//! The same records either way (`RAFKA_BENCH_RECORDS` of 1 KiB, acks=1, librdkafka tuned
//! as `common::produce`). Reported: aggregate produce MB/s (records × size over the time
//! from the start of the producers to the last delivery report), the time until every
//! consumer has read everything, broker CPU-seconds per GB produced (consumption
//! included), and produce latency p50/p99 (send to delivery report, every record).
//! The client processes are this bench binary started again with `RAFKA_BENCH_MANY_ROLE`.
//! With `RAFKA_BENCH_PERF=<dir>`, `perf record` samples the broker during each workload
//! into `<dir>/many-<partitions>-<round>.data`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{Offset, TopicPartitionList};

use super::full_cache::{self, FullCache};
use super::{
    cpu_seconds, create_topic, env_num, load_average, median, pct, perf_record, perf_stop, Server,
};

const ROLE: &str = "RAFKA_BENCH_MANY_ROLE";
const RECORD_BYTES: usize = 1024;

/// One shape of the workload.
struct Shape {
    name: &'static str,
    partitions: i32,
    producer_processes: usize,
    producers_per_process: usize,
    consumer_processes: usize,
    consumers_per_process: usize,
}

const ONE: Shape = Shape {
    name: "1 partition, 1 + 1 connections",
    partitions: 1,
    producer_processes: 1,
    producers_per_process: 1,
    consumer_processes: 1,
    consumers_per_process: 1,
};

const MANY: Shape = Shape {
    name: "1,000 partitions, 50 + 10 connections",
    partitions: 1000,
    producer_processes: 5,
    producers_per_process: 10,
    consumer_processes: 2,
    consumers_per_process: 5,
};

/// If this process was started as a client process of the `many` bench, plays that role
/// and returns true.
pub fn child() -> bool {
    let Ok(role) = std::env::var(ROLE) else {
        return false;
    };
    // role: "produce|consume addr topic partitions first_client n_clients all_clients records"
    let f: Vec<&str> = role.split_whitespace().collect();
    let num = |i: usize| f[i].parse::<usize>().expect("role number");
    let (addr, topic) = (f[1], f[2]);
    let (partitions, first, n, all, records) = (num(3), num(4), num(5), num(6), num(7));
    let threads: Vec<_> = (first..first + n)
        .map(|client| {
            let (addr, topic, kind) = (addr.to_string(), topic.to_string(), f[0].to_string());
            // Client `client` of `all` serves the partitions p with p % all == client.
            let mine: Vec<i32> = (0..partitions)
                .filter(|p| p % all == client)
                .map(|p| p as i32)
                .collect();
            std::thread::spawn(move || {
                if kind == "produce" {
                    produce(&addr, &topic, &mine, records / all)
                } else {
                    consume(&addr, &topic, &mine, records / all);
                    Vec::new()
                }
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for t in threads {
        latencies.extend(t.join().expect("client thread"));
    }
    // The parent reads the latencies (µs) from stdout, then "done".
    let mut out = String::new();
    for l in latencies {
        out.push_str(&l.to_string());
        out.push('\n');
    }
    println!("{out}done");
    true
}

/// Delivery reports: the latency of each record, its send time (µs since `epoch`) being
/// its opaque.
struct Timed {
    epoch: Instant,
    latencies: Mutex<Vec<u32>>,
    failed: std::sync::atomic::AtomicUsize,
}

impl ClientContext for Timed {}

impl ProducerContext for Timed {
    type DeliveryOpaque = usize;
    fn delivery(&self, result: &DeliveryResult<'_>, sent_us: usize) {
        if result.is_err() {
            self.failed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        let now = self.epoch.elapsed().as_micros() as usize;
        let l = now.saturating_sub(sent_us).min(u32::MAX as usize) as u32;
        self.latencies.lock().unwrap().push(l);
    }
}

/// Produces `records` records to `partitions` round-robin; returns the latencies (µs).
fn produce(addr: &str, topic: &str, partitions: &[i32], records: usize) -> Vec<u32> {
    let ctx = Timed {
        epoch: Instant::now(),
        latencies: Mutex::new(Vec::with_capacity(records)),
        failed: Default::default(),
    };
    let p: BaseProducer<Timed> = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("acks", "1")
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create_with_context(ctx)
        .expect("producer");
    let payload = vec![b'x'; RECORD_BYTES];
    for i in 0..records {
        let partition = partitions[i % partitions.len()];
        loop {
            let sent = p.context().epoch.elapsed().as_micros() as usize;
            let record = BaseRecord::<str, [u8], usize>::with_opaque_to(topic, sent)
                .payload(&payload[..])
                .partition(partition);
            match p.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    p.poll(Duration::from_millis(1));
                }
                Err((e, _)) => panic!("produce {i}: {e}"),
            }
        }
        if i % 1024 == 0 {
            p.poll(Duration::ZERO);
        }
    }
    p.flush(Duration::from_secs(300)).expect("flush");
    let failed = p
        .context()
        .failed
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(failed, 0, "every record delivered");
    let latencies = std::mem::take(&mut *p.context().latencies.lock().unwrap());
    assert_eq!(latencies.len(), records, "a delivery report per record");
    latencies
}

/// Reads `records` records from the start of `partitions`.
fn consume(addr: &str, topic: &str, partitions: &[i32], records: usize) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "many")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_uncommitted")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for &p in partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition");
    }
    c.assign(&tpl).expect("assign");
    let start = Instant::now();
    let mut n = 0;
    while n < records {
        if let Some(m) = c.poll(Duration::from_secs(1)) {
            m.expect("message");
            n += 1;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "consume stalled at {n} of {records}"
        );
    }
}

/// A client process of the bench, playing `role`.
fn spawn(role: String) -> std::process::Child {
    Command::new(std::env::current_exe().expect("bench binary"))
        .env(ROLE, role)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("client process")
}

/// The latencies a client process printed, once it is done.
fn collect(child: std::process::Child) -> Vec<u32> {
    let mut child = child;
    let out = child.stdout.take().expect("stdout");
    let mut latencies = Vec::new();
    let mut done = false;
    for line in BufReader::new(out).lines() {
        let line = line.expect("client output");
        if line == "done" {
            done = true;
        } else if let Ok(l) = line.parse() {
            latencies.push(l);
        }
    }
    assert!(
        child.wait().expect("client").success() && done,
        "client failed"
    );
    latencies
}

struct Run {
    produce_mb_s: f64,
    all_read_s: f64,
    cpu_s_per_gb: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// The topic of `shape` in `round`, created before anything is measured.
fn topic(server: &Server, shape: &Shape, round: usize) -> String {
    let topic = format!("many-{}-{round}", shape.partitions);
    create_topic(&server.address, &topic, shape.partitions);
    topic
}

fn run(server: &Server, shape: &Shape, topic: &str, records: usize) -> Run {
    let pid = server.pid().to_string();
    let all_producers = shape.producer_processes * shape.producers_per_process;
    let all_consumers = shape.consumer_processes * shape.consumers_per_process;
    let records = records / (all_producers * 20) * (all_producers * 20);
    let cpu_before = cpu_seconds(&pid);
    let start = Instant::now();
    let role = |kind: &str, process: usize, per: usize, all: usize| {
        format!(
            "{kind} {} {topic} {} {} {per} {all} {records}",
            server.address,
            shape.partitions,
            process * per
        )
    };
    let consumers: Vec<_> = (0..shape.consumer_processes)
        .map(|i| {
            spawn(role(
                "consume",
                i,
                shape.consumers_per_process,
                all_consumers,
            ))
        })
        .collect();
    let producers: Vec<_> = (0..shape.producer_processes)
        .map(|i| {
            spawn(role(
                "produce",
                i,
                shape.producers_per_process,
                all_producers,
            ))
        })
        .collect();
    let mut latencies: Vec<u64> = Vec::with_capacity(records);
    for p in producers {
        latencies.extend(collect(p).into_iter().map(u64::from));
    }
    let produced = start.elapsed();
    for c in consumers {
        collect(c);
    }
    let all_read = start.elapsed();
    let cpu = cpu_seconds(&pid) - cpu_before;
    assert_eq!(latencies.len(), records, "a latency per record");
    latencies.sort_unstable();
    let bytes = (records * RECORD_BYTES) as f64;
    Run {
        produce_mb_s: bytes / 1e6 / produced.as_secs_f64(),
        all_read_s: all_read.as_secs_f64(),
        cpu_s_per_gb: cpu / (bytes / 1e9),
        p50_ms: pct(&latencies, 0.50),
        p99_ms: pct(&latencies, 0.99),
    }
}

/// `RAFKA_BENCH_ONLY=many` (module docs).
pub fn many(dir: &Path, records: usize) {
    let rounds = env_num("RAFKA_BENCH_ROUNDS", 2);
    if let Some(d) = std::env::var_os("RAFKA_BENCH_PERF") {
        std::fs::create_dir_all(d).unwrap();
    }
    let server = Server::rafka(&dir.join("rafka-many"));
    let cache = FullCache::from_env(dir, server.pid());
    let mut results: Vec<Vec<Run>> = vec![Vec::new(), Vec::new()];
    for round in 0..rounds {
        for (i, shape) in [&ONE, &MANY].into_iter().enumerate() {
            eprintln!("many: {} (round {round}) ...", shape.name);
            let topic = topic(&server, shape, round);
            full_cache::fill(cache.as_ref());
            let perf = std::env::var_os("RAFKA_BENCH_PERF").and_then(|d| {
                let out = Path::new(&d).join(format!("many-{}-{round}.data", shape.partitions));
                perf_record(server.pid(), &out)
            });
            let load = load_average();
            let r = run(&server, shape, &topic, records);
            perf_stop(perf);
            eprintln!(
                "    {:.1} MB/s, all read in {:.1} s, {:.3} CPU-s/GB, p50 {:.1} ms, p99 {:.1} ms \
                 (load {load:.2} → {:.2})",
                r.produce_mb_s,
                r.all_read_s,
                r.cpu_s_per_gb,
                r.p50_ms,
                r.p99_ms,
                load_average()
            );
            results[i].push(r);
        }
    }
    server.stop("-TERM");
    let range = |v: Vec<f64>, digits: usize| {
        let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        format!("{:.*} ({lo:.digits$}–{hi:.digits$})", digits, median(&v))
    };
    println!(
        "\n{records} records of {RECORD_BYTES} B, acks=1, consumers reading meanwhile; \
         {rounds} rounds, median (range); {}\n",
        full_cache::describe(cache.as_ref())
    );
    println!("| workload | produce MB/s | all read (s) | broker CPU-s/GB | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|---|");
    for (shape, runs) in [&ONE, &MANY].into_iter().zip(&results) {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            shape.name,
            range(runs.iter().map(|r| r.produce_mb_s).collect(), 1),
            range(runs.iter().map(|r| r.all_read_s).collect(), 1),
            range(runs.iter().map(|r| r.cpu_s_per_gb).collect(), 3),
            range(runs.iter().map(|r| r.p50_ms).collect(), 1),
            range(runs.iter().map(|r| r.p99_ms).collect(), 1),
        );
    }
    let ratio = |f: &dyn Fn(&Run) -> f64| {
        let v: Vec<f64> = results[1]
            .iter()
            .zip(&results[0])
            .map(|(m, o)| f(m) / f(o))
            .collect();
        range(v, 2)
    };
    println!(
        "\n1,000 partitions / 1 partition, per round: throughput {} (bar ≥ 0.8), \
         CPU per GB {} (bar ≤ 1.3)",
        ratio(&|r| r.produce_mb_s),
        ratio(&|r| r.cpu_s_per_gb)
    );
}
