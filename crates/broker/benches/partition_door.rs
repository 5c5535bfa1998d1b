//! CPU cost of two paths through a partition's door, in process (no sockets):
//! `cargo bench -p rafka-broker --bench partition_door [produce|parked]`.
//!
//! - `produce`: broker CPU-seconds per GB of record batches through the produce handler
//!   (`api::dispatch`, log engine on disk, `fsync: never`, acks=1), 1 KiB records in batches
//!   of 256, one batch per request. Produce is synchronous, so the calling thread's CPU time
//!   (`/proc/thread-self/schedstat`, nanoseconds) is the handler's cost. Best of 5 rounds of
//!   512 MiB each.
//! - `parked`: 200 long-poll fetches parked on 1,000 idle partitions (5 each, 30 s max wait)
//!   while one other partition takes 2 produce requests per millisecond for 3 s. Reports the
//!   whole process's CPU time (`/proc/self/stat`, utime + stime) over those 3 s, against the
//!   same produce traffic with no fetch parked. Checks afterwards that every fetch is still
//!   parked and that an append to an idle partition answers the fetch parked on it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, ProduceRequest, RequestHeader, RequestKind, ResponseKind,
    TopicName as WireTopicName,
};
use kafka_protocol::protocol::StrBytes;

use rafka_broker::rafka_hooks::{Api, RequestContext};
use rafka_broker::{dispatch, Reply};
use rafka_broker::{Broker, Config, FsyncPolicy, Shared};
use rafka_core::batch::BatchBuilder;
use rafka_core::{Offset, Timestamp};
use rafka_protocol::connection::DecodedRequest;

const IDLE_PARTITIONS: i32 = 1000;
const PARKED_FETCHES: i32 = 200;
const PRODUCE_TICKS: usize = 3000;
const PRODUCES_PER_TICK: usize = 2;

fn batch(records: usize, value_bytes: usize) -> Bytes {
    let value = vec![b'x'; value_bytes];
    let mut b = BatchBuilder::new(Offset(0));
    for i in 0..records {
        b = b.kv(
            format!("key-{i}").as_bytes(),
            &value,
            Timestamp(1_700_000_000_000),
        );
    }
    b.build().into_bytes()
}

fn wire(s: &'static str) -> WireTopicName {
    WireTopicName(StrBytes::from_static_str(s))
}

fn decoded(api_key: ApiKey, version: i16, body: RequestKind, frame_bytes: usize) -> DecodedRequest {
    DecodedRequest {
        header: RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_client_id(Some(StrBytes::from_static_str("bench"))),
        api_key,
        body,
        frame_bytes,
    }
}

fn produce(topic: &'static str, partition: i32, records: &Bytes) -> DecodedRequest {
    let body = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(wire(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records.clone()))])]);
    decoded(
        ApiKey::Produce,
        9,
        RequestKind::Produce(body),
        records.len() + 100,
    )
}

fn fetch(topic: &'static str, partitions: std::ops::Range<i32>) -> DecodedRequest {
    let body = FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(30_000)
        .with_min_bytes(1)
        .with_max_bytes(50 * 1024 * 1024)
        .with_topics(vec![FetchTopic::default()
            .with_topic(wire(topic))
            .with_partitions(
                partitions
                    .map(|p| {
                        FetchPartition::default()
                            .with_partition(p)
                            .with_fetch_offset(0)
                            .with_partition_max_bytes(1024 * 1024)
                    })
                    .collect(),
            )]);
    decoded(ApiKey::Fetch, 12, RequestKind::Fetch(body), 200)
}

fn ctx(api: Api, version: i16, i: usize) -> Arc<RequestContext> {
    let peer = "127.0.0.1:1".parse().unwrap();
    Arc::new(RequestContext {
        api,
        api_version: version,
        correlation_id: i as i32,
        client_id: "bench".into(),
        peer,
        received: Timestamp::now(),
        session: Arc::new(rafka_hooks::Session::plaintext(peer, peer)),
    })
}

async fn start(dir: &std::path::Path, storage_type: &str) -> Broker {
    let mut cfg = Config::from_yaml("").expect("config");
    cfg.broker.listen = "127.0.0.1:0".into();
    cfg.admin.listen = String::new();
    cfg.storage.storage_type = storage_type.into();
    cfg.storage.path = dir.to_path_buf();
    cfg.durability.fsync = FsyncPolicy::Never;
    Broker::start(cfg).await.expect("broker")
}

fn create(shared: &Shared, name: &str, partitions: i32) {
    shared
        .cluster
        .create_topic(
            &rafka_core::TopicName::new(name).unwrap(),
            partitions,
            Default::default(),
            false,
        )
        .expect("topic");
}

fn produce_ok(shared: &Arc<Shared>, req: DecodedRequest, i: usize) {
    match dispatch(shared, req, &ctx(Api::Produce, 9, i)) {
        Reply::Now(ResponseKind::Produce(r)) => {
            assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
        }
        _ => panic!("unexpected produce reply"),
    }
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    let ns: u64 = s.split_whitespace().next().unwrap().parse().unwrap();
    Duration::from_nanos(ns)
}

/// CPU time (user + system) of the whole process, every thread that ever ran included.
fn process_cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/self/stat").expect("stat");
    // Fields after the command name (which is in parentheses and may hold spaces);
    // utime and stime are fields 14 and 15, in clock ticks (USER_HZ, 100 on Linux).
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

fn bench_produce(rt: &tokio::runtime::Runtime) {
    const ROUNDS: usize = 5;
    let records = batch(256, 1024);
    let n_requests = (512 << 20) / records.len();
    let gb = (n_requests * records.len()) as f64 / 1e9;
    let mut best = f64::MAX;
    for _ in 0..ROUNDS {
        let dir = tempfile::tempdir().expect("tempdir");
        let cpu = rt.block_on(async {
            let broker = start(dir.path(), "log").await;
            let shared = broker.shared().clone();
            create(&shared, "bench", 1);
            let reqs: Vec<_> = (0..n_requests)
                .map(|_| produce("bench", 0, &records))
                .collect();
            let before = thread_cpu();
            for (i, req) in reqs.into_iter().enumerate() {
                produce_ok(&shared, req, i);
            }
            let cpu = thread_cpu() - before;
            broker.shutdown().await.expect("shutdown");
            cpu
        });
        best = best.min(cpu.as_secs_f64() / gb);
    }
    println!(
        "produce: {n_requests} requests x {} bytes (256 x 1 KiB records), best of {ROUNDS}: \
         {best:.3} CPU-s/GB",
        records.len()
    );
}

/// Produce traffic on `busy` with `n_fetches` parked on the idle topic; returns the process
/// CPU time and wall time of the produce phase.
async fn parked_round(n_fetches: i32) -> (Duration, Duration) {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path(), "memory").await;
    let shared = broker.shared().clone();
    create(&shared, "idle", IDLE_PARTITIONS);
    create(&shared, "busy", 1);
    let per_fetch = IDLE_PARTITIONS / PARKED_FETCHES;
    let mut parked = Vec::new();
    for f in 0..n_fetches {
        let req = fetch("idle", f * per_fetch..(f + 1) * per_fetch);
        match dispatch(&shared, req, &ctx(Api::Fetch, 12, f as usize)) {
            Reply::Later(fut) | Reply::Durable(fut) => parked.push(tokio::spawn(fut)),
            _ => panic!("a fetch on empty partitions must park"),
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let small = batch(10, 100);
    let (cpu0, t0) = (process_cpu(), Instant::now());
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut i = 0;
    for _ in 0..PRODUCE_TICKS {
        tick.tick().await;
        for _ in 0..PRODUCES_PER_TICK {
            produce_ok(&shared, produce("busy", 0, &small), i);
            i += 1;
        }
    }
    let (cpu, wall) = (process_cpu() - cpu0, t0.elapsed());
    assert!(
        parked.iter().all(|h| !h.is_finished()),
        "fetches on idle partitions answered"
    );
    if let Some(first) = parked.first_mut() {
        produce_ok(&shared, produce("idle", 0, &small), i);
        let answered = tokio::time::timeout(Duration::from_secs(5), first)
            .await
            .expect("an append wakes the fetch parked on its partition")
            .expect("fetch task");
        let ResponseKind::Fetch(r) = answered else {
            panic!("not a fetch response")
        };
        let p0 = &r.responses[0].partitions[0];
        assert_eq!(p0.high_watermark, 10);
        assert_eq!(p0.records.as_ref().map(|r| r.len()), Some(small.len()));
    }
    for h in &parked {
        h.abort();
    }
    broker.shutdown().await.expect("shutdown");
    (cpu, wall)
}

fn bench_parked(rt: &tokio::runtime::Runtime) {
    const ROUNDS: usize = 3;
    let n = PRODUCE_TICKS * PRODUCES_PER_TICK;
    for fetches in [0, PARKED_FETCHES] {
        let mut cpus = Vec::new();
        let mut walls = Vec::new();
        for _ in 0..ROUNDS {
            let (cpu, wall) = rt.block_on(parked_round(fetches));
            cpus.push(cpu.as_secs_f64());
            walls.push(wall.as_secs_f64());
        }
        cpus.sort_by(f64::total_cmp);
        println!(
            "parked: {fetches:3} fetches parked on {IDLE_PARTITIONS} idle partitions, {n} produce \
             requests to another partition in {:.2} s: process CPU {:.3} s (median of {ROUNDS}; \
             all {:?}), {:.1} us per produce",
            walls.iter().sum::<f64>() / ROUNDS as f64,
            cpus[ROUNDS / 2],
            cpus,
            cpus[ROUNDS / 2] / n as f64 * 1e6,
        );
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let all = which.is_empty();
    if all || which.iter().any(|w| w == "produce") {
        bench_produce(&rt);
    }
    if all || which.iter().any(|w| w == "parked") {
        bench_parked(&rt);
    }
}
