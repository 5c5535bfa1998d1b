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

use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
    ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::{
    cpu_seconds, create_topic, env_num, load_average, median_range, raw_request, status_mib, Server,
};

/// ApiVersions v3 on `s`, answered without error.
fn api_versions(s: &mut TcpStream) {
    let r: ApiVersionsResponse =
        raw_request(s, ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(r.error_code, 0, "ApiVersions");
}

/// Produce v3, acks=1, one batch of one 100-byte record to partition 0 of `topic`: the
/// offset it was given.
fn produce_one(s: &mut TcpStream, topic: &str, i: usize) -> i64 {
    let batch = rafka_core::batch::BatchBuilder::new(rafka_core::Offset(0))
        .kv(
            format!("k{i}").as_bytes(),
            &[b'v'; 100],
            rafka_core::Timestamp(1_000 + i as i64),
        )
        .build();
    let req = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch.as_bytes().clone()))])]);
    let r: ProduceResponse = raw_request(s, ApiKey::Produce, 3, &req);
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 0, "produce {i}");
    p.base_offset
}

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

/// Round trips of 2,000 one-record produces, one at a time, the first at offset `first`:
/// (p50, p99) in µs.
fn probe(addr: &str, topic: &str, first: i64) -> (f64, f64) {
    let mut s = connect(addr);
    let mut took = Vec::with_capacity(2000);
    for i in 0..2000 {
        let t = Instant::now();
        let offset = produce_one(&mut s, topic, i);
        took.push(t.elapsed().as_secs_f64() * 1e6);
        assert_eq!(offset, first + i as i64, "produce {i}");
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
    let (p50, p99) = probe(&s.address, topic, records as i64);
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
        .map(|_| {
            let mut c = connect(&s.address);
            api_versions(&mut c);
            let all = MetadataRequest::default().with_topics(None);
            let m: MetadataResponse = raw_request(&mut c, ApiKey::Metadata, 1, &all);
            let named = |t: &str| {
                m.topics
                    .iter()
                    .any(|x| x.name.as_ref().is_some_and(|n| **n == *t))
            };
            assert!(
                named("alone") && named("beside"),
                "Metadata names the bench's topics"
            );
            c
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let cpu = cpu_seconds(&pid.to_string()) - cpu0;
    let rss = status_mib(pid, "VmRSS:") - rss0;
    let cost = [rss * 1024.0 / idle as f64, cpu * 1e6 / idle as f64];

    let beside = busy(&s, "beside", records);
    for c in conns.iter_mut() {
        api_versions(c);
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
