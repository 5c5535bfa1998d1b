//! The comparison harness: one command, one table.
//!
//! `cargo bench --bench compare` measures, in one run on this machine:
//! - physical baselines: a loopback TCP transfer of the produce workload's bytes, and a
//!   sequential file write of the same bytes with an fsync every MiB;
//! - the `rafka` binary (release, log engine on disk, `fsync: on_ack_all`) driven by
//!   librdkafka: produce 1 KiB acks=1, produce 100 B acks=1, produce 1 KiB acks=all,
//!   consume 1 KiB from the start, end-to-end latency of 100 B records at a fixed rate with
//!   acks=all; broker CPU-seconds per GB moved (from `/proc/<pid>/stat`) and peak RSS;
//! - transactions and compaction on rafka alone: transactional produce (a commit every
//!   100 ms) against idempotent, read_committed consume against read_uncommitted, keyed
//!   produce to a compacted topic while the cleaner runs against a plain topic;
//! - start-up after a clean stop and recovery after SIGKILL with many partitions, and RSS
//!   idle with 10,000 partitions;
//! - the same client workloads against a peer broker when `tansu` (or `nisshi`, its newer
//!   name) is on PATH or named by `RAFKA_PEER_BIN`, started with in-memory storage
//!   (`RAFKA_PEER_ARGS` replaces its arguments; `{port}` is substituted).
//!
//! `RAFKA_BENCH_ONLY=transactions` runs only a closer look at transactions: transactional
//! (a commit 100 ms after each begin) against idempotent produce and read_committed
//! against read_uncommitted consume, five alternated runs of each, the time each commit
//! blocks, medians and three readings of the ratios.
//!
//! `RAFKA_BENCH_ONLY=tls` runs only TLS against plaintext: one broker with a `PLAINTEXT`
//! and an `SSL` listener (a throwaway rcgen CA), librdkafka producing 1 KiB acks=1 and
//! consuming from the start over each, alternated five times; medians, their ratio (and
//! that of the best runs), and the broker's CPU-seconds per GB on each.
//!
//! `RAFKA_BENCH_ONLY=scram` runs only SCRAM-SHA-512 connection set-up: logins per second
//! on fresh connections to a `SASL_PLAINTEXT` listener, with the client salting its
//! password on every login and with the salting cached (the broker's own cost).
//!
//! `RAFKA_BENCH_ONLY=authorizer` runs only produce and consume on a broker without an
//! authorizer against one with Kafka's StandardAuthorizer, 102 bindings and 1,000 topics.
//!
//! `RAFKA_BENCH_ONLY=zerocopy` runs only produce 1 KiB acks=1 and consume from the start
//! on a broker copying fetched records through memory (`broker.zero_copy_fetch: false`)
//! and on one sending them with `sendfile` (the default), alternated
//! `RAFKA_BENCH_ROUNDS` times (default 3): MB/s and broker CPU-seconds per GB, medians and
//! ranges. With `RAFKA_BENCH_PERF=<dir>`, `perf record` samples each broker during each
//! workload into `<dir>/<broker>-<workload>-<round>.data`.
//!
//! `RAFKA_BENCH_ONLY=produce` runs only produce 1 KiB acks=1, on this build's broker and,
//! with `RAFKA_BENCH_BASELINE_BIN=<rafka executable>`, on that build alternated with it
//! `RAFKA_BENCH_ROUNDS` times (default 3): MB/s, broker CPU-seconds per GB and the load
//! average, medians and ranges; `RAFKA_BENCH_PERF=<dir>` as for `zerocopy`.
//! `RAFKA_BENCH_BIN=<rafka executable>` measures another build in every mode.
//!
//! `RAFKA_BENCH_ONLY=preallocate` runs only produce 1 KiB (acks=1, then acks=all) to a
//! topic without and one with `preallocate=true` on one broker, alternated
//! `RAFKA_BENCH_ROUNDS` times: MB/s and broker CPU-seconds per GB, beside the disk's own
//! pace for the same bytes written and synced once (`dd`, the bound acks=all works under).
//!
//! `RAFKA_BENCH_ONLY=diskless` runs only the diskless cluster (one and three brokers at
//! commit intervals of 10, 50 and 250 ms, PostgreSQL and a `file://` store) beside the log
//! engine: produce throughput, latency p50/p99, objects and PostgreSQL transactions per GB
//! (benches/diskless/mod.rs).
//!
//! `RAFKA_BENCH_ONLY=many` runs only 1,000 partitions over 50 producer and 10 consumer
//! connections (several client processes) against one partition (benches/many/mod.rs).
//!
//! `RAFKA_BENCH_ONLY=latency` runs only e2e latency at 10,000 records/s with acks=all and
//! fsync, alone and beside a second producer (or a file writer) loading the disk, and
//! produce 1 KiB acks=1 against acks=all (benches/latency/mod.rs).
//!
//! `RAFKA_BENCH_ONLY=floor` runs only the broker's CPU per GB produced and consumed
//! against this machine's floor for the same bytes: processes that only receive, CRC and
//! write them, or only send them from the page cache with `sendfile` (benches/floor/mod.rs).
//!
//! `RAFKA_BENCH_ONLY=scale` runs only one broker holding `RAFKA_BENCH_PARTITIONS`
//! partitions (default 100,000): idle RSS and file descriptors, Metadata for every topic,
//! ready time after SIGTERM and after SIGKILL (benches/scale/mod.rs).
//!
//! `RAFKA_BENCH_ONLY=sessions` runs only the broker's CPU per Fetch of 1,000 caught-up
//! partitions: incremental (a KIP-227 session), sessionless, and of one partition, on a
//! raw connection asking back to back (benches/sessions/mod.rs).
//!
//! `RAFKA_BENCH_ONLY=connections` runs only idle connections beside one busy client: the
//! broker's RSS and CPU per idle connection, and produce throughput, CPU per GB and
//! one-record round trips with and without them (benches/connections/mod.rs).
//!
//! `RAFKA_BENCH_PAGE_CACHE_MIB=<MiB>` (modes `floor`, `many` and `preallocate`) measures with the page
//! cache full, as on a broker that has run a while: the broker and the floor writers run
//! in a memory cgroup of that size filled with older pages before each reading
//! (benches/full_cache/mod.rs).
//!
//! Sizes: `RAFKA_BENCH_RECORDS` (1 KiB records, default 200,000), `RAFKA_BENCH_STARTUP_MIB`
//! (data for the start-up test, default 1024), `RAFKA_BENCH_STARTUP_PARTITIONS` (1000).
//! Prints a Markdown table; not a pass/fail test.

mod common;
mod connections;
mod diskless;
mod floor;
mod full_cache;
mod latency;
mod many;
mod scale;
mod sessions;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The peer broker's executable: `RAFKA_PEER_BIN`, else `tansu` or `nisshi` (its name
/// since version 0.7) when one is on PATH.
fn peer_binary() -> Option<std::path::PathBuf> {
    if let Some(bin) = std::env::var_os("RAFKA_PEER_BIN") {
        return Some(bin.into());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| [d.join("tansu"), d.join("nisshi")])
        .find(|p| p.is_file())
}

/// The broker executable measured: `RAFKA_BENCH_BIN` (another build, say the one before a
/// change, for every mode), else this build's `rafka`.
fn rafka_binary() -> std::ffi::OsString {
    std::env::var_os("RAFKA_BENCH_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_rafka").into())
}

/// The system's 1-minute load average (`/proc/loadavg`), to note beside noisy figures.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// A broker process under measurement.
struct Server {
    child: Child,
    address: String,
    /// Time from spawn to the ready line (for rafka).
    ready: Duration,
}

impl Server {
    fn rafka(data: &Path) -> Server {
        Server::rafka_with(data, &[])
    }

    /// `rafka` with further arguments (`--config file`).
    fn rafka_with(data: &Path, extra: &[&std::ffi::OsStr]) -> Server {
        let listen = [
            std::ffi::OsStr::new("--listen"),
            std::ffi::OsStr::new("127.0.0.1:0"),
        ];
        Server::rafka_args(data, &[extra, &listen[..]].concat())
    }

    /// `rafka` with exactly these arguments before `--admin-listen` and `--data-dir` (a
    /// config with `broker.listeners` must not be given `--listen`).
    fn rafka_args(data: &Path, extra: &[&std::ffi::OsStr]) -> Server {
        Server::rafka_bin(&rafka_binary(), data, extra)
    }

    /// `rafka_args` with another build of the broker (`RAFKA_BENCH_BASELINE_BIN`).
    fn rafka_bin(bin: &std::ffi::OsStr, data: &Path, extra: &[&std::ffi::OsStr]) -> Server {
        let started = Instant::now();
        let mut child = Command::new(bin)
            .args(extra)
            .args(["--admin-listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn rafka");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("ready line");
        let address = line
            .split_whitespace()
            .nth(3)
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Server {
            child,
            address,
            ready: started.elapsed(),
        }
    }

    fn peer() -> Option<Server> {
        let bin = peer_binary()?;
        let free_port = || -> Option<u16> {
            Some(
                TcpListener::bind("127.0.0.1:0")
                    .ok()?
                    .local_addr()
                    .ok()?
                    .port(),
            )
        };
        let port = free_port()?;
        let args = std::env::var("RAFKA_PEER_ARGS").unwrap_or_else(|_| {
            "broker --kafka-listener-url tcp://127.0.0.1:{port} \
             --kafka-advertised-listener-url tcp://127.0.0.1:{port} \
             --storage-engine memory://peer/"
                .into()
        });
        let args = args.replace("{port}", &port.to_string());
        let started = Instant::now();
        let child = Command::new(&bin)
            .args(args.split_whitespace())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let address = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&address).is_err() {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Server {
            child,
            address,
            ready: started.elapsed(),
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(mut self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    /// A workload that panics must not leave the broker running.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// utime + stime of a process, in seconds (USER_HZ is 100 on Linux).
fn cpu_seconds(pid: &str) -> f64 {
    common::cpu_seconds_in(Path::new(&format!("/proc/{pid}/stat")))
}

/// A `VmHWM` / `VmRSS` line of /proc/<pid>/status, in MiB.
fn status_mib(pid: u32, key: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn loopback_mb_s(total: usize) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let reader = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0;
        while got < total {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0);
            got += n;
        }
    });
    let chunk = vec![7u8; 1 << 20];
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    let mut sent = 0;
    while sent < total {
        let n = chunk.len().min(total - sent);
        s.write_all(&chunk[..n]).unwrap();
        sent += n;
    }
    reader.join().unwrap();
    total as f64 / start.elapsed().as_secs_f64() / 1e6
}

/// Returns MB/s and the CPU seconds the writing took (the kernel's writeback under fsync
/// is charged to the caller, as it is to the broker).
fn fsync_write_mb_s(dir: &Path, total: usize) -> (f64, f64) {
    let cpu0 = cpu_seconds("self");
    let path = dir.join("baseline.bin");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![7u8; 1 << 20];
    let start = Instant::now();
    let mut written = 0;
    while written < total {
        let n = chunk.len().min(total - written);
        f.write_all(&chunk[..n]).unwrap();
        f.sync_data().unwrap();
        written += n;
    }
    let mb_s = total as f64 / start.elapsed().as_secs_f64() / 1e6;
    let cpu = cpu_seconds("self") - cpu0;
    drop(f);
    let _ = std::fs::remove_file(path);
    (mb_s, cpu / (total as f64 / 1e9))
}

/// Writes `total` bytes to a new file `page-cache.bin` in 1 MiB writes without syncing (the
/// page-cache write every produce ends in): MB/s and this thread's CPU-seconds per GB. The
/// file is left for the caller to remove.
fn page_cache_write(dir: &Path, total: usize) -> (f64, f64) {
    let path = dir.join("page-cache.bin");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![7u8; 1 << 20];
    let cpu0 = cpu_seconds("thread-self");
    let start = Instant::now();
    let mut written = 0;
    while written < total {
        let n = chunk.len().min(total - written);
        f.write_all(&chunk[..n]).unwrap();
        written += n;
    }
    let mb_s = total as f64 / start.elapsed().as_secs_f64() / 1e6;
    let cpu = cpu_seconds("thread-self") - cpu0;
    (mb_s, cpu / (total as f64 / 1e9))
}

/// An admin client of `addr` and a runtime to wait on its answers.
fn admin_client(addr: &str) -> (AdminClient<DefaultClientContext>, tokio::runtime::Runtime) {
    let admin = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .create()
        .unwrap();
    (admin, current_thread_runtime())
}

/// A single-threaded runtime for the benches' blocking client code.
fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn create_topic(addr: &str, name: &str, partitions: i32) {
    let (admin, rt) = admin_client(addr);
    let r = rt
        .block_on(admin.create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        ))
        .unwrap();
    for x in r {
        x.unwrap_or_else(|(t, e)| panic!("create {t}: {e}"));
    }
}

/// Consumes `records` from the start of partition 0 with client defaults. Returns the
/// time from the first poll and the time from the first record to the last (the client's
/// own start-up, about 0.5 s for librdkafka with a `group.id`, is not the broker's).
fn consume(addr: &str, topic: &str, records: usize) -> (Duration, Duration) {
    consume_at(addr, topic, records, "read_committed")
}

/// `consume` at an isolation level (librdkafka's default is read_committed).
fn consume_at(addr: &str, topic: &str, records: usize, isolation: &str) -> (Duration, Duration) {
    consume_with(addr, topic, records, &[("isolation.level", isolation)])
}

/// `consume` with further librdkafka settings (`security.protocol`, ...).
fn consume_with(
    addr: &str,
    topic: &str,
    records: usize,
    config: &[(&str, &str)],
) -> (Duration, Duration) {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", addr)
        .set("group.id", "compare")
        .set("enable.auto.commit", "false");
    for (k, v) in config {
        cfg.set(*k, *v);
    }
    let c: BaseConsumer = cfg.create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let start = Instant::now();
    let mut first: Option<Instant> = None;
    let mut n = 0;
    while n < records {
        if let Some(m) = c.poll(Duration::from_secs(10)) {
            m.unwrap();
            first.get_or_insert_with(Instant::now);
            n += 1;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "consume stalled at {n}"
        );
    }
    let first = first.unwrap_or(start);
    (start.elapsed(), first.elapsed())
}

/// End-to-end latency (µs, sorted) of `records` 100-byte records sent at `rate`/s with
/// acks=all and no linger; each value carries its send time.
fn e2e_latencies(addr: &str, topic: &str, records: usize, rate: usize) -> Vec<u64> {
    let base = Instant::now();
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "compare-e2e")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .unwrap();
    // Start at the partition's current end, read before anything is sent: `Offset::End`
    // is resolved whenever the client gets to it, and records sent before then were
    // skipped (a slow start-up lost the first few).
    let (_, end) = c
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(end))
        .unwrap();
    c.assign(&tpl).unwrap();
    let _ = c.poll(Duration::from_millis(500));
    let reader = std::thread::spawn(move || {
        let mut lat = Vec::with_capacity(records);
        let deadline = Instant::now() + Duration::from_secs(120);
        while lat.len() < records && Instant::now() < deadline {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
                let v = m.payload().unwrap_or_default();
                let sent = u64::from_be_bytes(v[..8].try_into().unwrap());
                lat.push((base.elapsed().as_micros() as u64).saturating_sub(sent));
            }
        }
        lat
    });
    // `RAFKA_BENCH_LAT_LINGER_MS` (default 0) for a closer look (benches/latency).
    let linger = std::env::var("RAFKA_BENCH_LAT_LINGER_MS").unwrap_or_else(|_| "0".into());
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("acks", "all")
        .set("linger.ms", &linger)
        .create()
        .unwrap();
    let start = Instant::now();
    let mut pending = Vec::with_capacity(records);
    for i in 0..records {
        let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let mut v = [b'x'; 100];
        v[..8].copy_from_slice(&(base.elapsed().as_micros() as u64).to_be_bytes());
        pending.push(
            p.send_result(
                FutureRecord::<(), _>::to(topic)
                    .payload(&v[..])
                    .partition(0),
            )
            .unwrap_or_else(|_| panic!("queue full at {i}")),
        );
    }
    p.flush(Duration::from_secs(60)).unwrap();
    let mut lat = reader.join().unwrap();
    assert_eq!(lat.len(), records, "every record arrived");
    lat.sort_unstable();
    lat
}

fn pct(sorted: &[u64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1000.0
}

/// One broker's results for the client workloads.
struct Results {
    rows: Vec<(String, f64, String, f64)>,
    peak_rss: f64,
}

/// Runs the client workloads against `server`: (name, figure, unit, broker CPU-s per GB).
fn workloads(server: &Server, records: usize) -> Results {
    let addr = server.address.clone();
    let pid = server.pid().to_string();
    let mut rows = Vec::new();
    let mut measure = |name: &str,
                       bytes: usize,
                       unit: &str,
                       run: &mut dyn FnMut() -> (f64, Duration)| {
        let (cpu0, client0) = (cpu_seconds(&pid), cpu_seconds("self"));
        let (figure, took) = run();
        let cpu = cpu_seconds(&pid) - cpu0;
        let client = cpu_seconds("self") - client0;
        let per_gb = if bytes > 0 {
            cpu / (bytes as f64 / 1e9)
        } else {
            0.0
        };
        eprintln!(
                "  {name}: {figure:.1} {unit} in {:.2} s; broker CPU {cpu:.2} s, client CPU {client:.2} s",
                took.as_secs_f64()
            );
        rows.push((name.to_string(), figure, unit.to_string(), per_gb));
    };
    for (t, parts) in [("p1k", 1), ("p100", 1), ("pall", 1), ("lat", 1)] {
        create_topic(&addr, t, parts);
    }
    let total = records * 1024;
    measure("produce 1 KiB acks=1", total, "MB/s", &mut || {
        let d = common::librdkafka_produce(&addr, "p1k", records, 1024, "1");
        (total as f64 / d.as_secs_f64() / 1e6, d)
    });
    let small = records * 5;
    measure(
        "produce 100 B acks=1",
        small * 100,
        "records/s",
        &mut || {
            let d = common::librdkafka_produce(&addr, "p100", small, 100, "1");
            (small as f64 / d.as_secs_f64(), d)
        },
    );
    measure("produce 1 KiB acks=all", total, "MB/s", &mut || {
        let d = common::librdkafka_produce(&addr, "pall", records, 1024, "all");
        (total as f64 / d.as_secs_f64() / 1e6, d)
    });
    let mut with_startup = Duration::ZERO;
    measure("consume 1 KiB from start", total, "MB/s", &mut || {
        let (all, steady) = consume(&addr, "p1k", records);
        with_startup = all;
        (total as f64 / steady.as_secs_f64() / 1e6, steady)
    });
    rows.push((
        "consume 1 KiB, incl. client start-up".into(),
        total as f64 / with_startup.as_secs_f64() / 1e6,
        "MB/s".into(),
        0.0,
    ));
    let lat_records = 30_000;
    let lat = e2e_latencies(&addr, "lat", lat_records, 10_000);
    rows.push((
        "e2e 100 B @10k/s acks=all p50".into(),
        pct(&lat, 0.5),
        "ms".into(),
        0.0,
    ));
    rows.push((
        "e2e 100 B @10k/s acks=all p99".into(),
        pct(&lat, 0.99),
        "ms".into(),
        0.0,
    ));
    Results {
        rows,
        peak_rss: status_mib(server.pid(), "VmHWM"),
    }
}

/// Creates a topic with configs (`cleanup.policy`, ...).
fn create_topic_with(addr: &str, name: &str, configs: &[(&str, &str)]) {
    let (admin, rt) = admin_client(addr);
    let mut topic = NewTopic::new(name, 1, TopicReplication::Fixed(1));
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    for x in rt
        .block_on(admin.create_topics(&[topic], &AdminOptions::new()))
        .unwrap()
    {
        x.unwrap_or_else(|(t, e)| panic!("create {t}: {e}"));
    }
}

/// Bytes under a directory (a partition's files).
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Transactions and compaction, on rafka alone (the peer serves neither): idempotent
/// against transactional produce (a commit every 100 ms), read_uncommitted against
/// read_committed consume of the transactional topic, and keyed produce to a plain topic
/// against a compacted one while the cleaner works (a 200 ms cleaner backoff, 8 MiB
/// segments, 10,000 keys). Rows: (name, figure, unit, ratio to the row's baseline).
fn exactly_once_and_compaction(dir: &Path, records: usize) -> Vec<(String, f64, String, String)> {
    let data = dir.join("rafka-eos");
    let cfg = dir.join("eos-compaction.yaml");
    std::fs::write(&cfg, "broker:\n  log_cleaner_backoff_ms: 200\n").unwrap();
    let server = Server::rafka_with(&data, &["--config".as_ref(), cfg.as_os_str()]);
    let addr = server.address.clone();
    let total = (records * 1024) as f64;
    let mb_s = |d: Duration| total / d.as_secs_f64() / 1e6;
    for t in ["idem", "txn"] {
        create_topic(&addr, t, 1);
    }
    let w = |topic| common::Workload {
        topic,
        records,
        size: 1024,
        acks: "all",
        config: &[("enable.idempotence", "true")],
        ..common::Workload::default()
    };
    eprintln!("  idempotent and transactional produce ...");
    let idem = mb_s(common::produce(&addr, &w("idem")));
    let txn = mb_s(common::produce(
        &addr,
        &common::Workload {
            transactional_id: Some("compare-txn"),
            commit_every: Duration::from_millis(100),
            ..w("txn")
        },
    ));
    eprintln!("  read_uncommitted and read_committed consume ...");
    // Short runs on a shared machine: the best of three, alternating.
    let (mut uncommitted, mut committed) = (0f64, 0f64);
    for _ in 0..3 {
        uncommitted = uncommitted.max(mb_s(
            consume_at(&addr, "txn", records, "read_uncommitted").1,
        ));
        committed = committed.max(mb_s(consume_at(&addr, "txn", records, "read_committed").1));
    }

    eprintln!("  keyed produce, plain and compacted ...");
    let segment = (8 << 20).to_string();
    create_topic_with(&addr, "keyed", &[("segment.bytes", &segment)]);
    create_topic_with(
        &addr,
        "compacted",
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", &segment),
            ("min.cleanable.dirty.ratio", "0.1"),
        ],
    );
    let keyed = |topic| common::Workload {
        keys: Some(10_000),
        ..w(topic)
    };
    let plain = mb_s(common::produce(&addr, &keyed("keyed")));
    let compacted = mb_s(common::produce(&addr, &keyed("compacted")));
    // Give the cleaner a moment to finish the last closed segments.
    std::thread::sleep(Duration::from_secs(2));
    let plain_bytes = dir_bytes(&data.join("keyed-0")) as f64 / (1 << 20) as f64;
    let compacted_bytes = dir_bytes(&data.join("compacted-0")) as f64 / (1 << 20) as f64;
    server.stop("-TERM");
    let ratio = |a: f64, b: f64| format!("{:.2}", a / b);
    vec![
        (
            "produce 1 KiB idempotent acks=all".into(),
            idem,
            "MB/s".into(),
            String::new(),
        ),
        (
            "produce 1 KiB transactional, commit every 100 ms".into(),
            txn,
            "MB/s".into(),
            ratio(txn, idem),
        ),
        (
            "consume read_uncommitted (transactional topic)".into(),
            uncommitted,
            "MB/s".into(),
            String::new(),
        ),
        (
            "consume read_committed (transactional topic)".into(),
            committed,
            "MB/s".into(),
            ratio(committed, uncommitted),
        ),
        (
            "produce 1 KiB keyed (10,000 keys), delete policy".into(),
            plain,
            "MB/s".into(),
            String::new(),
        ),
        (
            "produce 1 KiB keyed, compacted topic, cleaner running".into(),
            compacted,
            "MB/s".into(),
            ratio(compacted, plain),
        ),
        (
            "on disk after: delete policy".into(),
            plain_bytes,
            "MiB".into(),
            String::new(),
        ),
        (
            "on disk after: compacted".into(),
            compacted_bytes,
            "MiB".into(),
            ratio(compacted_bytes, plain_bytes),
        ),
    ]
}

/// Start-up after a clean stop and after SIGKILL with `partitions` partitions holding
/// `mib` MiB, and RSS idle with 10,000 partitions.
fn startup(dir: &Path, partitions: i32, mib: usize) -> Vec<(String, f64, String)> {
    let data = dir.join("startup");
    let s = Server::rafka(&data);
    let per_topic = 1000.min(partitions);
    let topics = (partitions + per_topic - 1) / per_topic;
    for t in 0..topics {
        create_topic(&s.address, &format!("s{t}"), per_topic);
    }
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &s.address)
        .set("acks", "1")
        .set("linger.ms", "5")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()
        .unwrap();
    let payload = vec![b'y'; 1024];
    let total = mib * 1024;
    for i in 0..total {
        let topic = format!("s{}", (i as i32 % partitions) / per_topic);
        let part = (i as i32 % partitions) % per_topic;
        while p
            .send_result(
                FutureRecord::<(), _>::to(&topic)
                    .payload(&payload[..])
                    .partition(part),
            )
            .is_err()
        {
            p.poll(Duration::from_millis(1));
        }
    }
    p.flush(Duration::from_secs(300)).unwrap();
    drop(p);
    s.stop("-TERM");
    let clean = Server::rafka(&data);
    let clean_ready = clean.ready;
    clean.stop("-KILL");
    let dirty = Server::rafka(&data);
    let dirty_ready = dirty.ready;
    dirty.stop("-TERM");
    // Idle RSS with 10,000 partitions (empty).
    let idle = Server::rafka(&dir.join("idle"));
    for t in 0..10 {
        create_topic(&idle.address, &format!("i{t}"), 1000);
    }
    std::thread::sleep(Duration::from_secs(1));
    let rss = status_mib(idle.pid(), "VmRSS");
    idle.stop("-TERM");
    vec![
        (
            format!("ready after clean stop ({partitions} partitions, {mib} MiB)"),
            clean_ready.as_secs_f64() * 1000.0,
            "ms".into(),
        ),
        (
            format!("ready after SIGKILL ({partitions} partitions, {mib} MiB)"),
            dirty_ready.as_secs_f64() * 1000.0,
            "ms".into(),
        ),
        ("RSS idle, 10,000 partitions".into(), rss, "MiB".into()),
    ]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` / `cargo test --benches` probe
    }
    if many::child() {
        return; // a client process of `RAFKA_BENCH_ONLY=many`
    }
    if floor::child() {
        return; // a floor process of `RAFKA_BENCH_ONLY=floor`
    }
    let records = env_num("RAFKA_BENCH_RECORDS", 200_000);
    let dir = tempfile::tempdir_in(std::env::var("RAFKA_BENCH_DIR").unwrap_or_else(|_| ".".into()))
        .unwrap();
    if std::env::var("RAFKA_BENCH_ONLY").is_ok_and(|v| v == "floor") {
        return floor::run(dir.path(), records);
    }
    if std::env::var("RAFKA_BENCH_ONLY").is_ok_and(|v| v == "latency") {
        return latency::run(dir.path(), records);
    }
    if std::env::var("RAFKA_BENCH_ONLY").is_ok_and(|v| v == "tls") {
        tls_against_plaintext(dir.path(), records);
        return;
    }
    if std::env::var("RAFKA_BENCH_ONLY").is_ok_and(|v| v == "scram") {
        scram_connections(dir.path());
        return;
    }
    if std::env::var("RAFKA_BENCH_ONLY").is_ok_and(|v| v == "connections") {
        connections::run(dir.path(), records);
        return;
    }
    if std::env::var("RAFKA_BENCH_ONLY").is_ok_and(|v| v == "sessions") {
        sessions::run(dir.path());
        return;
    }
    if std::env::var("RAFKA_BENCH_ONLY").is_ok_and(|v| v == "scale") {
        scale::scale(dir.path());
        return;
    }
    if std::env::var("RAFKA_BENCH_ONLY").is_ok_and(|v| v == "diskless") {
        diskless::diskless(dir.path(), records);
        return;
    }
    if std::env::var("RAFKA_BENCH_ONLY").is_ok_and(|v| v == "authorizer") {
        authorizer_on_and_off(dir.path(), records);
        return;
    }
    if std::env::var("RAFKA_BENCH_ONLY").is_ok_and(|v| v == "preallocate") {
        preallocate_on_and_off(dir.path(), records);
        return;
    }
    if std::env::var("RAFKA_BENCH_ONLY").is_ok_and(|v| v == "many") {
        many::many(dir.path(), records);
        return;
    }
    if std::env::var("RAFKA_BENCH_ONLY").is_ok_and(|v| v == "produce") {
        produce_against_baseline(dir.path(), records);
        return;
    }
    if std::env::var("RAFKA_BENCH_ONLY").is_ok_and(|v| v == "zerocopy") {
        zero_copy_on_and_off(dir.path(), records);
        return;
    }
    let only_txn = std::env::var("RAFKA_BENCH_ONLY").is_ok_and(|v| v == "transactions");
    if only_txn {
        eprintln!("transactions ...");
        let rafka = Server::rafka(&dir.path().join("rafka-txn"));
        let rows = transactions(&rafka, records);
        rafka.stop("-TERM");
        print_transactions(records, &rows);
        return;
    }
    let total = records * 1024;
    eprintln!("baselines ...");
    let loopback = loopback_mb_s(total);
    let (disk, disk_cpu) = fsync_write_mb_s(dir.path(), total);
    eprintln!("rafka ...");
    let rafka = Server::rafka(&dir.path().join("rafka"));
    let ours = workloads(&rafka, records);
    let rafka_pid = rafka.pid().to_string();
    let rafka_cpu = cpu_seconds(&rafka_pid);
    rafka.stop("-TERM");
    let peer = Server::peer().map(|p| {
        eprintln!("peer ...");
        let r = workloads(&p, records);
        p.stop("-TERM");
        r
    });
    eprintln!("transactions and compaction ...");
    let eos = exactly_once_and_compaction(dir.path(), records);
    eprintln!("start-up ...");
    let start = startup(
        dir.path(),
        env_num("RAFKA_BENCH_STARTUP_PARTITIONS", 1000) as i32,
        env_num("RAFKA_BENCH_STARTUP_MIB", 1024),
    );

    println!("records: {records} x 1 KiB (100 B workload: {} records); broker: rafka release, log engine, fsync on_ack_all", records * 5);
    println!();
    println!("| workload | rafka | unit | vs loopback | vs fsync-write | broker CPU-s/GB | peer | rafka/peer | peer CPU-s/GB |");
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|");
    println!("| loopback TCP (baseline) | {loopback:.0} | MB/s | 100% | | | | | |");
    println!(
        "| file write + fsync/MiB (baseline) | {disk:.0} | MB/s | | 100% | {disk_cpu:.2} (writer) | | | |"
    );
    for (i, (name, v, unit, per_gb)) in ours.rows.iter().enumerate() {
        let (vs_lo, vs_disk) = if unit == "MB/s" {
            (
                format!("{:.0}%", 100.0 * v / loopback),
                format!("{:.0}%", 100.0 * v / disk),
            )
        } else {
            (String::new(), String::new())
        };
        let cpu = if *per_gb > 0.0 {
            format!("{per_gb:.2}")
        } else {
            String::new()
        };
        let (pv, ratio, peer_cpu) = match &peer {
            Some(p) => {
                let (_, pv, _, peer_gb) = &p.rows[i];
                let peer_cpu = if *peer_gb > 0.0 {
                    format!("{peer_gb:.2}")
                } else {
                    String::new()
                };
                (format!("{pv:.1}"), format!("{:.2}", v / pv), peer_cpu)
            }
            None => ("n/a".into(), String::new(), String::new()),
        };
        println!(
            "| {name} | {v:.1} | {unit} | {vs_lo} | {vs_disk} | {cpu} | {pv} | {ratio} | {peer_cpu} |"
        );
    }
    let acks1 = ours.rows[0].1;
    let all = ours.rows[2].1;
    println!(
        "| acks=all / acks=1 | {:.0} | % | | | | | | |",
        100.0 * all / acks1
    );
    for (name, v, unit) in &start {
        println!("| {name} | {v:.0} | {unit} | | | | | | |");
    }
    println!(
        "| broker peak RSS during the workloads | {:.0} | MiB | | | | {} | | |",
        ours.peak_rss,
        peer.as_ref()
            .map_or("n/a".into(), |p| format!("{:.0}", p.peak_rss))
    );
    println!("| broker CPU-s for all workloads | {rafka_cpu:.1} | s | | | | | | |");
    println!();
    println!("Transactions and compaction (rafka only; ratio to the row above it):");
    println!();
    println!("| workload | rafka | unit | ratio |");
    println!("|---|---:|---|---:|");
    for (name, v, unit, ratio) in &eos {
        println!("| {name} | {v:.1} | {unit} | {ratio} |");
    }
    match (peer.is_none(), peer_binary()) {
        (false, _) => {}
        (true, None) => println!(
            "\n(no peer: neither `tansu` nor `nisshi` on PATH and no RAFKA_PEER_BIN; peer columns empty)"
        ),
        (true, Some(bin)) => println!(
            "\n(no peer: {} did not listen within 20 s (run it by hand to see why: \
             tansu needs `--features dynostore` for memory storage); peer columns empty",
            bin.display()
        ),
    }
}

/// A transactions row: name, median figure (MB/s), the runs, broker CPU-s per GB.
type TxnRow = (String, f64, Vec<f64>, f64);

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// "median (lowest–highest)" of `v`, each with `digits` decimals.
fn median_range(v: &[f64], digits: usize) -> String {
    let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    format!(
        "{:.*} ({:.*}–{:.*})",
        digits,
        median(v),
        digits,
        lo,
        digits,
        hi
    )
}

/// Produces `records` 1 KiB records to partition 0 of `topic` with acks=all and
/// idempotence; with `commit_every`, transactionally, committing when that much time has
/// passed since the transaction began (and at the end). The client's queue is 16 MiB for
/// both, so a commit (which flushes) waits for a bounded backlog and a transaction lasts
/// about `commit_every` plus that flush. Returns the time taken.
fn produce_eos(
    addr: &str,
    topic: &str,
    records: usize,
    commit_every: Option<Duration>,
) -> Duration {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    use rdkafka::producer::{BaseProducer, BaseRecord};
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", addr)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "16384");
    if commit_every.is_some() {
        cfg.set("transactional.id", format!("bench-{topic}"));
    }
    let p: BaseProducer = cfg.create().unwrap();
    let t = Duration::from_secs(60);
    if commit_every.is_some() {
        p.init_transactions(t).unwrap();
    }
    let payload = vec![b'x'; 1024];
    let start = Instant::now();
    let mut began = Instant::now();
    let mut commits = 0;
    // Time blocked in commit_transaction (its flush and EndTxn) and begin_transaction.
    let mut in_commit = Duration::ZERO;
    if commit_every.is_some() {
        p.begin_transaction().unwrap();
    }
    for i in 0..records {
        loop {
            match p.send(
                BaseRecord::<(), _>::to(topic)
                    .payload(&payload[..])
                    .partition(0),
            ) {
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
        if let Some(every) = commit_every {
            if began.elapsed() >= every {
                let c = Instant::now();
                p.commit_transaction(t).unwrap();
                commits += 1;
                p.begin_transaction().unwrap();
                in_commit += c.elapsed();
                began = Instant::now();
            }
        }
    }
    if commit_every.is_some() {
        let c = Instant::now();
        p.commit_transaction(t).unwrap();
        in_commit += c.elapsed();
        commits += 1;
    } else {
        p.flush(t).unwrap();
    }
    let took = start.elapsed();
    // Every record (and, transactional, one commit marker per transaction) is in the log.
    let (_, high) = p
        .client()
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .unwrap();
    let markers = if commit_every.is_some() { commits } else { 0 };
    assert_eq!(
        high as usize,
        records + markers,
        "{topic}: records and markers"
    );
    eprintln!(
        "    {topic}: {records} records in {:.2} s, {markers} commits (one per {:.0} ms, {:.0} ms each in commit)",
        took.as_secs_f64(),
        took.as_secs_f64() * 1000.0 / markers.max(1) as f64,
        in_commit.as_secs_f64() * 1000.0 / markers.max(1) as f64
    );
    took
}

/// Transactional against idempotent produce, read_committed against read_uncommitted
/// consume, on rafka; five runs of each, alternated so that drift hits both sides.
fn transactions(server: &Server, records: usize) -> Vec<TxnRow> {
    let addr = server.address.clone();
    let pid = server.pid().to_string();
    let total = records * 1024;
    let mb_s = |d: Duration| total as f64 / d.as_secs_f64() / 1e6;
    let rounds = 5;
    let mut idem = (Vec::new(), 0.0);
    let mut txn = (Vec::new(), 0.0);
    for r in 0..rounds {
        for transactional in [false, true] {
            let topic = if transactional {
                format!("txn-{r}")
            } else {
                format!("idem-{r}")
            };
            create_topic(&addr, &topic, 1);
            let cpu0 = cpu_seconds(&pid);
            let every = transactional.then_some(Duration::from_millis(100));
            let d = produce_eos(&addr, &topic, records, every);
            let cpu = cpu_seconds(&pid) - cpu0;
            let side = if transactional { &mut txn } else { &mut idem };
            side.0.push(mb_s(d));
            side.1 += cpu;
        }
    }
    let mut ru = (Vec::new(), 0.0);
    let mut rc = (Vec::new(), 0.0);
    for _ in 0..rounds {
        for isolation in ["read_uncommitted", "read_committed"] {
            let cpu0 = cpu_seconds(&pid);
            let d = consume_at(&addr, "txn-0", records, isolation).1;
            let cpu = cpu_seconds(&pid) - cpu0;
            eprintln!(
                "    {isolation}: {records} records in {:.2} s",
                d.as_secs_f64()
            );
            let side = if isolation == "read_committed" {
                &mut rc
            } else {
                &mut ru
            };
            side.0.push(mb_s(d));
            side.1 += cpu;
        }
    }
    let gb = (total * rounds) as f64 / 1e9;
    let row = |name: &str, (runs, cpu): (Vec<f64>, f64)| {
        (name.to_string(), median(&runs), runs, cpu / gb)
    };
    vec![
        row("produce 1 KiB idempotent acks=all", idem),
        row("produce 1 KiB transactional, commit every 100 ms", txn),
        row("consume 1 KiB read_uncommitted (transactional topic)", ru),
        row("consume 1 KiB read_committed (transactional topic)", rc),
    ]
}

fn print_transactions(records: usize, rows: &[TxnRow]) {
    println!("transactions: {records} x 1 KiB records per run, 5 alternated runs each, rafka (librdkafka clients)");
    println!();
    println!("| workload | median | unit | runs | broker CPU-s/GB |");
    println!("|---|---:|---|---|---:|");
    for (name, m, runs, per_gb) in rows {
        let runs: Vec<String> = runs.iter().map(|r| format!("{r:.0}")).collect();
        println!(
            "| {name} | {m:.1} | MB/s | {} | {per_gb:.2} |",
            runs.join(", ")
        );
    }
    // Three readings of each ratio: of the medians, of the best runs, and the median of
    // the ratios of runs made back to back (the machine's load drifts between runs).
    let ratios = |a: &TxnRow, b: &TxnRow| {
        let best = |r: &TxnRow| r.2.iter().copied().fold(0.0, f64::max);
        let paired: Vec<f64> = a.2.iter().zip(&b.2).map(|(x, y)| x / y).collect();
        (a.1 / b.1, best(a) / best(b), median(&paired))
    };
    let (m, best, paired) = ratios(&rows[1], &rows[0]);
    println!(
        "| transactional / idempotent produce | {m:.2} | × (medians) | best runs {best:.2}, paired runs {paired:.2}; target ≥ 0.9 | |"
    );
    let (m, best, paired) = ratios(&rows[3], &rows[2]);
    println!(
        "| read_committed / read_uncommitted consume | {m:.2} | × (medians) | best runs {best:.2}, paired runs {paired:.2}; target ≥ 0.95 | |"
    );
}

/// A free loopback port (bound, then released for the broker to take).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `RAFKA_BENCH_ONLY=tls`: produce 1 KiB acks=1 and consume from the start over a
/// `PLAINTEXT` and an `SSL` listener of the same broker, alternated, three runs each.
fn tls_against_plaintext(dir: &Path, records: usize) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "bench CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let put = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let ca_pem = put("bench-ca.pem", &ca.pem());
    let cert = put("bench-server.pem", &leaf.pem());
    let key = put("bench-server.key", &key.serialize_pem());
    let (plain_port, tls_port) = (free_port(), free_port());
    let config = put(
        "bench-tls.yaml",
        &format!(
            "broker:\n  listeners:\n    - name: PLAIN\n      listen: 127.0.0.1:{plain_port}\n    \
             - name: TLS\n      listen: 127.0.0.1:{tls_port}\n      security_protocol: SSL\n      \
             ssl:\n        certificate: {}\n        key: {}\n",
            cert.display(),
            key.display()
        ),
    );
    let server = Server::rafka_args(
        &dir.join("rafka-tls"),
        &[std::ffi::OsStr::new("--config"), config.as_os_str()],
    );
    let pid = server.pid().to_string();
    let plain = format!("127.0.0.1:{plain_port}");
    let tls = format!("127.0.0.1:{tls_port}");
    let ca_location = ca_pem.to_str().unwrap().to_string();
    let ssl: [(&str, &str); 2] = [
        ("security.protocol", "ssl"),
        ("ssl.ca.location", ca_location.as_str()),
    ];
    let total = records * 1024;
    // (produce MB/s, consume MB/s, broker CPU-s/GB produce, consume) per run and listener.
    let mut runs: [Vec<[f64; 4]>; 2] = [Vec::new(), Vec::new()];
    for round in 0..5 {
        for (i, (addr, extra)) in [(&plain, &[][..]), (&tls, &ssl[..])]
            .into_iter()
            .enumerate()
        {
            let topic = format!("tls-{round}-{i}");
            create_topic(&plain, &topic, 1);
            let cpu0 = cpu_seconds(&pid);
            let d = common::produce(
                addr,
                &common::Workload {
                    topic: &topic,
                    records,
                    size: 1024,
                    acks: "1",
                    config: extra,
                    ..common::Workload::default()
                },
            );
            let cpu1 = cpu_seconds(&pid);
            let (_, steady) = consume_with(addr, &topic, records, extra);
            let cpu2 = cpu_seconds(&pid);
            let gb = total as f64 / 1e9;
            let row = [
                total as f64 / d.as_secs_f64() / 1e6,
                total as f64 / steady.as_secs_f64() / 1e6,
                (cpu1 - cpu0) / gb,
                (cpu2 - cpu1) / gb,
            ];
            eprintln!(
                "  {} run {round}: produce {:.0} MB/s, consume {:.0} MB/s",
                if i == 0 { "PLAINTEXT" } else { "SSL" },
                row[0],
                row[1]
            );
            runs[i].push(row);
        }
    }
    server.stop("-TERM");
    let med = |i: usize, k: usize| median(&runs[i].iter().map(|r| r[k]).collect::<Vec<_>>());
    let best = |i: usize, k: usize| runs[i].iter().map(|r| r[k]).fold(0.0, f64::max);
    println!("records: {records} x 1 KiB per run; one rafka (release, log engine) with a PLAINTEXT and an SSL listener (TLS 1.3, rustls/ring, ECDSA P-256 certificate); librdkafka (OpenSSL) on both; medians of 5 alternated runs");
    println!();
    println!("| workload | PLAINTEXT MB/s | SSL MB/s | SSL / PLAINTEXT | best runs | broker CPU-s/GB PLAINTEXT | broker CPU-s/GB SSL |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, k) in [("produce 1 KiB acks=1", 0), ("consume 1 KiB from start", 1)] {
        println!(
            "| {name} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} |",
            med(0, k),
            med(1, k),
            med(1, k) / med(0, k),
            best(1, k) / best(0, k),
            med(0, k + 2),
            med(1, k + 2)
        );
    }
}

/// One request over a blocking stream: the frame of `body` at `version`, then the answer's
/// body decoded.
fn raw_request<Resp: kafka_protocol::protocol::Decodable>(
    stream: &mut TcpStream,
    key: kafka_protocol::messages::ApiKey,
    version: i16,
    body: &impl kafka_protocol::protocol::Encodable,
) -> Resp {
    use kafka_protocol::messages::{RequestHeader, ResponseHeader};
    use kafka_protocol::protocol::{Decodable, Encodable};
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(1);
    let header_version = key.request_header_version(version);
    // The size prefix and the request in one write (one segment on the wire).
    let mut buf = bytes::BytesMut::from(&[0u8; 4][..]);
    header.encode(&mut buf, header_version).unwrap();
    body.encode(&mut buf, version).unwrap();
    let size = (buf.len() - 4) as u32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    stream.write_all(&buf).unwrap();
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).unwrap();
    let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut frame).unwrap();
    let mut frame = bytes::Bytes::from(frame);
    ResponseHeader::decode(&mut frame, key.response_header_version(version)).unwrap();
    Resp::decode(&mut frame, version).unwrap()
}

/// One SCRAM-SHA-512 login on a fresh connection (SaslHandshake v1, SaslAuthenticate v2
/// twice, the server's signature checked); `salted` salts the password.
fn scram_login(addr: &str, nonce: u64, salted: &dyn Fn(&[u8], u32) -> Vec<u8>) {
    use kafka_protocol::messages::{
        ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
        SaslHandshakeResponse,
    };
    use rafka_protocol::sasl::scram::{ScramClient, ScramMechanism};
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let hs: SaslHandshakeResponse = raw_request(
        &mut s,
        ApiKey::SaslHandshake,
        1,
        &SaslHandshakeRequest::default().with_mechanism("SCRAM-SHA-512".into()),
    );
    assert_eq!(hs.error_code, 0);
    let mut client = ScramClient::new(
        ScramMechanism::Sha512,
        "bench",
        "bench-secret",
        format!("benchnonce{nonce}"),
    );
    let auth = |s: &mut TcpStream, token: Vec<u8>| -> Vec<u8> {
        let r: SaslAuthenticateResponse = raw_request(
            s,
            ApiKey::SaslAuthenticate,
            2,
            &SaslAuthenticateRequest::default().with_auth_bytes(token.into()),
        );
        assert_eq!(r.error_code, 0, "{:?}", r.error_message);
        r.auth_bytes.to_vec()
    };
    let server_first = auth(&mut s, client.client_first());
    let last = client.client_final_salted(&server_first, salted).unwrap();
    let server_final = auth(&mut s, last);
    client.verify_server_final(&server_final).unwrap();
}

/// `RAFKA_BENCH_ONLY=scram`: SCRAM-SHA-512 connections set up per second against one
/// SASL_PLAINTEXT listener, by four client threads for 5 s: once salting the password on
/// every login (as librdkafka and Kafka's Java client do), once with the salting cached
/// (what is left is the broker's side: accept, three round trips, HMACs).
fn scram_connections(dir: &Path) {
    use rafka_protocol::sasl::scram::{salted_password, ScramMechanism};
    let port = free_port();
    let config = dir.join("bench-scram.yaml");
    std::fs::write(
        &config,
        format!(
            "broker:\n  listeners:\n    - name: SASL\n      listen: 127.0.0.1:{port}\n      \
             security_protocol: SASL_PLAINTEXT\n      sasl_enabled_mechanisms: [SCRAM-SHA-512]\n  \
             scram_users:\n    - name: bench\n      password: bench-secret\n      \
             mechanisms: [SCRAM-SHA-512]\n"
        ),
    )
    .unwrap();
    let server = Server::rafka_args(
        &dir.join("rafka-scram"),
        &[std::ffi::OsStr::new("--config"), config.as_os_str()],
    );
    let pid = server.pid().to_string();
    let addr = format!("127.0.0.1:{port}");
    const THREADS: u64 = 4;
    let window = Duration::from_secs(5);
    println!("SCRAM-SHA-512 logins on fresh connections, {THREADS} client threads, {} s each; one rafka (release), SASL_PLAINTEXT, 4096 iterations", window.as_secs());
    println!();
    println!("| client | connections/s | broker CPU-ms per connection |");
    println!("|---|---:|---:|");
    for cached in [false, true] {
        let cpu0 = cpu_seconds(&pid);
        let started = Instant::now();
        let counts: Vec<u64> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..THREADS)
                .map(|t| {
                    let addr = addr.clone();
                    scope.spawn(move || {
                        // (salt, iterations, salted password) of the last login.
                        type Salting = Option<(Vec<u8>, u32, Vec<u8>)>;
                        let cache: std::cell::RefCell<Salting> = Default::default();
                        let salted = |salt: &[u8], i: u32| -> Vec<u8> {
                            if cached {
                                if let Some((s, n, v)) = cache.borrow().as_ref() {
                                    if s == salt && *n == i {
                                        return v.clone();
                                    }
                                }
                            }
                            let v =
                                salted_password(ScramMechanism::Sha512, "bench-secret", salt, i);
                            *cache.borrow_mut() = Some((salt.to_vec(), i, v.clone()));
                            v
                        };
                        let mut n = 0u64;
                        while started.elapsed() < window {
                            scram_login(&addr, t * 1_000_000_000 + n, &salted);
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let secs = started.elapsed().as_secs_f64();
        let total: u64 = counts.iter().sum();
        let cpu = cpu_seconds(&pid) - cpu0;
        println!(
            "| {} | {:.0} | {:.3} |",
            if cached {
                "salting cached"
            } else {
                "salting every login"
            },
            total as f64 / secs,
            cpu * 1000.0 / total.max(1) as f64
        );
    }
    server.stop("-TERM");
}

/// Creates `names` in one CreateTopics request (one partition each).
fn create_topics(addr: &str, names: &[String]) {
    let (admin, rt) = admin_client(addr);
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|n| NewTopic::new(n, 1, TopicReplication::Fixed(1)))
        .collect();
    for chunk in topics.chunks(200) {
        let r = rt
            .block_on(admin.create_topics(
                chunk,
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(60))),
            ))
            .unwrap();
        for x in r {
            x.unwrap_or_else(|(t, e)| panic!("create {t}: {e}"));
        }
    }
}

/// `RAFKA_BENCH_ONLY=authorizer`: produce 1 KiB acks=1 and consume from the start on a
/// broker without an authorizer and on one with Kafka's StandardAuthorizer holding 102
/// bindings (99 prefixed ones for other principals and prefixes; for the benchmark's
/// principal ALLOW ALL on the topics' prefix, the cluster and every group) over 1,000 topics, alternated, three runs each.
fn authorizer_on_and_off(dir: &Path, records: usize) {
    let acl_dir = dir.join("rafka-acl");
    std::fs::create_dir_all(&acl_dir).unwrap();
    let mut acls = String::from("acls:\n");
    for i in 0..99 {
        acls.push_str(&format!(
            "  - {{resource_type: Topic, resource_name: other-{i:02}-, pattern_type: PREFIXED, principal: 'User:team{i}', host: '*', operation: {}, permission: ALLOW}}\n",
            if i % 2 == 0 { "READ" } else { "WRITE" }
        ));
    }
    acls.push_str("  - {resource_type: Topic, resource_name: bench-, pattern_type: PREFIXED, principal: 'User:ANONYMOUS', host: '*', operation: ALL, permission: ALLOW}\n");
    acls.push_str("  - {resource_type: Cluster, resource_name: kafka-cluster, pattern_type: LITERAL, principal: 'User:ANONYMOUS', host: '*', operation: ALL, permission: ALLOW}\n");
    // librdkafka's consumer has a group id (it looks up the group's coordinator).
    acls.push_str("  - {resource_type: Group, resource_name: '*', pattern_type: LITERAL, principal: 'User:ANONYMOUS', host: '*', operation: ALL, permission: ALLOW}\n");
    std::fs::write(acl_dir.join("rafka-acls.yaml"), acls).unwrap();
    let config = dir.join("bench-acl.yaml");
    std::fs::write(
        &config,
        "broker:\n  authorizer_class_name: org.apache.kafka.metadata.authorizer.StandardAuthorizer\n",
    )
    .unwrap();
    let servers = [
        ("off", Server::rafka(&dir.join("rafka-noacl"))),
        (
            "on",
            Server::rafka_args(
                &acl_dir,
                &[std::ffi::OsStr::new("--config"), config.as_os_str()],
            ),
        ),
    ];
    let names: Vec<String> = (0..1000).map(|i| format!("bench-{i:04}")).collect();
    for (_, s) in &servers {
        create_topics(&s.address, &names);
    }
    let total = records * 1024;
    // (produce MB/s, consume MB/s) per run and broker.
    let mut runs: [Vec<[f64; 2]>; 2] = [Vec::new(), Vec::new()];
    for round in 0..3 {
        for (i, (label, s)) in servers.iter().enumerate() {
            let topic = &names[round * 7 + i];
            let d = common::produce(
                &s.address,
                &common::Workload {
                    topic,
                    records,
                    size: 1024,
                    acks: "1",
                    ..common::Workload::default()
                },
            );
            let (_, steady) = consume_with(&s.address, topic, records, &[]);
            let row = [
                total as f64 / d.as_secs_f64() / 1e6,
                total as f64 / steady.as_secs_f64() / 1e6,
            ];
            eprintln!(
                "  authorizer {label} run {round}: produce {:.0} MB/s, consume {:.0} MB/s",
                row[0], row[1]
            );
            runs[i].push(row);
        }
    }
    for (_, s) in servers {
        s.stop("-TERM");
    }
    let med = |i: usize, k: usize| median(&runs[i].iter().map(|r| r[k]).collect::<Vec<_>>());
    println!("records: {records} x 1 KiB per run; two rafka (release, log engine), one without an authorizer, one with StandardAuthorizer, 102 bindings and 1,000 topics; librdkafka; medians of 3 alternated runs");
    println!();
    println!("| workload | authorizer off MB/s | authorizer on MB/s | on / off |");
    println!("|---|---:|---:|---:|");
    for (name, k) in [("produce 1 KiB acks=1", 0), ("consume 1 KiB from start", 1)] {
        println!(
            "| {name} | {:.0} | {:.0} | {:.2} |",
            med(0, k),
            med(1, k),
            med(1, k) / med(0, k)
        );
    }
}

/// `perf record -g` of one process until the returned child is interrupted.
fn perf_record(pid: u32, out: &Path) -> Option<Child> {
    Command::new("perf")
        .args([
            "record",
            "-q",
            "-F",
            "4999",
            "-g",
            "-p",
            &pid.to_string(),
            "-o",
        ])
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

fn perf_stop(child: Option<Child>) {
    if let Some(mut c) = child {
        let _ = Command::new("kill")
            .args(["-INT", &c.id().to_string()])
            .status();
        let _ = c.wait();
    }
}

/// `RAFKA_BENCH_ONLY=zerocopy`: produce 1 KiB acks=1 and consume from the start on a
/// broker with `broker.zero_copy_fetch: false` and on one with the default (`sendfile` on
/// plaintext connections), alternated; throughput and broker CPU-seconds per GB.
fn zero_copy_on_and_off(dir: &Path, records: usize) {
    let rounds = env_num("RAFKA_BENCH_ROUNDS", 3);
    let perf_dir = std::env::var_os("RAFKA_BENCH_PERF").map(std::path::PathBuf::from);
    if let Some(d) = &perf_dir {
        std::fs::create_dir_all(d).unwrap();
    }
    let config = dir.join("bench-copy.yaml");
    std::fs::write(&config, "broker:\n  zero_copy_fetch: false\n").unwrap();
    let servers = [
        (
            "copy",
            Server::rafka_with(
                &dir.join("rafka-copy"),
                &[std::ffi::OsStr::new("--config"), config.as_os_str()],
            ),
        ),
        ("sendfile", Server::rafka(&dir.join("rafka-sendfile"))),
    ];
    let total = records * 1024;
    // Per broker and run: [produce MB/s, produce CPU-s/GB, consume MB/s, consume CPU-s/GB].
    let mut runs: [Vec<[f64; 4]>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        for (i, (label, s)) in servers.iter().enumerate() {
            let topic = format!("zc-{round}");
            create_topic(&s.address, &topic, 1);
            let pid = s.pid().to_string();
            let record = |what: &str| {
                perf_dir.as_ref().and_then(|d| {
                    perf_record(s.pid(), &d.join(format!("{label}-{what}-{round}.data")))
                })
            };
            let perf = record("produce");
            let cpu0 = cpu_seconds(&pid);
            let d = common::librdkafka_produce(&s.address, &topic, records, 1024, "1");
            let produce_cpu = cpu_seconds(&pid) - cpu0;
            perf_stop(perf);
            let perf = record("consume");
            let cpu0 = cpu_seconds(&pid);
            let (_, steady) = consume_with(&s.address, &topic, records, &[]);
            let consume_cpu = cpu_seconds(&pid) - cpu0;
            perf_stop(perf);
            let gb = total as f64 / 1e9;
            let row = [
                total as f64 / d.as_secs_f64() / 1e6,
                produce_cpu / gb,
                total as f64 / steady.as_secs_f64() / 1e6,
                consume_cpu / gb,
            ];
            eprintln!(
                "  {label} run {round}: produce {:.0} MB/s ({:.3} CPU-s/GB), consume {:.0} MB/s ({:.3} CPU-s/GB)",
                row[0], row[1], row[2], row[3]
            );
            runs[i].push(row);
        }
    }
    for (_, s) in servers {
        s.stop("-TERM");
    }
    let col = |i: usize, k: usize| runs[i].iter().map(|r| r[k]).collect::<Vec<_>>();
    let range = median_range;
    println!("records: {records} x 1 KiB per run; two rafka (release, log engine, fsync on_ack_all), one with broker.zero_copy_fetch: false, one with sendfile (the default); librdkafka; medians (ranges) of {rounds} alternated runs");
    println!();
    println!("| workload | copy MB/s | sendfile MB/s | copy broker CPU-s/GB | sendfile broker CPU-s/GB |");
    println!("|---|---:|---:|---:|---:|");
    for (name, k) in [("produce 1 KiB acks=1", 0), ("consume 1 KiB from start", 2)] {
        println!(
            "| {name} | {} | {} | {} | {} |",
            range(&col(0, k), 0),
            range(&col(1, k), 0),
            range(&col(0, k + 1), 3),
            range(&col(1, k + 1), 3),
        );
    }
}

/// `RAFKA_BENCH_ONLY=produce`: produce 1 KiB acks=1 to a fresh topic on this build's broker
/// and, with `RAFKA_BENCH_BASELINE_BIN`, on another build (the one before a change)
/// alternated with it; throughput, broker CPU-seconds per GB and the load average around
/// each run. With `RAFKA_BENCH_PERF=<dir>`, `perf record` samples each broker during each
/// run into `<dir>/<broker>-produce-<round>.data`.
fn produce_against_baseline(dir: &Path, records: usize) {
    let rounds = env_num("RAFKA_BENCH_ROUNDS", 3);
    let perf_dir = std::env::var_os("RAFKA_BENCH_PERF").map(std::path::PathBuf::from);
    if let Some(d) = &perf_dir {
        std::fs::create_dir_all(d).unwrap();
    }
    let mut servers = Vec::new();
    if let Some(bin) = std::env::var_os("RAFKA_BENCH_BASELINE_BIN") {
        let s = Server::rafka_bin(
            &bin,
            &dir.join("rafka-baseline"),
            &[
                std::ffi::OsStr::new("--listen"),
                std::ffi::OsStr::new("127.0.0.1:0"),
            ],
        );
        servers.push(("baseline", s));
    }
    servers.push(("this build", Server::rafka(&dir.join("rafka-this"))));
    let total = records * 1024;
    // Per broker and run: [MB/s, CPU-s/GB, load average before, load average after].
    let mut runs: Vec<Vec<[f64; 4]>> = vec![Vec::new(); servers.len()];
    // The machine's own cost of putting the same bytes in the page cache, each round.
    let mut floor = Vec::new();
    for round in 0..rounds {
        let (mb_s, cpu) = page_cache_write(dir, total);
        eprintln!("  page-cache write round {round}: {mb_s:.0} MB/s, {cpu:.3} CPU-s/GB");
        floor.push(cpu);
        // Each broker goes first in every other round (the one after a run gets the page
        // cache that run just filled to reclaim).
        let mut order: Vec<usize> = (0..servers.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let (label, s) = &servers[i];
            let topic = format!("produce-{round}");
            create_topic(&s.address, &topic, 1);
            let pid = s.pid().to_string();
            let perf = perf_dir.as_ref().and_then(|d| {
                let name = format!("{}-produce-{round}.data", label.replace(' ', "-"));
                perf_record(s.pid(), &d.join(name))
            });
            let load = load_average();
            let cpu0 = cpu_seconds(&pid);
            let d = common::librdkafka_produce(&s.address, &topic, records, 1024, "1");
            let cpu = cpu_seconds(&pid) - cpu0;
            perf_stop(perf);
            let row = [
                total as f64 / d.as_secs_f64() / 1e6,
                cpu / (total as f64 / 1e9),
                load,
                load_average(),
            ];
            eprintln!(
                "  {label} run {round}: {:.0} MB/s, {:.3} CPU-s/GB (load {:.2} → {:.2})",
                row[0], row[1], row[2], row[3]
            );
            runs[i].push(row);
        }
        let _ = std::fs::remove_file(dir.join("page-cache.bin"));
    }
    println!("records: {records} x 1 KiB per run, acks=1, one partition; rafka (release, log engine, fsync on_ack_all); librdkafka; medians (ranges) of {rounds} alternated runs");
    println!();
    println!(
        "the same bytes written to a new file in 1 MiB writes, no fsync (the page cache's own cost), per round: {} CPU-s/GB",
        median_range(&floor, 3)
    );
    println!();
    println!("| broker | MB/s | broker CPU-s/GB | 1-min load average |");
    println!("|---|---:|---:|---:|");
    for ((label, s), runs) in servers.into_iter().zip(&runs) {
        s.stop("-TERM");
        let col = |k: usize| runs.iter().map(|r| r[k]).collect::<Vec<_>>();
        let loads = [col(2), col(3)].concat();
        println!(
            "| {label} | {} | {} | {} |",
            median_range(&col(0), 0),
            median_range(&col(1), 3),
            median_range(&loads, 2),
        );
    }
}

/// The disk's own pace for durable bytes, each round: `dd` writes `total` bytes of zeros to
/// a new file in 1 MiB writes and `fdatasync`s it once at the end (inside the cgroup when
/// there is one); MB/s over the whole, sync included. No broker can make acks=all faster
/// than this on the same disk: every byte it acknowledges is on the disk.
fn disk_floor(dir: &Path, total: usize, cache: Option<&full_cache::FullCache>) -> f64 {
    let path = dir.join("disk-floor.bin");
    let mib = total.div_ceil(1 << 20);
    let dd = format!(
        "dd if=/dev/zero of={} bs=1M count={mib} conv=fdatasync status=none",
        path.display()
    );
    let start = Instant::now();
    let status = full_cache::inside(cache, &dd).status().expect("sh for dd");
    let secs = start.elapsed().as_secs_f64();
    assert!(status.success(), "disk floor: dd failed: {status}");
    let _ = std::fs::remove_file(&path);
    (mib << 20) as f64 / secs / 1e6
}

/// `RAFKA_BENCH_ONLY=preallocate`: produce 1 KiB with acks=1 and acks=all to a topic
/// without and to one with `preallocate=true` (segments reserved up front), alternated on
/// one broker; throughput and broker CPU-seconds per GB; the disk's own pace for the same
/// bytes made durable ([`disk_floor`]) each round, the bound acks=all works under.
fn preallocate_on_and_off(dir: &Path, records: usize) {
    let rounds = env_num("RAFKA_BENCH_ROUNDS", 3);
    let server = Server::rafka(&dir.join("rafka-preallocate"));
    let pid = server.pid().to_string();
    let cache = full_cache::FullCache::from_env(dir, server.pid());
    let total = records * 1024;
    let gb = total as f64 / 1e9;
    // Per (acks, preallocate) and run: [MB/s, CPU-s/GB].
    type Runs<'a> = Vec<((&'a str, bool), Vec<[f64; 2]>)>;
    let mut runs: Runs = Vec::new();
    for acks in ["1", "all"] {
        for on in [false, true] {
            runs.push(((acks, on), Vec::new()));
        }
    }
    let mut disk = Vec::new();
    for round in 0..rounds {
        full_cache::fill(cache.as_ref());
        let floor = disk_floor(dir, total, cache.as_ref());
        eprintln!("  disk floor round {round}: {floor:.0} MB/s (write + one fdatasync)");
        disk.push(floor);
        for (i, ((acks, on), _)) in runs.clone().iter().enumerate() {
            let topic = format!("pa-{acks}-{on}-{round}");
            create_topic_with(
                &server.address,
                &topic,
                &[("preallocate", if *on { "true" } else { "false" })],
            );
            full_cache::fill(cache.as_ref());
            let cpu0 = cpu_seconds(&pid);
            let d = common::librdkafka_produce(&server.address, &topic, records, 1024, acks);
            let cpu = cpu_seconds(&pid) - cpu0;
            let row = [total as f64 / d.as_secs_f64() / 1e6, cpu / gb];
            eprintln!(
                "  acks={acks} preallocate={on} run {round}: {:.0} MB/s, {:.3} CPU-s/GB",
                row[0], row[1]
            );
            runs[i].1.push(row);
        }
    }
    server.stop("-TERM");
    let range = median_range;
    println!("records: {records} x 1 KiB per run; one rafka (release, log engine, fsync on_ack_all), topics with and without preallocate=true; librdkafka; medians (ranges) of {rounds} alternated runs; {}", full_cache::describe(cache.as_ref()));
    println!();
    println!("| workload | preallocate | MB/s | broker CPU-s/GB | MB/s / disk floor |");
    println!("|---|---|---:|---:|---:|");
    println!(
        "| disk floor: dd of the same bytes, one fdatasync | | {} | | |",
        range(&disk, 0)
    );
    for ((acks, on), rows) in &runs {
        let col = |k: usize| rows.iter().map(|r| r[k]).collect::<Vec<_>>();
        // Each run against the floor of its own round.
        let of_floor: Vec<f64> = rows.iter().zip(&disk).map(|(r, d)| r[0] / d).collect();
        println!(
            "| produce 1 KiB acks={acks} | {on} | {} | {} | {} |",
            range(&col(0), 0),
            range(&col(1), 3),
            range(&of_floor, 2)
        );
    }
    // MB/s of every run with these acks, in the same (preallocate, round) order for both.
    let mb_s = |acks: &str| -> Vec<f64> {
        runs.iter()
            .filter(|((a, _), _)| *a == acks)
            .flat_map(|(_, rows)| rows.iter().map(|r| r[0]))
            .collect()
    };
    let (one, all) = (mb_s("1"), mb_s("all"));
    let per_run: Vec<f64> = all.iter().zip(&one).map(|(a, o)| a / o).collect();
    println!();
    println!(
        "acks=all / acks=1 throughput, run by run: {}",
        range(&per_run, 2)
    );
}
