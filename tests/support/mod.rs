//! Shared helpers for the tests that drive Rafka with librdkafka (the `rdkafka` crate) and
//! with the `rafka` binary as a child process.

#![allow(dead_code)]

pub mod postgres;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rafka_broker::{Broker, Config};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};

/// An in-process broker on a free port, storing in `dir`.
pub async fn start_broker(dir: &Path) -> Broker {
    start_broker_with(dir, |_| {}).await
}

/// An in-process broker on a free port storing in `dir` with the engine `storage_type`
/// (`log`, `memory`, `rocksdb`).
pub async fn start_broker_on(dir: &Path, storage_type: &str) -> Broker {
    start_broker_with(dir, |c| c.storage.storage_type = storage_type.to_string()).await
}

/// An in-process broker with configuration changes (e.g. group timings).
pub async fn start_broker_with(dir: &Path, configure: impl FnOnce(&mut Config)) -> Broker {
    log_to_test_output();
    let mut cfg = Config::default();
    cfg.broker.listen = "127.0.0.1:0".into();
    cfg.storage.path = dir.to_path_buf();
    configure(&mut cfg);
    Broker::start(cfg).await.expect("broker starts")
}

/// Broker logs go to the test's output; RUST_LOG picks the level (default: warnings). The
/// process-wide subscriber: the first call installs it, later ones keep it. A test that reads
/// the log uses a [`LogCapture`] instead, which takes precedence on its runtime's threads.
pub fn log_to_test_output() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
}

/// The log lines (level `warn` and above, no colours) of the brokers one test runs, for
/// checks on what an operator would read. Per test, not per process: the broker runs on
/// [`LogCapture::runtime`], whose threads (workers, blocking pool, and the thread that
/// calls `block_on`) log here, so other tests' brokers in the same test binary never show
/// up in it, and the process-wide subscriber never sees these lines.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    /// A multi-thread runtime (2 workers) whose threads log to this capture.
    pub fn runtime(&self) -> CapturedRuntime {
        let writer = self.clone();
        let dispatch = tracing::Dispatch::new(
            tracing_subscriber::fmt()
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .with_env_filter("warn")
                .finish(),
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .on_thread_start({
                let d = dispatch.clone();
                // The guard lives as long as the thread: the thread belongs to the runtime.
                move || std::mem::forget(tracing::dispatcher::set_default(&d))
            })
            .build()
            .expect("runtime");
        CapturedRuntime { runtime, dispatch }
    }

    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The captured lines that contain `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    }
}

/// A runtime whose threads log to a [`LogCapture`].
pub struct CapturedRuntime {
    runtime: tokio::runtime::Runtime,
    dispatch: tracing::Dispatch,
}

impl CapturedRuntime {
    /// Runs `future` to completion; the calling thread logs to the capture meanwhile.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        let _guard = tracing::dispatcher::set_default(&self.dispatch);
        self.runtime.block_on(future)
    }
}

/// Waits for the startup line of a `rafka serve` child spawned with a piped stdout;
/// returns the line and the Kafka address in it ("rafka listening on ADDR ...").
pub fn startup_line(child: &mut Child) -> (String, String) {
    let stdout = child.stdout.take().expect("stdout piped");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("startup line");
    let address = line
        .split_whitespace()
        .skip_while(|w| *w != "on")
        .nth(1)
        .unwrap_or_else(|| panic!("no address in startup line {line:?}"))
        .to_string();
    (line, address)
}

/// The `rafka` binary running as a child process.
pub struct BrokerProcess {
    /// The child.
    pub child: Child,
    /// `host:port` it listens on.
    pub address: String,
}

impl BrokerProcess {
    /// Starts `rafka serve` on a free port with `dir` as data directory and waits for its
    /// startup line.
    pub fn start(dir: &Path) -> BrokerProcess {
        Self::spawn(dir, &[])
    }

    /// Like [`BrokerProcess::start`], with the storage engine `storage_type`.
    pub fn start_on(dir: &Path, storage_type: &str) -> BrokerProcess {
        Self::spawn(dir, &["--storage-type", storage_type])
    }

    /// Like [`BrokerProcess::start`], with the YAML config file `config` (its listener and
    /// data directory are overridden).
    pub fn start_with_config(dir: &Path, config: &Path) -> BrokerProcess {
        Self::spawn(dir, &["--config", config.to_str().expect("utf-8 path")])
    }

    /// The child's resident set size (`VmRSS` in `/proc/<pid>/status`), in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    fn spawn(dir: &Path, extra_args: &[&str]) -> BrokerProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rafka"));
        // No fixed admin port either: test binaries run side by side.
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir)
        .args(extra_args);
        Self::from_command(cmd)
    }

    /// The broker `cmd` starts (the binary and its arguments, or a wrapper such as
    /// `prlimit` around them), once it printed its startup line.
    pub fn from_command(mut cmd: Command) -> BrokerProcess {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn rafka");
        let (_, address) = startup_line(&mut child);
        BrokerProcess { child, address }
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: std::time::Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no shutdown, no flush, no clean marker.
    pub fn kill(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client config pointing at `bootstrap`, quiet and quick to notice changes.
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .set("log_level", "3");
    c
}

/// A producer with the given extra settings.
pub fn producer(bootstrap: &str, extra: &[(&str, &str)]) -> FutureProducer {
    let mut c = client_config(bootstrap);
    c.set("linger.ms", "5").set("message.timeout.ms", "30000");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().expect("producer")
}

/// An admin client.
pub fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    client_config(bootstrap).create().expect("admin client")
}

/// Creates a topic through the admin API and checks the result.
pub async fn create_topic(bootstrap: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin = admin(bootstrap);
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    let res = admin
        .create_topics(&[topic], &AdminOptions::new())
        .await
        .expect("create_topics request");
    assert_eq!(res.len(), 1);
    res[0].as_ref().expect("topic created");
}

/// One consumed message, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value.
    pub value: Option<Vec<u8>>,
    /// Headers in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Timestamp in ms, if any.
    pub timestamp: Option<i64>,
}

/// Reads `count` messages from `partitions` of `topic` from the beginning with a
/// sessionless assign (no consumer group). Blocking: call from `spawn_blocking`.
pub fn consume(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    count: usize,
    timeout: Duration,
) -> Vec<Received> {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", "rafka-test-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + timeout;
    let mut idle_since = Instant::now();
    let mut out = Vec::new();
    while out.len() < count && Instant::now() < deadline {
        // With no known count (usize::MAX), read until the partitions go quiet.
        if count == usize::MAX && !out.is_empty() && idle_since.elapsed() > Duration::from_secs(2) {
            break;
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(e)) => panic!("consumer error: {e}"),
            Some(Ok(m)) => {
                idle_since = Instant::now();
                out.push(Received {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers: m
                        .headers()
                        .map(|hs| {
                            hs.iter()
                                .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                                .collect()
                        })
                        .unwrap_or_default(),
                    timestamp: m.timestamp().to_millis(),
                });
            }
        }
    }
    // Anything beyond `count` would be a duplicate or a stray: poll briefly for it.
    if out.len() == count {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(300)) {
            panic!(
                "unexpected extra message at {}:{}",
                m.partition(),
                m.offset()
            );
        }
    }
    out
}

/// A group member polling on its own thread: records what it consumed as (partition,
/// offset, value) and commits each message synchronously after "processing" it, and keeps
/// its current assignment for the test to look at. Dropping it closes the consumer.
pub struct GroupMember {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<(i32, i64, String)>>>,
    assignment: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<i32>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl GroupMember {
    /// Subscribes a consumer built from `cfg` (with `ctx`) to `topic` and starts polling.
    pub fn start<C: ConsumerContext + 'static>(
        cfg: &ClientConfig,
        topic: &str,
        ctx: C,
    ) -> GroupMember {
        use std::sync::atomic::Ordering;
        let consumer: BaseConsumer<C> = cfg.create_with_context(ctx).expect("consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let assignment =
            std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
        let thread = {
            let (stop, seen, assignment) = (stop.clone(), seen.clone(), assignment.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
                        let v =
                            String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
                        seen.lock().unwrap().push((m.partition(), m.offset(), v));
                        consumer
                            .commit_message(&m, CommitMode::Sync)
                            .expect("commit");
                    }
                    if let Ok(a) = consumer.assignment() {
                        *assignment.lock().unwrap() =
                            a.elements().iter().map(|e| e.partition()).collect();
                    }
                }
                drop(consumer); // close: LeaveGroup for dynamic members
            })
        };
        GroupMember {
            stop,
            seen,
            assignment,
            thread: Some(thread),
        }
    }

    /// Partitions assigned now.
    pub fn assignment(&self) -> std::collections::BTreeSet<i32> {
        self.assignment.lock().unwrap().clone()
    }

    /// Everything consumed so far.
    pub fn seen(&self) -> Vec<(i32, i64, String)> {
        self.seen.lock().unwrap().clone()
    }

    /// Stops polling, closes the consumer and returns everything it consumed.
    pub fn stop(mut self) -> Vec<(i32, i64, String)> {
        self.halt();
        self.seen()
    }

    fn halt(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for GroupMember {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The values of consumed messages.
pub fn values(seen: &[(i32, i64, String)]) -> Vec<String> {
    seen.iter().map(|(_, _, v)| v.clone()).collect()
}

/// Waits (polling every 50 ms) until `cond` holds; panics naming `what` after `timeout`.
pub async fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Produces `m-{i}` for every `i` in `range`, message `i` to partition `i % partitions`,
/// and waits until all are acknowledged.
pub async fn produce_numbered(
    addr: &str,
    topic: &str,
    partitions: i32,
    range: std::ops::Range<usize>,
) {
    let p = producer(addr, &[]);
    let mut pending = Vec::new();
    for i in range {
        let v = format!("m-{i}");
        let record = rdkafka::producer::FutureRecord::<(), _>::to(topic)
            .payload(&v)
            .partition((i % partitions as usize) as i32);
        pending.push(p.send_result(record).expect("queue has room"));
    }
    for f in pending {
        f.await.expect("delivery future").expect("delivered");
    }
}

/// A tmpfs of `size` at `at`, unmounted on drop. Mounting needs root: `mount` fails with
/// its reason otherwise.
pub struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    pub fn mount(at: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}
