//! `RAFKA_BENCH_ONLY=scale`: one broker holding many partitions (issue 22's "100,000
//! partitions" must-show).
//!
//! One `rafka` (release, log engine, default config but for `--data-dir`) gets
//! `RAFKA_BENCH_PARTITIONS` partitions (default 100,000) as topics of
//! `RAFKA_BENCH_PARTITIONS_PER_TOPIC` (default 100), created by CreateTopics requests of
//! 100 topics each; then one record goes to partition 0 of every topic (a sample: the
//! other partitions stay empty, as most of a big cluster's partitions are idle at any
//! moment). Then, `RAFKA_BENCH_RUNS` times (default 2):
//! - idle: RSS (`VmRSS`) and open file descriptors (`/proc/<pid>/fd`) two seconds after
//!   the last request;
//! - a Metadata request (v12, every topic) on a raw connection: the answer's size and the
//!   time from sending it to the last byte of the answer, best and median of five;
//! - a clean stop (SIGTERM) and start: the time from spawn to the ready line (recovery
//!   done, listener bound), then to a Metadata answer naming every topic and an accepted
//!   produce (acks=all) to the sample partitions;
//! - one more record to each sample partition (acknowledged), SIGKILL, start: the same
//!   times, then the sample partitions' high watermarks checked: every acknowledged
//!   record is there.
//!
//! Prints each figure as a range over the runs (`low–high`), beside the bound
//! docs/benchmarks.md states. The data directory is removed at the end.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::{env_num, status_mib, Server};

/// Open file descriptors of a process.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Creates topics `s0..` of `per_topic` partitions, 100 topics per CreateTopics request.
pub(super) fn create_all(addr: &str, topics: usize, per_topic: i32) {
    let (admin, rt) = super::admin_client(addr);
    let names: Vec<String> = (0..topics).map(|t| format!("s{t}")).collect();
    for chunk in names.chunks(100) {
        let new: Vec<NewTopic> = chunk
            .iter()
            .map(|n| NewTopic::new(n, per_topic, TopicReplication::Fixed(1)))
            .collect();
        let r = rt
            .block_on(
                admin.create_topics(
                    &new,
                    &AdminOptions::new()
                        .operation_timeout(Some(Duration::from_secs(300)))
                        .request_timeout(Some(Duration::from_secs(300))),
                ),
            )
            .unwrap();
        for x in r {
            x.unwrap_or_else(|(t, e)| panic!("create {t}: {e}"));
        }
    }
}

/// Metadata v12 for every topic on a fresh connection: (bytes of the answer, time from
/// sending to its last byte, topics named).
fn metadata_all(addr: &str) -> (usize, Duration, usize) {
    use kafka_protocol::messages::{
        ApiKey, MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader,
    };
    use kafka_protocol::protocol::{Decodable, Encodable};
    let version = 12;
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Metadata as i16)
        .with_request_api_version(version)
        .with_correlation_id(7);
    let mut buf = bytes::BytesMut::new();
    header
        .encode(&mut buf, ApiKey::Metadata.request_header_version(version))
        .unwrap();
    MetadataRequest::default()
        .with_topics(None)
        .encode(&mut buf, version)
        .unwrap();
    let mut frame = (buf.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&buf);
    let started = Instant::now();
    stream.write_all(&frame).unwrap();
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).unwrap();
    let took = started.elapsed();
    let size = body.len() + 4;
    let mut body = bytes::Bytes::from(body);
    ResponseHeader::decode(&mut body, ApiKey::Metadata.response_header_version(version)).unwrap();
    let r = MetadataResponse::decode(&mut body, version).unwrap();
    (size, took, r.topics.len())
}

/// Sends one record (acks=all) to partition 0 of each topic; panics on any failure.
/// Returns the time from creating the producer to the last acknowledgement.
fn produce_sample(addr: &str, topics: usize) -> Duration {
    let started = Instant::now();
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "120000")
        .create()
        .unwrap();
    let rt = super::current_thread_runtime();
    rt.block_on(async {
        let sends: Vec<_> = (0..topics)
            .map(|t| {
                let topic = format!("s{t}");
                let p = p.clone();
                async move {
                    p.send(
                        FutureRecord::<(), _>::to(&topic)
                            .payload(&b"scale"[..])
                            .partition(0),
                        Duration::from_secs(120),
                    )
                    .await
                    .unwrap_or_else(|(e, _)| panic!("produce to {topic}: {e}"));
                }
            })
            .collect();
        futures::future::join_all(sends).await;
    });
    started.elapsed()
}

/// The high watermark of partition 0 of each of `topics` topics, checked to be `expect`.
fn check_sample(addr: &str, topics: usize, expect: i64) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .create()
        .unwrap();
    for t in 0..topics {
        let (_, high) = c
            .fetch_watermarks(&format!("s{t}"), 0, Duration::from_secs(30))
            .unwrap();
        assert_eq!(high, expect, "s{t}-0 after restart");
    }
}

/// Time from spawn until a Metadata answer names every topic and a produce is accepted,
/// then the ready line's time: (ready line, Metadata + produce answered).
fn start_and_serve(data: &Path, topics: usize) -> (Server, Duration, Duration) {
    let started = Instant::now();
    let s = Server::rafka(data);
    let (_, _, named) = metadata_all(&s.address);
    assert!(named >= topics, "{named} topics after restart");
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &s.address)
        .set("acks", "all")
        .create()
        .unwrap();
    let rt = super::current_thread_runtime();
    rt.block_on(
        p.send(
            FutureRecord::<(), _>::to("s0")
                .payload(&b"r"[..])
                .partition(1),
            Duration::from_secs(120),
        ),
    )
    .unwrap_or_else(|(e, _)| panic!("produce after restart: {e}"));
    let served = started.elapsed();
    let ready = s.ready;
    (s, ready, served)
}

fn range(v: &[f64], digits: usize) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if (hi - lo).abs() < f64::EPSILON {
        format!("{lo:.digits$}")
    } else {
        format!("{lo:.digits$}–{hi:.digits$}")
    }
}

/// Runs the scale benchmark under `dir` and prints its table.
pub fn scale(dir: &Path) {
    let partitions = env_num("RAFKA_BENCH_PARTITIONS", 100_000);
    let per_topic = env_num("RAFKA_BENCH_PARTITIONS_PER_TOPIC", 100).min(partitions);
    let topics = partitions.div_ceil(per_topic);
    let partitions = topics * per_topic;
    let runs = env_num("RAFKA_BENCH_RUNS", 2).max(1);
    let data = dir.join("scale");

    eprintln!("scale: creating {topics} topics x {per_topic} partitions ...");
    let s = Server::rafka(&data);
    let t = Instant::now();
    create_all(&s.address, topics, per_topic as i32);
    let create_s = t.elapsed().as_secs_f64();
    eprintln!("scale: created in {create_s:.1} s; one record to {topics} partitions ...");
    let sample_s = produce_sample(&s.address, topics).as_secs_f64();
    let mut s = s;
    let mut acked = 1;

    let mut rows: Vec<(&str, Vec<f64>, &str, usize)> = vec![
        ("idle RSS", vec![], "MiB", 0),
        ("idle RSS after a restart", vec![], "MiB", 0),
        ("open file descriptors, idle", vec![], "", 0),
        ("open file descriptors after a restart", vec![], "", 0),
        ("Metadata (all topics), best of 5", vec![], "ms", 1),
        ("Metadata (all topics), median of 5", vec![], "ms", 1),
        ("Metadata answer size", vec![], "KiB", 0),
        ("ready line after SIGTERM", vec![], "ms", 0),
        ("Metadata + produce answered after SIGTERM", vec![], "ms", 0),
        ("ready line after SIGKILL", vec![], "ms", 0),
        ("Metadata + produce answered after SIGKILL", vec![], "ms", 0),
    ];
    for run in 0..runs {
        eprintln!("scale: run {} of {runs} ...", run + 1);
        std::thread::sleep(Duration::from_secs(2));
        rows[0].1.push(status_mib(s.pid(), "VmRSS"));
        rows[2].1.push(open_fds(s.pid()) as f64);
        let mut times = Vec::new();
        for _ in 0..5 {
            let (size, took, named) = metadata_all(&s.address);
            assert!(named >= topics, "Metadata named {named} topics");
            times.push(took.as_secs_f64() * 1000.0);
            rows[6].1.push(size as f64 / 1024.0);
        }
        times.sort_by(f64::total_cmp);
        rows[4].1.push(times[0]);
        rows[5].1.push(times[2]);

        s.stop("-TERM");
        let (clean, ready, served) = start_and_serve(&data, topics);
        rows[7].1.push(ready.as_secs_f64() * 1000.0);
        rows[8].1.push(served.as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_secs(2));
        rows[1].1.push(status_mib(clean.pid(), "VmRSS"));
        rows[3].1.push(open_fds(clean.pid()) as f64);

        produce_sample(&clean.address, topics);
        acked += 1;
        clean.stop("-KILL");
        let (dirty, ready, served) = start_and_serve(&data, topics);
        rows[9].1.push(ready.as_secs_f64() * 1000.0);
        rows[10].1.push(served.as_secs_f64() * 1000.0);
        check_sample(&dirty.address, topics, acked);
        s = dirty;
    }
    s.stop("-TERM");
    let _ = std::fs::remove_dir_all(&data);

    println!(
        "rafka release, log engine, default config: {partitions} partitions ({topics} topics x {per_topic}); \
         created in {create_s:.1} s (CreateTopics of 100 topics each); one record to partition 0 of \
         every topic in {sample_s:.1} s; {runs} runs"
    );
    println!();
    println!("| figure | rafka | unit |");
    println!("|---|---:|---|");
    for (name, v, unit, digits) in &rows {
        println!("| {name} | {} | {unit} |", range(v, *digits));
    }
}
