//! `RAFKA_BENCH_ONLY=connections`: what idle connections cost the broker, and whether the
//! work of one busy client stays the same beside them (issue 22: cost flat as connections
//! grow).
//!
//! Per round and broker (this build, and with `RAFKA_BENCH_BASELINE_BIN` another,
//! alternated, `RAFKA_BENCH_ROUNDS` rounds, default 3), on a fresh broker:
//! 1. alone: librdkafka produces `RAFKA_BENCH_RECORDS` records of 1 KiB with acks=1 to one
//!    partition (MB/s, broker CPU-s per GB), then one raw connection sends 2,000 one-record
//!    produce requests (acks=1) one at a time (round-trip p50 and p99);
//! 2. `RAFKA_BENCH_CONNECTIONS` (default 4,000; the broker's cap before session 34 was
//!    4,096, and `max_connections` is set to at least that) connections open, each asks
//!    ApiVersions and Metadata once and then stays open and idle: broker RSS and CPU per
//!    connection;
//! 3. the same two workloads again beside them.
//!
//! Each idle connection is checked once more at the end (answers a second ApiVersions):
//! all were served, not waiting in the listen backlog.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};

use super::{cpu_seconds, create_topic, env_num, load_average, median_range, status_mib, Server};

/// Raw requests, by hand: `api key`, `version`, correlation id, client id `bench`.
fn frame(key: i16, version: i16, correlation: i32, flexible: bool, body: &[u8]) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_i32(0);
    b.put_i16(key);
    b.put_i16(version);
    b.put_i32(correlation);
    b.put_i16(5);
    b.put_slice(b"bench");
    if flexible {
        b.put_u8(0); // header tagged fields
    }
    b.put_slice(body);
    let n = (b.len() - 4) as i32;
    b[..4].copy_from_slice(&n.to_be_bytes());
    b.to_vec()
}

/// ApiVersions v3 (client software name and version, compact strings).
fn api_versions(correlation: i32) -> Vec<u8> {
    frame(18, 3, correlation, true, b"\x06bench\x021\x00")
}

/// Metadata v1 for all topics (a null topic array).
fn metadata(correlation: i32) -> Vec<u8> {
    frame(3, 1, correlation, false, &(-1i32).to_be_bytes())
}

/// Produce v3, acks=1, one batch of one 100-byte record to partition 0 of `topic`.
fn produce_one(correlation: i32, topic: &str, i: usize) -> Vec<u8> {
    let batch = rafka_core::batch::BatchBuilder::new(rafka_core::Offset(0))
        .kv(
            format!("k{i}").as_bytes(),
            &[b'v'; 100],
            rafka_core::Timestamp(1_000 + i as i64),
        )
        .build();
    let records = batch.as_bytes();
    let mut b = BytesMut::new();
    b.put_i16(-1); // transactional id: null
    b.put_i16(1); // acks
    b.put_i32(30_000);
    b.put_i32(1);
    b.put_i16(topic.len() as i16);
    b.put_slice(topic.as_bytes());
    b.put_i32(1);
    b.put_i32(0);
    b.put_i32(records.len() as i32);
    b.put_slice(records);
    frame(0, 3, correlation, false, &b)
}

/// Reads one answer and returns its correlation id.
fn answer(s: &mut TcpStream) -> i32 {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("answer length");
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).expect("answer");
    i32::from_be_bytes(body[..4].try_into().unwrap())
}

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

/// Round trips of 2,000 one-record produces, one at a time: (p50, p99) in µs.
fn probe(addr: &str, topic: &str) -> (f64, f64) {
    let mut s = connect(addr);
    let mut took = Vec::with_capacity(2000);
    for i in 0..2000 {
        let t = Instant::now();
        s.write_all(&produce_one(i as i32, topic, i)).unwrap();
        assert_eq!(answer(&mut s), i as i32);
        took.push(t.elapsed().as_secs_f64() * 1e6);
    }
    took.sort_by(|a, b| a.total_cmp(b));
    (took[took.len() / 2], took[took.len() * 99 / 100])
}

/// The busy client's figures: produce MB/s, broker CPU-s per GB, probe p50 and p99 µs.
fn busy(s: &Server, topic: &str, records: usize) -> [f64; 4] {
    let pid = s.pid().to_string();
    let cpu0 = cpu_seconds(&pid);
    let took = super::common::librdkafka_produce(&s.address, topic, records, 1024, "1");
    let cpu = cpu_seconds(&pid) - cpu0;
    let gb = (records * 1024) as f64 / 1e9;
    let (p50, p99) = probe(&s.address, topic);
    [gb * 1e3 / took.as_secs_f64(), cpu / gb, p50, p99]
}

/// One round on one broker: alone, the idle connections' cost, and beside them.
fn round(
    bin: &std::ffi::OsStr,
    dir: &Path,
    records: usize,
    idle: usize,
) -> ([f64; 4], [f64; 2], [f64; 4]) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    // Above the old cap, the limit is set (the default, from the open-file limit, counts
    // three descriptors per connection and may be lower).
    let config = dir.join("rafka.yaml");
    std::fs::write(
        &config,
        format!("broker:\n  max_connections: {}\n", (idle + 64).max(4096)),
    )
    .unwrap();
    let s = Server::rafka_bin(
        bin,
        &dir.join("data"),
        &[
            std::ffi::OsStr::new("--listen"),
            std::ffi::OsStr::new("127.0.0.1:0"),
            std::ffi::OsStr::new("--config"),
            config.as_os_str(),
        ],
    );
    create_topic(&s.address, "alone", 1);
    create_topic(&s.address, "beside", 1);
    let alone = busy(&s, "alone", records);

    let pid = s.pid();
    let rss0 = status_mib(pid, "VmRSS:");
    let cpu0 = cpu_seconds(&pid.to_string());
    let mut conns: Vec<TcpStream> = (0..idle)
        .map(|i| {
            let mut c = connect(&s.address);
            c.write_all(&api_versions(i as i32)).unwrap();
            assert_eq!(answer(&mut c), i as i32);
            c.write_all(&metadata(i as i32)).unwrap();
            assert_eq!(answer(&mut c), i as i32);
            c
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let cpu = cpu_seconds(&pid.to_string()) - cpu0;
    let rss = status_mib(pid, "VmRSS:") - rss0;
    let cost = [rss * 1024.0 / idle as f64, cpu * 1e6 / idle as f64];

    let beside = busy(&s, "beside", records);
    for (i, c) in conns.iter_mut().enumerate() {
        c.write_all(&api_versions(idle as i32 + i as i32)).unwrap();
        assert_eq!(
            answer(c),
            idle as i32 + i as i32,
            "idle connection {i} still served"
        );
    }
    drop(conns);
    s.stop("-TERM");
    let _ = std::fs::remove_dir_all(dir);
    (alone, cost, beside)
}

pub fn run(dir: &Path, records: usize) {
    let rounds = env_num("RAFKA_BENCH_ROUNDS", 3);
    let idle = env_num("RAFKA_BENCH_CONNECTIONS", 4000).max(1);
    let mut builds = vec![("this build", super::rafka_binary())];
    if let Some(b) = std::env::var_os("RAFKA_BENCH_BASELINE_BIN") {
        builds.push(("baseline", b));
    }
    let load = load_average();
    // figures[build] = (alone rows, cost rows, beside rows) over rounds
    let mut alone = vec![vec![Vec::new(); 4]; builds.len()];
    let mut cost = vec![vec![Vec::new(); 2]; builds.len()];
    let mut beside = vec![vec![Vec::new(); 4]; builds.len()];
    for r in 0..rounds {
        for (b, (name, bin)) in builds.iter().enumerate() {
            eprintln!("connections: {name}, round {}", r + 1);
            let (a, c, s) = round(bin, &dir.join("connections"), records, idle);
            for k in 0..4 {
                alone[b][k].push(a[k]);
                beside[b][k].push(s[k]);
            }
            for k in 0..2 {
                cost[b][k].push(c[k]);
            }
        }
    }
    println!(
        "\n{idle} idle connections beside one busy client ({records} × 1 KiB acks=1 by \
         librdkafka, then 2,000 one-record produces one at a time), load average {load:.1}, \
         {rounds} rounds; medians (ranges)\n"
    );
    println!("| build | idle connection: RSS KiB | CPU-µs to open | produce MB/s alone → beside | broker CPU-s/GB alone → beside | one-record produce p50 µs alone → beside | p99 µs alone → beside |");
    println!("|---|---:|---:|---|---|---|---|");
    for (b, (name, _)) in builds.iter().enumerate() {
        println!(
            "| {name} | {} | {} | {} → {} | {} → {} | {} → {} | {} → {} |",
            median_range(&cost[b][0], 1),
            median_range(&cost[b][1], 0),
            median_range(&alone[b][0], 0),
            median_range(&beside[b][0], 0),
            median_range(&alone[b][1], 3),
            median_range(&beside[b][1], 3),
            median_range(&alone[b][2], 0),
            median_range(&beside[b][2], 0),
            median_range(&alone[b][3], 0),
            median_range(&beside[b][3], 0),
        );
    }
}
