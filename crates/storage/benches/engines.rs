//! The storage engines side by side, in one run on one machine: append MB/s (1 KiB
//! records in 16 KiB batches, without and with an fsync per batch), sequential read MB/s,
//! and recovery time after an unclean stop (the engine dropped without `close`) of a
//! partition holding `RAFKA_BENCH_MIB` MiB (default 256).
//!
//! Run: `cargo bench -p rafka-storage --bench engines` (add `--features rocksdb` for the
//! third engine). Prints a Markdown table. Not criterion: recovery of hundreds of MiB is one
//! long measurement, not many short ones.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rafka_core::batch::BatchBuilder;
use rafka_core::{
    LogConfig, Offset, RecordBatch, StorageEngine, Timestamp, TopicName, TopicPartition,
    ValidatedBatch,
};
use rafka_storage::{LogEngine, MemoryEngine, MemoryOptions};

const RECORD_BYTES: usize = 1024;
const BATCH_BYTES: usize = 16 * 1024;
/// The fsync-per-batch phase stops after this long or this much data, whichever first.
const FSYNC_PHASE_MAX: Duration = Duration::from_secs(3);
const FSYNC_PHASE_BYTES: u64 = 64 * 1024 * 1024;

fn make_batch() -> RecordBatch {
    let mut b = BatchBuilder::new(Offset(0));
    for i in 0..BATCH_BYTES / RECORD_BYTES {
        b = b.kv(
            &(i as u32).to_be_bytes(),
            &[i as u8; RECORD_BYTES - 16],
            Timestamp(i as i64),
        );
    }
    b.build()
}

fn tp() -> TopicPartition {
    TopicPartition::new(TopicName::new("bench").expect("valid"), 0)
}

fn open(kind: &str, dir: &Path, data_bytes: u64) -> Arc<dyn StorageEngine> {
    let cfg = LogConfig::default();
    match kind {
        "log" => Arc::new(LogEngine::open(dir.to_path_buf(), cfg).expect("log engine")),
        "memory" => Arc::new(
            MemoryEngine::open(
                MemoryOptions {
                    dir: Some(dir.to_path_buf()),
                    max_bytes: 2 * data_bytes + (64 << 20),
                    ..MemoryOptions::default()
                },
                cfg,
            )
            .expect("memory engine"),
        ),
        #[cfg(feature = "rocksdb")]
        "rocksdb" => Arc::new(
            rafka_storage::RocksEngine::open(dir.to_path_buf(), cfg).expect("rocksdb engine"),
        ),
        other => panic!("unknown engine {other}"),
    }
}

fn unique(batch: &RecordBatch) -> RecordBatch {
    RecordBatch::parse(Bytes::from(batch.as_bytes().to_vec())).expect("valid batch")
}

fn mb_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / d.as_secs_f64()
}

struct Row {
    engine: &'static str,
    append: f64,
    append_fsync: f64,
    read: f64,
    recovery: Duration,
}

fn bench(kind: &'static str, root: &Path, data_bytes: u64) -> Row {
    let batch = make_batch();
    let n_batches = data_bytes / batch.size_bytes() as u64;

    // Append with fsync per batch, in its own directory.
    let dir = root.join(format!("{kind}-fsync"));
    let append_fsync = {
        let engine = open(kind, &dir, FSYNC_PHASE_BYTES);
        let log = engine
            .open(&tp(), &LogConfig::default())
            .expect("partition");
        let mut timed = Duration::ZERO;
        let mut bytes = 0;
        while timed < FSYNC_PHASE_MAX && bytes < FSYNC_PHASE_BYTES {
            let b = unique(&batch);
            let start = Instant::now();
            // The broker's one CRC check, timed with the append as before.
            let b = ValidatedBatch::new(b).expect("valid batch");
            log.append(b).expect("append");
            log.flush().expect("flush");
            timed += start.elapsed();
            bytes += batch.size_bytes() as u64;
        }
        engine.close().expect("close");
        mb_per_s(bytes, timed)
    };
    let _ = std::fs::remove_dir_all(&dir);

    // Append without fsync, then read it all back, then crash and recover.
    let dir = root.join(kind);
    let engine = open(kind, &dir, data_bytes);
    let log = engine
        .open(&tp(), &LogConfig::default())
        .expect("partition");
    let batches: Vec<RecordBatch> = (0..n_batches.min(4096)).map(|_| unique(&batch)).collect();
    let mut timed = Duration::ZERO;
    for i in 0..n_batches {
        // Prepared outside the timed region, as the broker hands over owned batches.
        let b = if (i as usize) < batches.len() {
            batches[i as usize].clone()
        } else {
            unique(&batch)
        };
        let start = Instant::now();
        let b = ValidatedBatch::new(b).expect("valid batch");
        log.append(b).expect("append");
        timed += start.elapsed();
    }
    let total = n_batches * batch.size_bytes() as u64;
    drop(batches);
    let append = mb_per_s(total, timed);

    let start = Instant::now();
    let mut next = Offset(0);
    let mut read_bytes = 0u64;
    while next < log.log_end_offset() {
        let r = log.read(next, 1024 * 1024).expect("read");
        read_bytes += r.records.len() as u64;
        let last = RecordBatch::split_all(r.records).expect("whole batches");
        next = last.last().expect("a batch").next_offset();
    }
    let read = mb_per_s(read_bytes, start.elapsed());
    assert_eq!(read_bytes, total);

    // Unclean stop: make the data durable (as acks=all would have), then drop.
    log.flush().expect("flush");
    let end = log.log_end_offset();
    drop(log);
    drop(engine);
    let start = Instant::now();
    let engine = open(kind, &dir, data_bytes);
    let log = engine
        .open(&tp(), &LogConfig::default())
        .expect("partition");
    let recovery = start.elapsed();
    assert_eq!(log.log_end_offset(), end, "{kind} recovered everything");
    drop(log);
    drop(engine);
    let _ = std::fs::remove_dir_all(&dir);
    Row {
        engine: kind,
        append,
        append_fsync,
        read,
        recovery,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run small then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let mib: u64 = std::env::var("RAFKA_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 8 } else { 256 });
    let root = match std::env::var("RAFKA_BENCH_DIR") {
        Ok(dir) => tempfile::tempdir_in(dir),
        Err(_) => tempfile::tempdir(),
    }
    .expect("bench directory");
    let engines: &[&'static str] = if cfg!(feature = "rocksdb") {
        &["log", "memory", "rocksdb"]
    } else {
        &["log", "memory"]
    };
    let rows: Vec<Row> = engines
        .iter()
        .map(|kind| bench(kind, root.path(), mib * 1024 * 1024))
        .collect();
    println!(
        "\n{mib} MiB per engine, 1 KiB records in 16 KiB batches, one partition\n\n\
         | engine | append MB/s | append + fsync per batch MB/s | read MB/s | recovery of {mib} MiB after an unclean stop |\n\
         |---|---:|---:|---:|---:|"
    );
    for r in rows {
        println!(
            "| {} | {:.0} | {:.1} | {:.0} | {:.2} s |",
            r.engine,
            r.append,
            r.append_fsync,
            r.read,
            r.recovery.as_secs_f64()
        );
    }
}
