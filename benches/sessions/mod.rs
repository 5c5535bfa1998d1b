//! `RAFKA_BENCH_ONLY=sessions`: what a Fetch of 1,000 partitions costs the broker when
//! nothing is new, with a KIP-227 session and without (issue 22: fetch-session cost).
//!
//! `benches/many/fetch_sessions.py` measures the same through kafka-python, whose own
//! speed bounds it to 7–25 fetches a second, so its CPU per fetch moves with the client.
//! Here one raw connection (Fetch v12, topics by name) asks back to back, as fast as the
//! broker answers: `max_wait_ms` 0, so every fetch is answered at once and all the time
//! measured is the broker's work and the loopback's. The partitions hold one record each
//! and the fetch offsets are at their ends (a consumer that has caught up: the common
//! state of a large consumer's partitions).
//!
//! Per layout (one topic of 1,000 partitions; 1,000 topics of one) and broker (this
//! build, and with `RAFKA_BENCH_BASELINE_BIN` another, alternated every round,
//! `RAFKA_BENCH_ROUNDS` rounds, default 3):
//! - incremental: a full fetch opens the session, then `RAFKA_BENCH_FETCHES` (default
//!   5,000) empty incremental fetches of it;
//! - sessionless: a fifth as many fetches naming all 1,000 partitions (session id 0,
//!   epoch -1), the cost every fetch had before KIP-227;
//! - one partition: as many sessionless fetches of one partition as incremental ones
//!   (the per-request floor: framing, decoding, the runtime and the loopback).
//!
//! `RAFKA_BENCH_TOPICS=1` or `=1000` runs one layout only.
//!
//! Broker CPU (utime + stime from `/proc`) per fetch in µs, answer bytes per fetch.
//! Checks every answer: error code 0, the session id kept, no partition in an
//! incremental answer, all 1,000 in a sessionless one.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::{cpu_seconds, env_num, load_average, median_range, Server};

const VERSION: i16 = 12;
const PARTITIONS: usize = 1000;

/// One raw Kafka connection, a request at a time.
struct Conn {
    stream: TcpStream,
    correlation: i32,
}

impl Conn {
    fn new(addr: &str) -> Conn {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Conn {
            stream,
            correlation: 0,
        }
    }

    /// Sends `req` and returns (its answer, the answer's size on the wire).
    fn fetch(&mut self, req: &FetchRequest) -> (FetchResponse, usize) {
        self.correlation += 1;
        let mut buf = bytes::BytesMut::with_capacity(64);
        buf.extend_from_slice(&[0; 4]);
        RequestHeader::default()
            .with_request_api_key(ApiKey::Fetch as i16)
            .with_request_api_version(VERSION)
            .with_correlation_id(self.correlation)
            .encode(&mut buf, ApiKey::Fetch.request_header_version(VERSION))
            .unwrap();
        req.encode(&mut buf, VERSION).unwrap();
        let n = (buf.len() - 4) as u32;
        buf[..4].copy_from_slice(&n.to_be_bytes());
        self.stream.write_all(&buf).unwrap();
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).unwrap();
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut body).unwrap();
        let size = body.len() + 4;
        let mut body = bytes::Bytes::from(body);
        let h = ResponseHeader::decode(&mut body, ApiKey::Fetch.response_header_version(VERSION))
            .unwrap();
        assert_eq!(h.correlation_id, self.correlation);
        (FetchResponse::decode(&mut body, VERSION).unwrap(), size)
    }
}

/// The partitions of a layout, as (topic, partition): topics `s0`.. of 1,000 / `topics`
/// partitions each.
fn layout(topics: usize) -> Vec<(String, i32)> {
    assert!(
        topics > 0 && PARTITIONS.is_multiple_of(topics),
        "RAFKA_BENCH_TOPICS must divide {PARTITIONS}"
    );
    let per_topic = (PARTITIONS / topics) as i32;
    (0..topics)
        .flat_map(|t| (0..per_topic).map(move |p| (format!("s{t}"), p)))
        .collect()
}

/// A fetch of `parts` at offset 1 (their ends), answered at once.
fn request(parts: &[(String, i32)], session_id: i32, epoch: i32) -> FetchRequest {
    let topics = parts
        .chunk_by(|a, b| a.0 == b.0)
        .map(|run| {
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(run[0].0.clone())))
                .with_partitions(
                    run.iter()
                        .map(|(_, p)| {
                            FetchPartition::default()
                                .with_partition(*p)
                                .with_fetch_offset(1)
                                .with_partition_max_bytes(1 << 20)
                        })
                        .collect(),
                )
        })
        .collect();
    FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(50 << 20)
        .with_session_id(session_id)
        .with_session_epoch(epoch)
        .with_topics(topics)
}

fn n_partitions(r: &FetchResponse) -> usize {
    r.responses.iter().map(|t| t.partitions.len()).sum()
}

/// Creates the layout's topics (as the scale bench names them) and puts one record in
/// every partition.
fn fill(addr: &str, parts: &[(String, i32)], topics: usize) {
    super::scale::create_all(addr, topics, (PARTITIONS / topics) as i32);
    let rt = super::current_thread_runtime();
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("linger.ms", "5")
        .create()
        .unwrap();
    rt.block_on(async {
        let sends: Vec<_> = parts
            .iter()
            .map(|(t, part)| {
                p.send(
                    FutureRecord::<(), _>::to(t)
                        .payload(&b"r"[..])
                        .partition(*part),
                    Duration::from_secs(60),
                )
            })
            .collect();
        for s in sends {
            s.await.unwrap_or_else(|(e, _)| panic!("produce: {e}"));
        }
    });
}

/// Broker CPU-µs per fetch and answer bytes per fetch of `n` fetches made by `next`.
fn measure(pid: &str, n: usize, mut next: impl FnMut(usize) -> usize) -> (f64, f64) {
    let cpu0 = cpu_seconds(pid);
    let bytes: usize = (0..n).map(&mut next).sum();
    let cpu = cpu_seconds(pid) - cpu0;
    (cpu * 1e6 / n as f64, bytes as f64 / n as f64)
}

/// One round on one broker: (incremental, sessionless, one partition) figures.
fn round(bin: &std::ffi::OsStr, dir: &Path, topics: usize, fetches: usize) -> [(f64, f64); 3] {
    let _ = std::fs::remove_dir_all(dir);
    let s = Server::rafka_bin(
        bin,
        dir,
        &[
            std::ffi::OsStr::new("--listen"),
            std::ffi::OsStr::new("127.0.0.1:0"),
        ],
    );
    let parts = layout(topics);
    fill(&s.address, &parts, topics);
    let pid = s.pid().to_string();
    let mut c = Conn::new(&s.address);

    let (opened, _) = c.fetch(&request(&parts, 0, 0));
    assert_eq!(opened.error_code, 0);
    assert_ne!(opened.session_id, 0, "the broker opened no session");
    assert_eq!(n_partitions(&opened), PARTITIONS);
    let id = opened.session_id;
    let incremental = measure(&pid, fetches, |i| {
        let (r, size) = c.fetch(&request(&[], id, i as i32 + 1));
        assert_eq!((r.error_code, r.session_id), (0, id));
        assert_eq!(n_partitions(&r), 0, "nothing new, yet partitions answered");
        size
    });

    let full = request(&parts, 0, -1);
    let sessionless = measure(&pid, fetches / 5, |_| {
        let (r, size) = c.fetch(&full);
        assert_eq!((r.error_code, r.session_id), (0, 0));
        assert_eq!(n_partitions(&r), PARTITIONS);
        size
    });

    let one = request(&parts[..1], 0, -1);
    let single = measure(&pid, fetches, |_| {
        let (r, size) = c.fetch(&one);
        assert_eq!((r.error_code, n_partitions(&r)), (0, 1));
        size
    });
    s.stop("-TERM");
    let _ = std::fs::remove_dir_all(dir);
    [incremental, sessionless, single]
}

pub fn run(dir: &Path) {
    let rounds = env_num("RAFKA_BENCH_ROUNDS", 3);
    let fetches = env_num("RAFKA_BENCH_FETCHES", 5000).max(5);
    let mut builds = vec![("this build", super::rafka_binary())];
    if let Some(b) = std::env::var_os("RAFKA_BENCH_BASELINE_BIN") {
        builds.push(("baseline", b));
    }
    let load = load_average();
    println!(
        "\nFetch of 1,000 caught-up partitions, broker CPU-µs per fetch (load average {load:.1}, \
         {rounds} rounds, {fetches} incremental fetches each)\n"
    );
    println!("| topics × partitions | build | incremental (session) | sessionless, 1,000 partitions | sessionless, 1 partition | answer bytes: incremental / sessionless |");
    println!("|---|---|---:|---:|---:|---:|");
    let layouts: Vec<usize> = match env_num("RAFKA_BENCH_TOPICS", 0) {
        0 => vec![1, PARTITIONS],
        t => vec![t],
    };
    for topics in layouts {
        // cpu[build][kind] over rounds; answer sizes of the last round (the same in every one)
        let mut cpu = vec![vec![Vec::new(); 3]; builds.len()];
        let mut bytes = vec![[0.0; 3]; builds.len()];
        for r in 0..rounds {
            for (b, (name, bin)) in builds.iter().enumerate() {
                eprintln!("sessions: {topics} topic(s), {name}, round {}", r + 1);
                let got = round(bin, &dir.join("sessions"), topics, fetches);
                for (k, (us, size)) in got.into_iter().enumerate() {
                    cpu[b][k].push(us);
                    bytes[b][k] = size;
                }
            }
        }
        for (b, (name, _)) in builds.iter().enumerate() {
            println!(
                "| {topics} × {} | {name} | {} | {} | {} | {:.0} / {:.0} |",
                PARTITIONS / topics,
                median_range(&cpu[b][0], 0),
                median_range(&cpu[b][1], 0),
                median_range(&cpu[b][2], 0),
                bytes[b][0],
                bytes[b][1]
            );
        }
    }
}
