//! Append and read throughput of the `log` engine against a plain-file baseline that
//! writes (or reads) the same bytes in the same chunk sizes with the same fsync pattern.
//!
//! Batches are built with `BatchBuilder` from 1 KiB records, 16 KiB and 1 MiB per batch.
//! Each appended batch is handed to the engine uniquely owned (prepared outside the timed
//! region), as the broker does after splitting a produce request; CRC validation (the
//! broker's, once, making it a `ValidatedBatch`) is timed with the append.
//! Both sides restart on a fresh file every `RESET_BYTES` (untimed) to bound disk use.
//!
//! Run: `cargo bench -p rafka-storage --bench log_append`.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rafka_core::batch::BatchBuilder;
use rafka_core::{
    LogConfig, Offset, PartitionLog, RecordBatch, StorageEngine, Timestamp, TopicName,
    TopicPartition, ValidatedBatch,
};
use rafka_storage::LogEngine;

/// Bytes written before both sides start over on a fresh file.
const RESET_BYTES: u64 = 256 * 1024 * 1024;
const RECORD_BYTES: usize = 1024;
const SIZES: [(&str, usize); 2] = [("16KiB", 16 * 1024), ("1MiB", 1024 * 1024)];

fn make_batch(batch_bytes: usize) -> RecordBatch {
    let n_records = batch_bytes / RECORD_BYTES;
    let mut b = BatchBuilder::new(Offset(0));
    for i in 0..n_records {
        // Record overhead is a few bytes; the value fills the rest of the KiB.
        b = b.kv(
            &(i as u32).to_be_bytes(),
            &[i as u8; RECORD_BYTES - 16],
            Timestamp(i as i64),
        );
    }
    b.build()
}

fn unique(batch: &RecordBatch) -> RecordBatch {
    RecordBatch::parse(Bytes::from(batch.as_bytes().to_vec())).expect("valid batch")
}

fn tp() -> TopicPartition {
    TopicPartition::new(TopicName::new("bench").expect("valid"), 0)
}

fn open_log(dir: &Path) -> (LogEngine, Arc<dyn PartitionLog>) {
    let _ = fs::remove_dir_all(dir);
    let engine = LogEngine::open(dir.to_path_buf(), LogConfig::default()).expect("engine");
    let log = engine.open(&tp(), &LogConfig::default()).expect("log");
    (engine, log)
}

fn fresh_file(path: &Path) -> File {
    let _ = fs::remove_file(path);
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .expect("baseline file")
}

/// Times `iters` appends of `batch`, syncing after each if `fsync`.
fn log_append(dir: &Path, batch: &RecordBatch, fsync: bool, iters: u64) -> Duration {
    let (mut _engine, mut log) = open_log(dir);
    let mut written = 0;
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        if written >= RESET_BYTES {
            (_engine, log) = open_log(dir);
            written = 0;
        }
        let b = unique(batch);
        let start = Instant::now();
        let b = ValidatedBatch::new(b).expect("valid batch");
        log.append(b).expect("append");
        if fsync {
            log.flush().expect("flush");
        }
        total += start.elapsed();
        written += batch.size_bytes() as u64;
    }
    total
}

/// The baseline: the same bytes, same chunk size, same fsync pattern, one `write_all_at`.
fn file_append(path: &Path, batch: &RecordBatch, fsync: bool, iters: u64) -> Duration {
    let mut file = fresh_file(path);
    let mut pos = 0;
    let mut total = Duration::ZERO;
    let bytes = batch.as_bytes().to_vec();
    for _ in 0..iters {
        if pos >= RESET_BYTES {
            file = fresh_file(path);
            pos = 0;
        }
        let start = Instant::now();
        file.write_all_at(&bytes, pos).expect("write");
        if fsync {
            file.sync_data().expect("fsync");
        }
        total += start.elapsed();
        pos += bytes.len() as u64;
    }
    total
}

fn append(c: &mut Criterion, fsync: bool) {
    let root = tempfile::tempdir().expect("tempdir");
    let name = if fsync {
        "append_fsync_each"
    } else {
        "append_no_fsync"
    };
    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(if fsync { 4 } else { 2 }));
    for (label, size) in SIZES {
        let batch = make_batch(size);
        group.throughput(Throughput::Bytes(batch.size_bytes() as u64));
        group.bench_function(BenchmarkId::new("rafka_log", label), |b| {
            b.iter_custom(|iters| log_append(&root.path().join("log"), &batch, fsync, iters))
        });
        group.bench_function(BenchmarkId::new("baseline_file", label), |b| {
            b.iter_custom(|iters| file_append(&root.path().join("file"), &batch, fsync, iters))
        });
    }
    group.finish();
}

fn append_no_fsync(c: &mut Criterion) {
    append(c, false);
}

fn append_fsync_each(c: &mut Criterion) {
    append(c, true);
}

/// Sequential reads of one batch at a time from 64 MiB already in the page cache.
fn read_page_cache(c: &mut Criterion) {
    let root = tempfile::tempdir().expect("tempdir");
    let mut group = c.benchmark_group("read_page_cache");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    for (label, size) in SIZES {
        let batch = make_batch(size);
        let n_batches = (64 * 1024 * 1024 / batch.size_bytes()) as i64;
        let records = batch.record_count() as i64;
        let (_engine, log) = open_log(&root.path().join(format!("log-{label}")));
        let file = fresh_file(&root.path().join(format!("file-{label}")));
        for i in 0..n_batches {
            log.append(ValidatedBatch::new(unique(&batch)).expect("valid"))
                .expect("append");
            let pos = i as u64 * batch.size_bytes() as u64;
            file.write_all_at(batch.as_bytes(), pos).expect("write");
        }
        let len = batch.size_bytes();
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(BenchmarkId::new("rafka_log", label), |b| {
            let mut i = 0;
            b.iter(|| {
                let r = log
                    .read(Offset(i % n_batches * records), len)
                    .expect("read");
                assert_eq!(r.records.len(), len);
                i += 1;
                r
            })
        });
        group.bench_function(BenchmarkId::new("baseline_file", label), |b| {
            let mut i = 0;
            b.iter(|| {
                // Same work as the engine's read: allocate, then one pread.
                let mut buf = vec![0u8; len];
                let pos = (i % n_batches) as u64 * len as u64;
                file.read_exact_at(&mut buf, pos).expect("read");
                i += 1;
                Bytes::from(buf)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, append_no_fsync, append_fsync_each, read_page_cache);
criterion_main!(benches);
