//! `RAFKA_BENCH_ONLY=diskless`: the diskless cluster's produce latency, throughput and
//! cost, beside the single-node log engine in the same run.
//!
//! Clusters: the log engine (one `rafka`, default config) for reference, then one and three
//! `rafka` processes in diskless mode at `commit_interval_ms` 10, 50 and 250, each cluster
//! on a new PostgreSQL database (one scratch server for the run, from
//! `tests/support/postgres.rs`, `fsync=off`) and a new `file://` object store. Each
//! cluster, freshly started, gets a topic of three partitions per workload and librdkafka
//! bootstrapped with every broker:
//! - throughput: `RAFKA_BENCH_RECORDS` 1 KiB records, acks=all, the harness's producer
//!   settings (linger 5 ms, 1 MB batches); MB/s from the first send to the last delivery
//!   report; over the same span, the objects written (files under the store) and
//!   PostgreSQL's committed transactions (`pg_stat_database.xact_commit` of the cluster's
//!   database: the commits and every other statement the brokers ran, heartbeats included),
//!   per GB of record values;
//! - latency: 100 B records at 500/s for 4 s, acks=all, linger 5 ms, twice: with at most
//!   five requests in flight per broker (the Java client's default, and the bound of an
//!   idempotent producer) and with librdkafka's default (a million); the time from each
//!   send to its delivery report, p50 and p99. With five in flight the client holds
//!   records while five requests wait for one commit, so a record waits about 1.5 intervals;
//!   unbounded, about half an interval plus the commit. (With linger 0 and no bound
//!   librdkafka sends a request per record: past 64 waiting on one connection the broker
//!   stops reading it, and at 250 ms that queue, not the interval, sets the latency.)
//!
//! `RAFKA_BENCH_RUNS` (default 2) runs of every cluster; the table gives the range over
//! the runs (`low–high`).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer,
};

use super::{common, create_topic, env_num, pct, Server};

#[path = "../../tests/support/postgres.rs"]
mod postgres;

const PARTITIONS: i32 = 3;
const LAT_RATE: usize = 500;
const LAT_SECS: usize = 4;

/// One cluster under measurement.
struct Cluster {
    brokers: Vec<Server>,
    /// The PostgreSQL database and the object store's directory (diskless only).
    diskless: Option<(String, PathBuf)>,
}

impl Cluster {
    fn log_engine(dir: &Path) -> Cluster {
        Cluster {
            brokers: vec![Server::rafka(dir)],
            diskless: None,
        }
    }

    fn diskless(dir: &Path, pg: &postgres::Postgres, brokers: usize, interval: u64) -> Cluster {
        let db = pg.fresh_database(&format!("bench_{brokers}_{interval}"));
        let objects = dir.join("objects");
        let servers: Vec<Server> = (1..=brokers)
            .map(|n| {
                let data = dir.join(format!("b{n}"));
                std::fs::create_dir_all(&data).unwrap();
                let config = dir.join(format!("b{n}.yaml"));
                std::fs::write(
                    &config,
                    format!(
                        "broker:\n  node_id: {n}\ncluster:\n  mode: diskless\n  coordinator: \"{db}\"\n  object_store: \"file://{}\"\n  commit_interval_ms: {interval}\n",
                        objects.display()
                    ),
                )
                .unwrap();
                Server::rafka_with(
                    &data,
                    &[std::ffi::OsStr::new("--config"), config.as_os_str()],
                )
            })
            .collect();
        // Every broker lists every other before the clients start (a broker reloads the
        // live set on its heartbeat).
        for s in &servers {
            let p: BaseProducer = ClientConfig::new()
                .set("bootstrap.servers", &s.address)
                .create()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let seen = p
                    .client()
                    .fetch_metadata(None, Duration::from_secs(5))
                    .map(|m| m.brokers().len())
                    .unwrap_or(0);
                if seen == brokers {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} lists {seen} brokers of {brokers}",
                    s.address
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        Cluster {
            brokers: servers,
            diskless: Some((db, objects)),
        }
    }

    fn bootstrap(&self) -> String {
        let addrs: Vec<&str> = self.brokers.iter().map(|s| s.address.as_str()).collect();
        addrs.join(",")
    }

    /// (objects written so far, PostgreSQL transactions committed so far, transaction ids
    /// assigned so far).
    fn costs(&self) -> (u64, i64, i64) {
        let Some((db, objects)) = &self.diskless else {
            return (0, 0, 0);
        };
        // Statistics reach pg_stat_database when a backend flushes them: at most once a
        // second while it is busy, 10 s after it went idle (the committer's connection,
        // once the load stops). Transaction ids are counted at once.
        std::thread::sleep(Duration::from_millis(11_000));
        let (xacts, xids) = pg_counters(db);
        (count_files(objects), xacts, xids)
    }

    fn stop(self) {
        for s in self.brokers {
            s.stop("-TERM");
        }
    }
}

fn count_files(dir: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        match e.file_type() {
            Ok(t) if t.is_dir() => n += count_files(&e.path()),
            Ok(t) if t.is_file() => n += 1,
            _ => {}
        }
    }
    n
}

/// (`pg_stat_database.xact_commit` of `db`, the server's next transaction id). Only
/// transactions that write take an id; the bench's server holds one cluster at a time.
fn pg_counters(db: &str) -> (i64, i64) {
    let rt = super::current_thread_runtime();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(db, tokio_postgres::NoTls)
            .await
            .expect("connect to PostgreSQL");
        let task = tokio::spawn(conn);
        let row = client
            .query_one(
                "SELECT xact_commit, \
                 pg_snapshot_xmax(pg_current_snapshot())::text::bigint \
                 FROM pg_stat_database WHERE datname = current_database()",
                &[],
            )
            .await
            .expect("pg_stat_database");
        let n: (i64, i64) = (row.get(0), row.get(1));
        drop(client);
        let _ = task.await;
        n
    })
}

/// Delivery latencies (µs): the opaque is the send instant.
#[derive(Default)]
struct Latencies {
    micros: Mutex<Vec<u64>>,
    failed: Mutex<usize>,
}

impl ClientContext for Latencies {}

impl ProducerContext for Latencies {
    type DeliveryOpaque = Box<Instant>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent: Box<Instant>) {
        let us = sent.elapsed().as_micros() as u64;
        match result {
            Ok(_) => self.micros.lock().unwrap().push(us),
            Err(_) => *self.failed.lock().unwrap() += 1,
        }
    }
}

/// 100 B records at `LAT_RATE`/s for `LAT_SECS` s, acks=all, linger 5 ms, with at most
/// `in_flight` requests in flight per broker (else librdkafka's default, a million): sorted
/// send-to-ack latencies in µs.
fn produce_latencies(bootstrap: &str, topic: &str, in_flight: Option<usize>) -> Vec<u64> {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "5");
    if let Some(n) = in_flight {
        cfg.set("max.in.flight.requests.per.connection", n.to_string());
    }
    let p: ThreadedProducer<Latencies> = cfg.create_with_context(Latencies::default()).unwrap();
    let records = LAT_RATE * LAT_SECS;
    let payload = [b'x'; 100];
    // One record first, not counted: the producer id and the metadata are in place before
    // the clock starts.
    p.send(
        BaseRecord::<(), [u8], Box<Instant>>::with_opaque_to(topic, Box::new(Instant::now()))
            .payload(&payload[..]),
    )
    .map_err(|(e, _)| e)
    .expect("send");
    p.flush(Duration::from_secs(30)).expect("flush");
    p.context().micros.lock().unwrap().clear();
    let start = Instant::now();
    for i in 0..records {
        let due = start + Duration::from_secs_f64(i as f64 / LAT_RATE as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let mut record =
            BaseRecord::<(), [u8], Box<Instant>>::with_opaque_to(topic, Box::new(Instant::now()))
                .payload(&payload[..]);
        loop {
            match p.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => panic!("send: {e} ({:?})", p.client().fatal_error()),
            }
        }
    }
    p.flush(Duration::from_secs(60)).expect("flush");
    let ctx = p.context();
    assert_eq!(*ctx.failed.lock().unwrap(), 0, "every record delivered");
    let mut lat = std::mem::take(&mut *ctx.micros.lock().unwrap());
    assert_eq!(lat.len(), records, "every record acknowledged");
    lat.sort_unstable();
    lat
}

/// One cluster's figures in one run.
struct Row {
    mb_s: f64,
    /// p50, p99 with five requests in flight, then with librdkafka's default.
    lat: [f64; 4],
    objects_per_gb: f64,
    xacts_per_gb: f64,
    xids_per_gb: f64,
}

fn measure(cluster: &Cluster, records: usize, run: usize) -> Row {
    let bootstrap = cluster.bootstrap();
    let (thr, lat) = (format!("thr-{run}"), format!("lat-{run}"));
    create_topic(&bootstrap, &thr, PARTITIONS);
    create_topic(&bootstrap, &format!("{lat}-i"), PARTITIONS);
    create_topic(&bootstrap, &format!("{lat}-p"), PARTITIONS);
    let (objects0, xacts0, xids0) = cluster.costs();
    let d = common::librdkafka_produce(&bootstrap, &thr, records, 1024, "all");
    let (objects1, xacts1, xids1) = cluster.costs();
    let gb = (records * 1024) as f64 / 1e9;
    let idem = produce_latencies(&bootstrap, &format!("{lat}-i"), Some(5));
    let plain = produce_latencies(&bootstrap, &format!("{lat}-p"), None);
    Row {
        mb_s: (records * 1024) as f64 / d.as_secs_f64() / 1e6,
        lat: [
            pct(&idem, 0.5),
            pct(&idem, 0.99),
            pct(&plain, 0.5),
            pct(&plain, 0.99),
        ],
        objects_per_gb: (objects1 - objects0) as f64 / gb,
        xacts_per_gb: (xacts1 - xacts0) as f64 / gb,
        xids_per_gb: (xids1 - xids0) as f64 / gb,
    }
}

/// `RAFKA_BENCH_ONLY=diskless` (see the module's comment).
pub fn diskless(dir: &Path, records: usize) {
    let runs = env_num("RAFKA_BENCH_RUNS", 2).max(1);
    let pg = postgres::Postgres::start();
    // (label, brokers, commit interval); brokers 0 = the log engine.
    let mut setups: Vec<(String, usize, u64)> = vec![("log engine, 1 broker".into(), 0, 0)];
    for brokers in [1, 3] {
        for interval in [10, 50, 250] {
            setups.push((
                format!(
                    "diskless, {brokers} broker{}, {interval} ms",
                    if brokers > 1 { "s" } else { "" }
                ),
                brokers,
                interval,
            ));
        }
    }
    let mut rows: Vec<Vec<Row>> = setups.iter().map(|_| Vec::new()).collect();
    for run in 0..runs {
        for (i, (label, brokers, interval)) in setups.iter().enumerate() {
            let cdir = dir.join(format!("c{run}-{i}"));
            std::fs::create_dir_all(&cdir).unwrap();
            let cluster = if *brokers == 0 {
                Cluster::log_engine(&cdir)
            } else {
                Cluster::diskless(&cdir, &pg, *brokers, *interval)
            };
            let row = measure(&cluster, records, run);
            cluster.stop();
            let _ = std::fs::remove_dir_all(&cdir);
            eprintln!(
                "  run {run} {label}: {:.1} MB/s; 5 in flight p50 {:.1} p99 {:.1} ms; unbounded p50 {:.1} p99 {:.1} ms; per GB {:.0} objects, {:.0} PostgreSQL commits, {:.0} transaction ids",
                row.mb_s, row.lat[0], row.lat[1], row.lat[2], row.lat[3], row.objects_per_gb, row.xacts_per_gb, row.xids_per_gb
            );
            rows[i].push(row);
        }
    }
    let range = |v: Vec<f64>, digits: usize| {
        let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        if format!("{lo:.digits$}") == format!("{hi:.digits$}") {
            format!("{lo:.digits$}")
        } else {
            format!("{lo:.digits$}–{hi:.digits$}")
        }
    };
    println!(
        "throughput: {records} x 1 KiB acks=all per run, {PARTITIONS} partitions; latency: 100 B acks=all linger 5 ms at {LAT_RATE}/s for {LAT_SECS} s, 5 requests in flight per broker and unbounded; rafka release; PostgreSQL fsync=off; file:// object store; librdkafka bootstrapped with every broker; ranges over {runs} runs"
    );
    println!();
    println!("| cluster | produce MB/s | 5 in flight p50 ms | 5 in flight p99 ms | unbounded p50 ms | unbounded p99 ms | objects per GB | PostgreSQL commits per GB | write transactions per GB |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for ((label, brokers, _), r) in setups.iter().zip(rows) {
        let cost = |f: fn(&Row) -> f64| {
            if *brokers == 0 {
                "—".to_string()
            } else {
                range(r.iter().map(f).collect(), 0)
            }
        };
        let lat = |k: usize| range(r.iter().map(|x| x.lat[k]).collect(), 1);
        println!(
            "| {label} | {} | {} | {} | {} | {} | {} | {} | {} |",
            range(r.iter().map(|x| x.mb_s).collect(), 0),
            lat(0),
            lat(1),
            lat(2),
            lat(3),
            cost(|x| x.objects_per_gb),
            cost(|x| x.xacts_per_gb),
            cost(|x| x.xids_per_gb),
        );
    }
}
