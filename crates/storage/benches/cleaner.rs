//! The log cleaner against the machine: one partition of the log engine holding
//! `RAFKA_BENCH_MIB` MiB (default 1024) of 1 KiB updates over `RAFKA_BENCH_KEYS` keys
//! (default 10,000), in 64 MiB segments. Measured in one run:
//!
//! - a plain sequential read of the whole log through the engine (the baseline);
//! - one compaction of everything but the active segment with the broker's default dedupe
//!   buffer (128 MiB), and one with a buffer just big enough for the keys: MB/s of log
//!   cleaned, the ratio to the sequential read, and the process's peak resident memory
//!   during each (reset before it, from `/proc/self/clear_refs`), against the dedupe
//!   setting; then one with a buffer for a tenth of the keys, which stops where the map
//!   fills (Kafka's cleaner does the same and resumes there on its next run).
//!
//! Afterwards every key's latest value is checked to be readable at its original offset.
//! Both passes read data the page cache holds (24 GiB machines): the ratio compares CPU
//! and copying, not the disk.
//!
//! Run: `cargo bench -p rafka-storage --bench cleaner`. `cargo test --benches` runs it at
//! 16 MiB as a smoke test.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rafka_core::batch::BatchBuilder;
use rafka_core::compact::CompactionPlan;
use rafka_core::{
    LogConfig, Offset, PartitionLog, RecordBatch, StorageEngine, Timestamp, TopicName,
    TopicPartition, ValidatedBatch,
};
use rafka_storage::LogEngine;

const VALUE_BYTES: usize = 1000;
const RECORDS_PER_BATCH: usize = 16;
const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
const DEFAULT_DEDUPE: usize = 128 * 1024 * 1024;

fn tp() -> TopicPartition {
    TopicPartition::new(TopicName::new("cleaner-bench").expect("valid"), 0)
}

fn mb_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / d.as_secs_f64()
}

/// A line of `/proc/self/status` in KiB (`VmHWM`, `VmRSS`); 0 where there is none.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Resets the peak resident size to the current one (Linux 4.0+; ignored elsewhere).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Writes `bytes` of updates, key `i % keys` for the i-th record, value = the record's
/// number padded to 1 KiB. Returns each key's last record number.
fn fill(log: &dyn PartitionLog, bytes: u64, keys: u64) -> HashMap<u64, u64> {
    let mut latest = HashMap::new();
    let mut n = 0u64;
    let mut written = 0u64;
    let pad = vec![b'.'; VALUE_BYTES - 20];
    while written < bytes {
        let mut b = BatchBuilder::new(Offset(0));
        for _ in 0..RECORDS_PER_BATCH {
            let key = (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 7) % keys;
            let mut value = format!("{n:020}").into_bytes();
            value.extend_from_slice(&pad);
            b = b.kv(format!("key-{key:06}").as_bytes(), &value, Timestamp(0));
            latest.insert(key, n);
            n += 1;
        }
        let batch = b.build();
        written += batch.size_bytes() as u64;
        log.append(ValidatedBatch::new(batch).expect("valid"))
            .expect("append");
    }
    log.flush().expect("flush");
    latest
}

/// Reads the whole log in 1 MiB fetches, handing each batch to `visit`; returns the bytes.
fn read_all(log: &dyn PartitionLog, mut visit: impl FnMut(&RecordBatch)) -> u64 {
    let mut next = log.log_start_offset();
    let mut bytes = 0u64;
    while next < log.log_end_offset() {
        let r = log.read(next, 1024 * 1024).expect("read");
        bytes += r.records.len() as u64;
        let got = RecordBatch::split_all(r.records).expect("whole batches");
        next = got.last().expect("a batch").next_offset();
        got.iter().for_each(&mut visit);
    }
    bytes
}

struct Pass {
    label: String,
    dedupe: usize,
    seconds: f64,
    mb_per_s: f64,
    cleaned_to: i64,
    end: i64,
    bytes_read: u64,
    bytes_written: u64,
    peak_kib: u64,
    peak_abs_kib: u64,
}

fn compact(label: &str, log: &dyn PartitionLog, dedupe: usize) -> Pass {
    let before = status_kib("VmRSS");
    reset_peak();
    let (size, end) = (log.size_bytes(), log.log_end_offset());
    let start = Instant::now();
    let stats = log
        .compact(&CompactionPlan {
            first_dirty: log.log_start_offset(),
            end: log.log_end_offset(),
            now: Timestamp(i64::MAX / 4),
            min_compaction_lag_ms: 0,
            delete_retention_ms: 86_400_000,
            dedupe_buffer_bytes: dedupe,
            codec: rafka_core::CompactionCodec::none(),
        })
        .expect("compact");
    let elapsed = start.elapsed();
    Pass {
        label: label.to_string(),
        dedupe,
        seconds: elapsed.as_secs_f64(),
        // The records are all one size: the bytes below `cleaned_to` are its share of the log.
        mb_per_s: mb_per_s(
            (size as f64 * stats.cleaned_to.0 as f64 / end.0.max(1) as f64) as u64,
            elapsed,
        ),
        cleaned_to: stats.cleaned_to.0,
        end: end.0,
        bytes_read: stats.bytes_read,
        bytes_written: stats.bytes_written,
        peak_kib: status_kib("VmHWM").saturating_sub(before),
        peak_abs_kib: status_kib("VmHWM"),
    }
}

fn run(root: &Path, mib: u64, keys: u64) {
    let cfg = LogConfig {
        segment_bytes: SEGMENT_BYTES.min((mib * 1024 * 1024 / 4).max(1024 * 1024)),
        compact: true,
        ..LogConfig::default()
    };
    // Two copies of the same log: one for each dedupe setting.
    let engine: Arc<dyn StorageEngine> =
        Arc::new(LogEngine::open(root.to_path_buf(), cfg.clone()).expect("log engine"));
    let a = engine.open(&tp(), &cfg).expect("partition");
    let latest = fill(a.as_ref(), mib * 1024 * 1024, keys);
    let b_tp = TopicPartition::new(TopicName::new("cleaner-bench-2").expect("valid"), 0);
    let b = engine.open(&b_tp, &cfg).expect("partition");
    fill(b.as_ref(), mib * 1024 * 1024, keys);
    let c_tp = TopicPartition::new(TopicName::new("cleaner-bench-3").expect("valid"), 0);
    let c = engine.open(&c_tp, &cfg).expect("partition");
    fill(c.as_ref(), mib * 1024 * 1024, keys);

    let start = Instant::now();
    let read_bytes = read_all(a.as_ref(), |_| {});
    let read = mb_per_s(read_bytes, start.elapsed());

    // Room for the keys twice over: the map never fills, and it is 1/1000 of the default.
    let small = (2 * keys as usize * rafka_core::compact::OFFSET_MAP_ENTRY_BYTES).max(4096);
    let passes = [
        compact("default dedupe buffer", a.as_ref(), DEFAULT_DEDUPE),
        compact("dedupe buffer for 2× the keys", b.as_ref(), small),
        // A map that fills after a tenth of the keys: the cleaning stops where it filled.
        compact("dedupe buffer for 1/10 of the keys", c.as_ref(), small / 20),
    ];

    // The data: every key's latest value at its place; nothing duplicated in the clean part.
    for log in [&a, &b, &c] {
        let mut seen: HashMap<u64, u64> = HashMap::new();
        let mut records = 0u64;
        let after_bytes = read_all(log.as_ref(), |batch| {
            for (_, r) in batch
                .decode_uncompressed_with_offsets()
                .expect("uncompressed")
            {
                let key: u64 = std::str::from_utf8(&r.key.expect("keyed")[4..])
                    .expect("utf-8")
                    .parse()
                    .expect("key number");
                let value = r.value.expect("no tombstones written");
                let n: u64 = std::str::from_utf8(&value[..20])
                    .expect("utf-8")
                    .parse()
                    .expect("record number");
                seen.insert(key, n);
                records += 1;
            }
        });
        assert_eq!(seen, latest, "every key's latest value survives");
        println!(
            "after compaction: {records} records, {:.1} MiB (from {mib} MiB)",
            after_bytes as f64 / (1024.0 * 1024.0)
        );
    }

    println!(
        "\n{mib} MiB of 1 KiB updates over {keys} keys, one partition, {} MiB segments; \
         sequential read of the same log: {read:.0} MB/s\n\n\
         | pass | dedupe buffer | cleaned to offset | seconds | cleaned MB/s | × sequential read | read MiB | written MiB | peak RSS growth | peak RSS |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        cfg.segment_bytes >> 20
    );
    for p in passes {
        println!(
            "| {} | {} KiB | {} of {} | {:.2} | {:.0} | {:.2} | {:.0} | {:.1} | {} MiB | {} MiB |",
            p.label,
            p.dedupe >> 10,
            p.cleaned_to,
            p.end,
            p.seconds,
            p.mb_per_s,
            p.mb_per_s / read,
            p.bytes_read as f64 / (1024.0 * 1024.0),
            p.bytes_written as f64 / (1024.0 * 1024.0),
            p.peak_kib >> 10,
            p.peak_abs_kib >> 10
        );
    }
    drop((a, b, c));
    engine.close().expect("close");
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run small then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
    let mib: u64 = env("RAFKA_BENCH_MIB").unwrap_or(if quick { 16 } else { 1024 });
    let keys: u64 = env("RAFKA_BENCH_KEYS").unwrap_or(10_000);
    let root = match std::env::var("RAFKA_BENCH_DIR") {
        Ok(dir) => tempfile::tempdir_in(dir),
        Err(_) => tempfile::tempdir(),
    }
    .expect("bench directory");
    run(root.path(), mib, keys);
}
