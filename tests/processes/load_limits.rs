//! Load and limits against the `rafka` binary: 2,000 concurrent connections (and the
//! connection cap), a client that never reads its responses, slowloris clients, 10,000
//! partitions, a 100 MiB request, and 40 large requests begun at once against
//! `queued_max_request_bytes`. Throughout each case a probe client produces one
//! record (acks=all) every 100 ms on its own connection and the broker's RSS is sampled
//! from /proc; each case asserts bounds on both and prints the measured figures.
//!
//! Bounds, generous for a shared 2-core machine running a debug build, but far below what
//! a stalled or unbounded broker would show: every probe produce answers within
//! [`PROBE_LATENCY_MAX`]; RSS stays under each case's stated bound.

use crate::common;
use crate::support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, CreateTopicsRequest, MetadataRequest, ProduceRequest, RequestKind,
    ResponseKind,
};
use kafka_protocol::protocol::StrBytes;
use rafka_core::batch::BatchBuilder;
use rafka_core::{Offset, Timestamp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{encode, fetch_request, metadata, produce, topic_name, FetchArgs, KafkaConn};
use support::BrokerProcess;

/// Slowest acceptable probe produce (acks=all, fsync included).
const PROBE_LATENCY_MAX: Duration = Duration::from_secs(2);
const MESSAGE_TOO_LARGE: i16 = 10;
/// What an idle plaintext connection may add to the broker's RSS (4–6 KiB measured; a
/// receive buffer alone would be 64 KiB, a task sized for the TLS handshake 11 KiB).
const IDLE_CONNECTION_KIB_MAX: f64 = 8.0;
/// What an idle TLS connection may add (about 21 KiB measured, rustls's state included;
/// 86 with a receive buffer held).
const IDLE_TLS_CONNECTION_KIB_MAX: f64 = 32.0;

/// The broker binary with `yaml` as its config, in a fresh data directory.
fn broker(yaml: &str) -> (BrokerProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    (broker_in(yaml, dir.path(), &data), dir)
}

fn broker_in(yaml: &str, dir: &std::path::Path, data: &std::path::Path) -> BrokerProcess {
    let cfg = dir.join("rafka.yaml");
    std::fs::write(&cfg, yaml).unwrap();
    BrokerProcess::start_with_config(data, &cfg)
}

fn record_batch(prefix: &str, n: usize, value_bytes: usize) -> Bytes {
    let mut b = BatchBuilder::new(Offset(0));
    for i in 0..n {
        b = b.kv(
            format!("{prefix}-{i}").as_bytes(),
            &vec![b'v'; value_bytes],
            Timestamp(1_000 + i as i64),
        );
    }
    b.build().as_bytes().clone()
}

async fn create(conn: &mut KafkaConn, name: &str, partitions: i32) {
    assert_eq!(
        common::create_topic(conn, name, partitions, &[]).await,
        0,
        "create {name}"
    );
}

/// The probe and the RSS sampler running beside a case.
struct Watch {
    stop: Arc<AtomicBool>,
    probe: tokio::task::JoinHandle<Vec<Duration>>,
    rss: std::thread::JoinHandle<u64>,
}

/// What a case measured.
#[derive(Debug)]
struct Figures {
    probes: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
    rss_max_mib: f64,
}

impl Watch {
    async fn start(broker: &BrokerProcess) -> Watch {
        let mut conn = KafkaConn::connect(&broker.address).await;
        create(&mut conn, "probe", 1).await;
        let stop = Arc::new(AtomicBool::new(false));
        let probe = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let t = Instant::now();
                    let r = produce(&mut conn, "probe", 0, record_batch("probe", 1, 10)).await;
                    assert_eq!(r.error_code, 0, "probe produce");
                    assert_eq!(r.base_offset, i, "probe offsets are contiguous");
                    i += 1;
                    lat.push(t.elapsed());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                lat
            })
        };
        let rss = {
            let stop = stop.clone();
            let pid = broker.child.id();
            std::thread::spawn(move || {
                let mut max = 0;
                while !stop.load(Ordering::SeqCst) {
                    if let Some(kib) = rss_kib(pid) {
                        max = max.max(kib);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                max
            })
        };
        Watch { stop, probe, rss }
    }

    /// Stops watching, prints the figures and checks the bounds.
    async fn finish(self, case: &str, rss_bound_mib: u64) -> Figures {
        self.stop.store(true, Ordering::SeqCst);
        let mut lat = self.probe.await.expect("the probe never failed");
        let rss = self.rss.join().unwrap();
        lat.sort();
        assert!(!lat.is_empty(), "{case}: the probe ran");
        let at = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize];
        let f = Figures {
            probes: lat.len(),
            p50: at(0.5),
            p99: at(0.99),
            max: *lat.last().unwrap(),
            rss_max_mib: rss as f64 / 1024.0,
        };
        eprintln!(
            "{case}: {} probe produces, latency p50 {:?} p99 {:?} max {:?}; broker RSS max \
             {:.1} MiB (bounds: probe max {PROBE_LATENCY_MAX:?}, RSS {rss_bound_mib} MiB)",
            f.probes, f.p50, f.p99, f.max, f.rss_max_mib
        );
        assert!(f.max <= PROBE_LATENCY_MAX, "{case}: probe latency {f:?}");
        assert!(
            f.rss_max_mib < rss_bound_mib as f64,
            "{case}: broker RSS {f:?} over {rss_bound_mib} MiB"
        );
        f
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn api_versions_frame(correlation_id: i32) -> Bytes {
    encode(
        ApiKey::ApiVersions,
        3,
        correlation_id,
        &RequestKind::ApiVersions(
            ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("load"))
                .with_client_software_version(StrBytes::from_static_str("1")),
        ),
    )
}

/// Reads one response frame (the bytes after its size prefix), or `None` on close or
/// when `wait` passes first.
async fn read_frame(s: &mut TcpStream, wait: Duration) -> Option<Bytes> {
    tokio::time::timeout(wait, async {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.ok()?;
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut body).await.ok()?;
        Some(Bytes::from(body))
    })
    .await
    .ok()
    .flatten()
}

/// Reads one response frame and returns its correlation id, or `None` on close/timeout.
async fn read_correlation(s: &mut TcpStream, wait: Duration) -> Option<i32> {
    let frame = read_frame(s, wait).await?;
    Some(i32::from_be_bytes(frame[..4].try_into().unwrap()))
}

/// One request on a new connection, waiting up to 60 s for its answer (for requests that
/// are slow by nature, like creating 1,000 partitions with their files).
async fn send_waiting(addr: &str, key: ApiKey, version: i16, body: RequestKind) -> ResponseKind {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&encode(key, version, 1, &body)).await.unwrap();
    let frame = read_frame(&mut s, Duration::from_secs(60))
        .await
        .unwrap_or_else(|| panic!("no {key:?} response within 60 s"));
    common::decode_response(key, version, 1, frame)
}

/// This process's soft limit on open files, from /proc/self/limits.
fn nofile_soft() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_concurrent_connections() {
    // 2,000 sockets on each side: raise the soft limit when it is lower (the broker, spawned
    // after, inherits it).
    if nofile_soft().is_some_and(|n| n < 8192) {
        let _ = std::process::Command::new("prlimit")
            .args(["--pid", &std::process::id().to_string(), "--nofile=8192:"])
            .status();
    }
    let soft = nofile_soft().unwrap_or(0);
    assert!(
        soft >= 4200,
        "RLIMIT_NOFILE is {soft}: 2,000 connections need about 4,100 descriptors here and in \
         the broker (raise it with `ulimit -n 8192`)"
    );
    let (broker, _dir) = broker("broker:\n  max_connections: 4096\n");
    let watch = Watch::start(&broker).await;
    let pid = broker.child.id();
    let rss_before = rss_kib(pid).expect("broker RSS");
    let started = Instant::now();
    let mut conns = Vec::with_capacity(2000);
    // Opened 50 at a time, each answered once, all kept open.
    for wave in 0..40 {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..50 {
            let addr = broker.address.clone();
            let id = wave * 50 + i;
            set.spawn(async move {
                let mut s = TcpStream::connect(&addr).await.expect("connect");
                s.write_all(&api_versions_frame(id)).await.unwrap();
                let got = read_correlation(&mut s, Duration::from_secs(10)).await;
                assert_eq!(got, Some(id), "connection {id} answered");
                s
            });
        }
        while let Some(s) = set.join_next().await {
            conns.push(s.unwrap());
        }
    }
    let opened = started.elapsed();
    // All 2,000 still served: each answers a second request.
    for (i, s) in conns.iter_mut().enumerate().step_by(97) {
        s.write_all(&api_versions_frame(10_000 + i as i32))
            .await
            .unwrap();
        assert_eq!(
            read_correlation(s, Duration::from_secs(10)).await,
            Some(10_000 + i as i32)
        );
    }
    // An idle connection holds no receive buffer (64 KiB each before they were parked):
    // what 2,000 of them add is their tasks, sessions and sockets' bookkeeping.
    let per_connection_kib =
        rss_kib(pid).expect("broker RSS").saturating_sub(rss_before) as f64 / 2000.0;
    eprintln!(
        "2,000 connections opened and answered in {opened:?}; broker RSS {per_connection_kib:.1} \
         KiB more per idle connection (bound {IDLE_CONNECTION_KIB_MAX} KiB)"
    );
    assert!(
        per_connection_kib < IDLE_CONNECTION_KIB_MAX,
        "{per_connection_kib:.1} KiB per idle connection"
    );
    watch.finish("2,000 connections", 256).await;
    drop(conns);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_wait_until_a_slot_frees() {
    let (broker, _dir) = broker("broker:\n  max_connections: 20\n");
    cap_holds(&broker.address, 20).await;
}

/// `cap` connections are served (each answers a request); the next one is not while they
/// are open (the broker does not accept it), and is as soon as one closes.
async fn cap_holds(addr: &str, cap: i32) {
    let mut held = Vec::new();
    for i in 0..cap {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&api_versions_frame(i)).await.unwrap();
        assert_eq!(
            read_correlation(&mut s, Duration::from_secs(5)).await,
            Some(i),
            "connection {i} of {cap}"
        );
        held.push(s);
    }
    let mut extra = TcpStream::connect(addr).await.unwrap();
    extra.write_all(&api_versions_frame(cap)).await.unwrap();
    assert_eq!(
        read_correlation(&mut extra, Duration::from_secs(1)).await,
        None,
        "a connection over the limit of {cap} is not served"
    );
    drop(held.pop());
    assert_eq!(
        read_correlation(&mut extra, Duration::from_secs(5)).await,
        Some(cap)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unset_max_connections_is_what_the_open_file_limit_leaves() {
    // Started with a soft open-file limit of 200 and a hard one of 1,000: the broker raises
    // its soft limit to 1,000 and, with 16 segment files, 512 descriptors and 128 for the
    // splice pipes set aside, serves 1,000 - 16 - 512 - 128 = 344 connections (64 had it
    // kept the soft 200).
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rafka.yaml");
    std::fs::write(&cfg, "storage:\n  log:\n    max_open_files: 16\n").unwrap();
    let mut cmd = std::process::Command::new("prlimit");
    cmd.arg("--nofile=200:1000")
        .arg(env!("CARGO_BIN_EXE_rafka"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(["--admin-listen", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path().join("data"));
    let broker = BrokerProcess::from_command(cmd);
    cap_holds(&broker.address, 344).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_stops_being_read() {
    let (broker, _dir) = broker("broker:\n  max_connections: 4096\n");
    let mut conn = KafkaConn::connect(&broker.address).await;
    create(&mut conn, "big", 1).await;
    // 8 MiB to fetch: 9 batches of 16 × 60 KB.
    for i in 0..9 {
        let r = produce(
            &mut conn,
            "big",
            0,
            record_batch(&format!("b{i}"), 16, 60_000),
        )
        .await;
        assert_eq!(r.error_code, 0);
    }
    let watch = Watch::start(&broker).await;
    let rss_before = rss_kib(broker.child.id()).unwrap();
    // Fetches of up to 8 MiB each, written until the broker stops taking them (a write
    // that does not finish in 2 s) or 200,000 were sent (about 20 MB of requests, more
    // than the kernel's socket buffers hold).
    let mut fetch_all = FetchArgs::at(0);
    fetch_all.max_bytes = 8 << 20;
    fetch_all.partition_max_bytes = 8 << 20;
    let frame = encode(
        ApiKey::Fetch,
        12,
        1,
        &RequestKind::Fetch(fetch_request("big", Default::default(), 0, fetch_all)),
    );
    let mut greedy = TcpStream::connect(&broker.address).await.unwrap();
    let mut sent = 0;
    let stalled = loop {
        if sent == 200_000 {
            break false;
        }
        match tokio::time::timeout(Duration::from_secs(2), greedy.write_all(&frame)).await {
            Ok(Ok(())) => sent += 1,
            Ok(Err(e)) => panic!("write failed after {sent} requests: {e}"),
            Err(_) => break true,
        }
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = rss_kib(broker.child.id()).unwrap();
    let growth_mib = (rss_after as f64 - rss_before as f64) / 1024.0;
    eprintln!(
        "never-reading client: {sent} fetch requests of 8 MiB written before the broker stopped \
         reading (stalled: {stalled}); broker RSS {:.1} → {:.1} MiB (+{growth_mib:.1})",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0
    );
    assert!(
        stalled,
        "the broker stopped reading from a client that never reads"
    );
    // 16 MiB of queued responses plus the one in hand, not one 8 MiB response per request.
    assert!(growth_mib < 128.0, "RSS grew {growth_mib:.1} MiB");
    // Other clients are served meanwhile (the probe checks latency too).
    let md = metadata(&mut conn, Some(&["big"])).await;
    assert_eq!(md.topics[0].error_code, 0);
    watch.finish("never-reading client", 256).await;
    drop(greedy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_clients_cost_a_slot_each_and_nothing_else() {
    let (broker, _dir) = broker("broker:\n  max_connections: 4096\n");
    let watch = Watch::start(&broker).await;
    // 200 connections each dribble one byte a second for 6 s, then send the rest.
    let mut set = tokio::task::JoinSet::new();
    for id in 0..200 {
        let addr = broker.address.clone();
        set.spawn(async move {
            let frame = api_versions_frame(id);
            let mut s = TcpStream::connect(&addr).await.unwrap();
            for b in &frame[..6] {
                s.write_all(&[*b]).await.unwrap();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            s.write_all(&frame[6..]).await.unwrap();
            read_correlation(&mut s, Duration::from_secs(10)).await
        });
    }
    let mut answered = 0;
    while let Some(r) = set.join_next().await {
        let got = r.unwrap();
        assert!(
            got.is_some(),
            "a slow client is answered once its request is whole"
        );
        answered += 1;
    }
    eprintln!("slowloris: {answered} clients dribbled 1 byte/s for 6 s, all answered");
    watch.finish("slowloris", 256).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_partitions() {
    // Creating a partition costs several fsyncs (about 9 ms each partition on this
    // machine's disk, 90 s for 10,000): on a tmpfs when the test may mount one, so the case
    // measures the broker rather than the disk.
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    let fs = support::Tmpfs::mount(&mnt, "1g");
    let data = match &fs {
        Ok(_) => mnt.join("data"),
        Err(why) => {
            eprintln!("no tmpfs ({why}): 10,000 partitions on disk, expect minutes");
            dir.path().join("data")
        }
    };
    let broker = broker_in("broker:\n  max_connections: 4096\n", dir.path(), &data);
    let watch = Watch::start(&broker).await;
    let started = Instant::now();
    // Ten topics of 1,000 partitions, each request answered within the helper's 5 s.
    for t in 0..10 {
        let topic = CreatableTopic::default()
            .with_name(topic_name(&format!("wide-{t}")))
            .with_num_partitions(1000)
            .with_replication_factor(1);
        let ResponseKind::CreateTopics(r) = send_waiting(
            &broker.address,
            ApiKey::CreateTopics,
            7,
            RequestKind::CreateTopics(
                CreateTopicsRequest::default()
                    .with_topics(vec![topic])
                    .with_timeout_ms(60_000),
            ),
        )
        .await
        else {
            panic!("not a CreateTopics response")
        };
        assert_eq!(r.topics[0].error_code, 0, "wide-{t} created");
    }
    let created = started.elapsed();
    // One produce request writing one record to every 10th partition of every topic.
    let started = Instant::now();
    let topic_data = (0..10)
        .map(|t| {
            TopicProduceData::default()
                .with_name(topic_name(&format!("wide-{t}")))
                .with_partition_data(
                    (0..1000)
                        .step_by(10)
                        .map(|p| {
                            PartitionProduceData::default()
                                .with_index(p)
                                .with_records(Some(record_batch(&format!("w{t}-{p}"), 1, 20)))
                        })
                        .collect(),
                )
        })
        .collect();
    let ResponseKind::Produce(r) = send_waiting(
        &broker.address,
        ApiKey::Produce,
        9,
        RequestKind::Produce(
            ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(60_000)
                .with_topic_data(topic_data),
        ),
    )
    .await
    else {
        panic!("not a Produce response")
    };
    let produced = started.elapsed();
    let codes: Vec<(i16, i64)> = r
        .responses
        .iter()
        .flat_map(|t| t.partition_responses.iter())
        .map(|p| (p.error_code, p.base_offset))
        .collect();
    assert_eq!(codes.len(), 1000);
    assert!(
        codes.iter().all(|c| *c == (0, 0)),
        "every partition took its record"
    );
    // Metadata for all topics lists all 10,000 partitions (plus the probe's).
    let started = Instant::now();
    let md = match send_waiting(
        &broker.address,
        ApiKey::Metadata,
        12,
        RequestKind::Metadata(MetadataRequest::default().with_topics(None)),
    )
    .await
    {
        ResponseKind::Metadata(md) => md,
        _ => panic!("not a Metadata response"),
    };
    let listed = started.elapsed();
    let wide: usize = md
        .topics
        .iter()
        .filter(|t| t.name.as_ref().unwrap().0.starts_with("wide-"))
        .map(|t| t.partitions.len())
        .sum();
    assert_eq!(wide, 10_000);
    eprintln!(
        "10,000 partitions: created in {created:?}, 1,000 partitions produced to in one \
         request in {produced:?}, metadata of all in {listed:?}"
    );
    watch.finish("10,000 partitions", 256).await;
    drop(broker); // before the tmpfs is unmounted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mib_request_is_refused_and_the_broker_carries_on() {
    let (broker, _dir) = broker("broker:\n  max_connections: 4096\n");
    let watch = Watch::start(&broker).await;
    let mut conn = KafkaConn::connect(&broker.address).await;
    create(&mut conn, "huge", 1).await;
    // A Produce request just under the 100 MiB frame limit carrying one 100 MiB batch: read
    // whole, then refused as over message_max_bytes.
    let limit = rafka_core::limits::REQUEST_BYTES_MAX;
    let batch = record_batch("huge", 1, limit - 4096);
    let frame = encode(
        ApiKey::Produce,
        9,
        7,
        &RequestKind::Produce(
            ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(5000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(topic_name("huge"))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch))])]),
        ),
    );
    assert!(frame.len() - 4 <= limit && frame.len() > 99 << 20);
    let started = Instant::now();
    conn.write_raw(&frame).await;
    let resp = conn
        .read_frame()
        .await
        .expect("an answer to the 100 MiB request");
    let ResponseKind::Produce(r) = common::decode_response(ApiKey::Produce, 9, 7, resp) else {
        panic!("not a Produce response")
    };
    let code = r.responses[0].partition_responses[0].error_code;
    assert_eq!(code, MESSAGE_TOO_LARGE, "a 100 MiB batch");
    eprintln!(
        "100 MiB produce answered MESSAGE_TOO_LARGE in {:?}",
        started.elapsed()
    );
    // Nothing was stored, and the connection still works.
    assert_eq!(common::log_end_offset(&mut conn, "huge", 0).await, 0);
    // One byte over the frame limit: closed before the body is read.
    let mut over = KafkaConn::connect(&broker.address).await;
    over.write_raw(&((limit + 1) as u32).to_be_bytes()).await;
    over.write_raw(&[0u8; 1024]).await;
    over.expect_closed().await;
    conn.check_alive().await;
    watch.finish("100 MiB request", 512).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_being_received_hold_at_most_queued_max_request_bytes() {
    // Requests of about 7.7 MB, a budget of three of them (24 MiB); 40 clients each send
    // all of theirs but the last KiB and wait. Without the budget the broker would hold all
    // 40 (over 300 MB); with it three are read, the rest wait unread in the kernel's socket
    // buffers.
    const CLIENTS: usize = 40;
    const PARTITIONS: i32 = 8;
    const RECORDS: i64 = 8;
    let (broker, _dir) = broker(
        "broker:\n  max_connections: 4096\n  socket_request_max_bytes: 8388608\n  \
         queued_max_request_bytes: 25165824\n",
    );
    let mut conn = KafkaConn::connect(&broker.address).await;
    create(&mut conn, "queued", PARTITIONS).await;
    let watch = Watch::start(&broker).await;
    let rss_before = rss_kib(broker.child.id()).unwrap();
    let batch = record_batch("q", RECORDS as usize, 120_000);
    let frame = encode(
        ApiKey::Produce,
        9,
        7,
        &RequestKind::Produce(
            ProduceRequest::default()
                .with_acks(1)
                .with_timeout_ms(30_000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(topic_name("queued"))
                    .with_partition_data(
                        (0..PARTITIONS)
                            .map(|p| {
                                PartitionProduceData::default()
                                    .with_index(p)
                                    .with_records(Some(batch.clone()))
                            })
                            .collect(),
                    )]),
        ),
    );
    assert!(frame.len() > 7_500_000 && frame.len() - 4 <= 8 << 20);
    let (go, ready) = tokio::sync::watch::channel(false);
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (addr, frame, mut ready) = (broker.address.clone(), frame.clone(), ready.clone());
        clients.spawn(async move {
            let mut s = TcpStream::connect(&addr).await.unwrap();
            let tail = frame.len() - 1024;
            s.write_all(&frame[..tail]).await.unwrap();
            ready.wait_for(|go| *go).await.unwrap();
            s.write_all(&frame[tail..]).await.unwrap();
            let answer = read_frame(&mut s, Duration::from_secs(60))
                .await
                .expect("an answer once the request is whole");
            let ResponseKind::Produce(r) = common::decode_response(ApiKey::Produce, 9, 7, answer)
            else {
                panic!("not a Produce response")
            };
            r.responses[0]
                .partition_responses
                .iter()
                .map(|p| (p.index, p.error_code, p.base_offset))
                .collect::<Vec<_>>()
        });
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let rss_held = rss_kib(broker.child.id()).unwrap();
    let growth_mib = (rss_held as f64 - rss_before as f64) / 1024.0;
    // Small requests are not held back by the budget.
    let md = metadata(&mut conn, Some(&["queued"])).await;
    assert_eq!(md.topics[0].error_code, 0);
    eprintln!(
        "queued_max_request_bytes: {CLIENTS} requests of {} bytes begun, budget 24 MiB; broker \
         RSS {:.1} → {:.1} MiB (+{growth_mib:.1})",
        frame.len(),
        rss_before as f64 / 1024.0,
        rss_held as f64 / 1024.0
    );
    assert!(growth_mib < 80.0, "RSS grew {growth_mib:.1} MiB");
    // Every request, once whole, is read and appended in turn.
    go.send(true).unwrap();
    let mut bases: Vec<Vec<i64>> = vec![Vec::new(); PARTITIONS as usize];
    while let Some(r) = clients.join_next().await {
        let partitions = r.unwrap();
        assert_eq!(partitions.len(), PARTITIONS as usize);
        for (index, code, base) in partitions {
            assert_eq!(code, 0, "partition {index}");
            bases[index as usize].push(base);
        }
    }
    for (p, b) in bases.iter_mut().enumerate() {
        b.sort();
        let expected: Vec<i64> = (0..CLIENTS as i64).map(|i| i * RECORDS).collect();
        assert_eq!(
            *b, expected,
            "partition {p}: one batch of each client, in turn"
        );
        assert_eq!(
            common::log_end_offset(&mut conn, "queued", p as i32).await,
            CLIENTS as i64 * RECORDS
        );
    }
    watch.finish("queued_max_request_bytes", 256).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_the_in_flight_bound_are_all_answered_after_a_half_close() {
    // 300 pipelined requests in one write, then EOF: more than the 64 the broker decodes
    // ahead, so most wait in its buffer; every one is still answered, in order.
    let (broker, _dir) = broker("broker:\n  max_connections: 4096\n");
    let mut s = TcpStream::connect(&broker.address).await.unwrap();
    let mut all = Vec::new();
    for id in 0..300 {
        all.extend_from_slice(&api_versions_frame(id));
    }
    s.write_all(&all).await.unwrap();
    s.shutdown().await.unwrap();
    for id in 0..300 {
        assert_eq!(
            read_correlation(&mut s, Duration::from_secs(5)).await,
            Some(id),
            "response {id} of 300"
        );
    }
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "then the broker closes");
}

/// A throwaway CA and a certificate for 127.0.0.1 it signed, as PEM: (CA, certificate, key).
fn tls_material() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// One request on a TLS stream and its answer.
async fn tls_request<S>(
    s: &mut S,
    key: ApiKey,
    version: i16,
    id: i32,
    body: RequestKind,
) -> ResponseKind
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    s.write_all(&encode(key, version, id, &body)).await.unwrap();
    s.flush().await.unwrap();
    let frame = tokio::time::timeout(Duration::from_secs(10), async {
        let n = s.read_u32().await.unwrap();
        let mut body = vec![0u8; n as usize];
        s.read_exact(&mut body).await.unwrap();
        Bytes::from(body)
    })
    .await
    .expect("answered within 10 s");
    common::decode_response(key, version, id, frame)
}

/// The broker binary with one `SSL` listener, and a client for it.
struct TlsBroker {
    broker: BrokerProcess,
    connector: tokio_rustls::TlsConnector,
    _dir: tempfile::TempDir,
}

impl TlsBroker {
    fn start() -> TlsBroker {
        use rustls_pki_types::pem::PemObject;
        use tokio_rustls::rustls;
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = tls_material();
        std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
        std::fs::write(dir.path().join("key.pem"), key).unwrap();
        let cfg = dir.path().join("rafka.yaml");
        std::fs::write(
            &cfg,
            format!(
                "broker:\n  listeners:\n    - name: SSL\n      listen: 127.0.0.1:0\n      \
                 security_protocol: SSL\n      ssl:\n        certificate: {}\n        \
                 key: {}\n",
                dir.path().join("cert.pem").display(),
                dir.path().join("key.pem").display()
            ),
        )
        .unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rafka"));
        cmd.args(["serve", "--admin-listen", "127.0.0.1:0", "--config"])
            .arg(&cfg)
            .arg("--data-dir")
            .arg(dir.path().join("data"));
        let broker = BrokerProcess::from_command(cmd);
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls_pki_types::CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
            .unwrap();
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        TlsBroker {
            broker,
            connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
            _dir: dir,
        }
    }

    async fn connect(&self) -> tokio_rustls::client::TlsStream<TcpStream> {
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let tcp = TcpStream::connect(&self.broker.address).await.unwrap();
        self.connector
            .connect(name, tcp)
            .await
            .expect("TLS handshake")
    }

    /// Produces `batch` to partition 0 of `topic` through `s` (acks=1); the partition's
    /// error code and base offset.
    async fn produce(
        &self,
        s: &mut tokio_rustls::client::TlsStream<TcpStream>,
        topic: &str,
        batch: Bytes,
        correlation_id: i32,
    ) -> (i16, i64) {
        let req = ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch))])]);
        let ResponseKind::Produce(r) = tls_request(
            s,
            ApiKey::Produce,
            9,
            correlation_id,
            RequestKind::Produce(req),
        )
        .await
        else {
            panic!("not a Produce answer")
        };
        let p = &r.responses[0].partition_responses[0];
        (p.error_code, p.base_offset)
    }

    /// Creates a topic of one partition through `s`.
    async fn create(&self, s: &mut tokio_rustls::client::TlsStream<TcpStream>, topic: &str) {
        let created = tls_request(
            s,
            ApiKey::CreateTopics,
            5,
            1,
            RequestKind::CreateTopics(CreateTopicsRequest::default().with_topics(vec![
                CreatableTopic::default()
                    .with_name(topic_name(topic))
                    .with_num_partitions(1)
                    .with_replication_factor(1),
            ])),
        )
        .await;
        let ResponseKind::CreateTopics(created) = created else {
            panic!("not a CreateTopics answer")
        };
        assert_eq!(created.topics[0].error_code, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tls_connections_hold_no_receive_buffer() {
    let tls = TlsBroker::start();
    let broker = &tls.broker;
    let connect = || tls.connect();
    let mut first = connect().await;
    tls.create(&mut first, "t").await;

    let pid = broker.child.id();
    let rss_before = rss_kib(pid).expect("broker RSS");
    let mut idle = Vec::new();
    for i in 0..500 {
        let mut s = connect().await;
        let ResponseKind::ApiVersions(v) = tls_request(
            &mut s,
            ApiKey::ApiVersions,
            3,
            i,
            RequestKind::ApiVersions(ApiVersionsRequest::default()),
        )
        .await
        else {
            panic!("not an ApiVersions answer")
        };
        assert_eq!(v.error_code, 0);
        idle.push(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let per_connection_kib =
        rss_kib(pid).expect("broker RSS").saturating_sub(rss_before) as f64 / 500.0;
    eprintln!(
        "500 idle TLS connections: broker RSS {per_connection_kib:.1} KiB more per connection \
         (bound {IDLE_TLS_CONNECTION_KIB_MAX} KiB)"
    );
    assert!(
        per_connection_kib < IDLE_TLS_CONNECTION_KIB_MAX,
        "{per_connection_kib:.1} KiB per idle TLS connection"
    );

    // Requests far larger than the first read an idle TLS connection makes: whole and in
    // order, on connections that had been idle.
    for (n, s) in idle.iter_mut().step_by(50).enumerate() {
        let batch = record_batch(&format!("tls{n}"), 100, 1000);
        let produced = tls.produce(s, "t", batch, 1000 + n as i32).await;
        assert_eq!(produced, (0, 100 * n as i64));
    }
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_fetch_answer_is_sent_from_the_files_not_held_whole() {
    // 40 MB in 40 batches, fetched whole over TLS: the records are read from the segment a
    // piece at a time as they are encrypted, so the broker does not grow by the answer.
    let tls = TlsBroker::start();
    let mut s = tls.connect().await;
    tls.create(&mut s, "big").await;
    for i in 0..40 {
        let batch = record_batch(&format!("b{i}"), 10, 100_000);
        let produced = tls.produce(&mut s, "big", batch, 10 + i).await;
        assert_eq!(produced, (0, 10 * i as i64));
    }
    let pid = tls.broker.child.id();
    let mut args = FetchArgs::at(0);
    args.max_bytes = 48 << 20;
    args.partition_max_bytes = 48 << 20;
    let mut grown_kib = 0;
    for round in 0..3 {
        let rss_before = rss_kib(pid).expect("broker RSS");
        let fetched = tls_request(
            &mut s,
            ApiKey::Fetch,
            12,
            100 + round,
            RequestKind::Fetch(fetch_request("big", Default::default(), 0, args)),
        )
        .await;
        grown_kib = grown_kib.max(rss_kib(pid).expect("broker RSS").saturating_sub(rss_before));
        let ResponseKind::Fetch(f) = fetched else {
            panic!("not a Fetch answer")
        };
        let p = &f.responses[0].partitions[0];
        assert_eq!((p.error_code, p.high_watermark), (0, 400));
        let (bases, records) = common::decode_records(p.records.clone());
        assert_eq!(bases, (0..40).map(|i| 10 * i).collect::<Vec<i64>>());
        assert_eq!(records.len(), 400);
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.offset, i as i64);
            assert_eq!(r.key, format!("b{}-{}", i / 10, i % 10));
            assert_eq!(r.value.len(), 100_000);
        }
    }
    eprintln!("40 MB fetched whole over TLS three times: broker RSS grew at most {grown_kib} KiB");
    assert!(
        grown_kib < 16 * 1024,
        "the broker grew {grown_kib} KiB for a 40 MB answer"
    );
}
