//! `RAFKA_BENCH_ONLY=latency`: the produce side of issue 22 on one broker per round.
//!
//! Each round starts a fresh `rafka` (release, log engine, `durability.fsync: on_ack_all`:
//! an acks=all produce is answered after an fsync of the partitions it wrote, shared by
//! concurrent requests through the partition's group commit) on a new data directory and
//! measures:
//! - e2e latency (send → the consumer's receipt) of 100 B records at 10,000/s for
//!   `RAFKA_BENCH_LAT_SECS` (default 3) seconds, acks=all, linger 0, p50/p99/p99.9:
//!   alone; while a second librdkafka producer pushes 1 KiB records acks=all to another
//!   topic as fast as it can (its fsyncs and page-cache writes compete for the disk and the
//!   two cores); while it does so with acks=1 (page-cache writes, the kernel's writeback);
//!   the same to a topic with `preallocate=true`; and while a plain file writer outside the broker writes 1 MiB chunks with an fsync
//!   after each (the disk busy without the broker's CPU or locks involved);
//! - produce 1 KiB acks=1 and acks=all, `RAFKA_BENCH_RECORDS` records each, to fresh
//!   topics, alternated, then acks=1 to a topic with `preallocate=true`: MB/s, broker
//!   CPU-seconds per GB and the acks=all / acks=1 ratio; after the broker stops, the
//!   disk's own rate for the same bytes (a file written 1 MiB at a time, fsync after each).
//!
//! `RAFKA_BENCH_ROUNDS` rounds (default 3); the tables give medians and ranges.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{
    common, cpu_seconds, create_topic, create_topic_with, e2e_latencies, env_num, fsync_write_mb_s,
    median_range, pct, Server,
};

const RATE: usize = 10_000;

/// What runs beside the latency probe.
#[derive(Clone, Copy, PartialEq)]
enum Load {
    Alone,
    /// acks, and whether its topic has `preallocate=true`.
    Producer(&'static str, bool),
    FileWriter,
}

impl Load {
    fn name(self) -> String {
        match self {
            Load::Alone => "alone".into(),
            Load::Producer(acks, false) => format!("+ producer 1 KiB acks={acks} at full speed"),
            Load::Producer(acks, true) => {
                format!("+ producer 1 KiB acks={acks} at full speed, preallocate=true")
            }
            Load::FileWriter => "+ file writer, fsync per MiB".into(),
        }
    }
}

/// The background load: a thread running until `stop`, counting the bytes it wrote.
struct Background {
    stop: Arc<AtomicBool>,
    bytes: Arc<AtomicUsize>,
    started: Instant,
    thread: std::thread::JoinHandle<()>,
}

impl Background {
    fn start(load: Load, addr: &str, dir: &Path, round: usize) -> Option<Background> {
        let stop = Arc::new(AtomicBool::new(false));
        let bytes = Arc::new(AtomicUsize::new(0));
        let (s, b) = (stop.clone(), bytes.clone());
        let thread = match load {
            Load::Alone => return None,
            Load::Producer(acks, pre) => {
                let topic = format!("bulk-{acks}-{pre}-{round}");
                let pre_value = if pre { "true" } else { "false" };
                create_topic_with(addr, &topic, &[("preallocate", pre_value)]);
                let addr = addr.to_string();
                std::thread::spawn(move || {
                    // 50,000 × 1 KiB per producer; the next one starts at once.
                    while !s.load(Ordering::Relaxed) {
                        common::librdkafka_produce(&addr, &topic, 50_000, 1024, acks);
                        b.fetch_add(50_000 * 1024, Ordering::Relaxed);
                    }
                })
            }
            Load::FileWriter => {
                let path = dir.join(format!("disk-load-{round}.bin"));
                std::thread::spawn(move || {
                    let mut f = std::fs::File::create(&path).unwrap();
                    let chunk = vec![7u8; 1 << 20];
                    let mut written = 0usize;
                    while !s.load(Ordering::Relaxed) {
                        f.write_all(&chunk).unwrap();
                        f.sync_data().unwrap();
                        b.fetch_add(chunk.len(), Ordering::Relaxed);
                        written += chunk.len();
                        // Bounded on disk: start over every 512 MiB.
                        if written >= 512 << 20 {
                            f = std::fs::File::create(&path).unwrap();
                            written = 0;
                        }
                    }
                    drop(f);
                    let _ = std::fs::remove_file(&path);
                })
            }
        };
        // Let the load reach full speed before the probe starts.
        std::thread::sleep(Duration::from_millis(700));
        Some(Background {
            stop,
            bytes,
            started: Instant::now(),
            thread,
        })
    }

    /// Stops the load; its MB/s over the time it ran after the warm-up.
    fn finish(self) -> f64 {
        let at_stop = self.bytes.load(Ordering::Relaxed);
        let secs = self.started.elapsed().as_secs_f64();
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("background load");
        at_stop as f64 / secs / 1e6
    }
}

pub fn run(dir: &Path, records: usize) {
    let rounds = env_num("RAFKA_BENCH_ROUNDS", 3);
    let lat_records = env_num("RAFKA_BENCH_LAT_SECS", 3) * RATE;
    let loads = [
        Load::Alone,
        Load::Producer("all", false),
        Load::Producer("1", false),
        Load::Producer("all", true),
        Load::FileWriter,
    ];
    // Per load and round: [p50, p99, p99.9, max] in ms, and the load's MB/s.
    let mut lat: Vec<Vec<([f64; 4], f64)>> = vec![Vec::new(); loads.len()];
    // Per produce workload and round: [MB/s, CPU-s/GB].
    let produces = [("1", false), ("all", false), ("1", true)];
    let mut thr: Vec<Vec<[f64; 2]>> = vec![Vec::new(); produces.len()];
    // Per round: the disk's sequential write with an fsync per MiB, MB/s.
    let mut disk = Vec::new();
    let total = records * 1024;
    for round in 0..rounds {
        let data = dir.join(format!("rafka-latency-{round}"));
        let _ = std::fs::remove_dir_all(&data);
        let server = Server::rafka(&data);
        let addr = server.address.clone();
        let pid = server.pid().to_string();
        for (i, load) in loads.iter().enumerate() {
            let topic = format!("lat-{i}-{round}");
            create_topic(&addr, &topic, 1);
            let bg = Background::start(*load, &addr, dir, round);
            let v = e2e_latencies(&addr, &topic, lat_records, RATE);
            let load_mb_s = bg.map_or(0.0, Background::finish);
            let row = [pct(&v, 0.5), pct(&v, 0.99), pct(&v, 0.999), pct(&v, 1.0)];
            eprintln!(
                "  round {round} {}: p50 {:.2} p99 {:.2} p99.9 {:.2} max {:.2} ms; load {load_mb_s:.0} MB/s",
                load.name(),
                row[0],
                row[1],
                row[2],
                row[3]
            );
            lat[i].push((row, load_mb_s));
        }
        for (k, (acks, pre)) in produces.iter().enumerate() {
            let topic = format!("thr-{acks}-{pre}-{round}");
            let pre_value = if *pre { "true" } else { "false" };
            create_topic_with(&addr, &topic, &[("preallocate", pre_value)]);
            let cpu0 = cpu_seconds(&pid);
            let d = common::librdkafka_produce(&addr, &topic, records, 1024, acks);
            let cpu = cpu_seconds(&pid) - cpu0;
            let row = [
                total as f64 / d.as_secs_f64() / 1e6,
                cpu / (total as f64 / 1e9),
            ];
            eprintln!(
                "  round {round} produce 1 KiB acks={acks} preallocate={pre}: {:.0} MB/s, {:.3} CPU-s/GB",
                row[0], row[1]
            );
            thr[k].push(row);
        }
        server.stop("-TERM");
        let _ = std::fs::remove_dir_all(&data);
        let (mb_s, _) = fsync_write_mb_s(dir, total);
        eprintln!("  round {round} file write + fsync/MiB: {mb_s:.0} MB/s");
        disk.push(mb_s);
    }
    let range = median_range;
    println!(
        "e2e: {lat_records} records of 100 B at {RATE}/s, acks=all, fsync on_ack_all; one fresh rafka (release, log engine) per round; medians (ranges) of {rounds} rounds"
    );
    println!();
    println!("| e2e latency | p50 ms | p99 ms | p99.9 ms | max ms | load MB/s |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (load, rows) in loads.iter().zip(&lat) {
        let col = |k: usize| rows.iter().map(|r| r.0[k]).collect::<Vec<_>>();
        let mb = rows.iter().map(|r| r.1).collect::<Vec<_>>();
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            load.name(),
            range(&col(0), 2),
            range(&col(1), 2),
            range(&col(2), 2),
            range(&col(3), 2),
            if *load == Load::Alone {
                String::new()
            } else {
                range(&mb, 0)
            }
        );
    }
    println!();
    println!("| produce {records} x 1 KiB | MB/s | broker CPU-s/GB |");
    println!("|---|---:|---:|");
    for ((acks, pre), rows) in produces.iter().zip(&thr) {
        let col = |k: usize| rows.iter().map(|r| r[k]).collect::<Vec<_>>();
        let pre = if *pre { ", preallocate=true" } else { "" };
        println!(
            "| acks={acks}{pre} | {} | {} |",
            range(&col(0), 0),
            range(&col(1), 3)
        );
    }
    let ratios: Vec<f64> = thr[1]
        .iter()
        .zip(&thr[0])
        .map(|(all, one)| all[0] / one[0])
        .collect();
    println!(
        "| acks=all / acks=1 (per round) | {} | |",
        range(&ratios, 2)
    );
    println!(
        "| file write + fsync/MiB (baseline, {total} B) | {} | |",
        range(&disk, 0)
    );
    let of_disk: Vec<f64> = thr[1]
        .iter()
        .zip(&disk)
        .map(|(all, d)| all[0] / d)
        .collect();
    println!(
        "| acks=all / file write + fsync (per round) | {} | |",
        range(&of_disk, 2)
    );
}
