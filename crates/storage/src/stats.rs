//! Process-wide storage figures for the broker's metrics: the fsyncs made by `flush` (the
//! group commit acks=all waits for, and the interval flush) and how long each took, for
//! every engine (RocksDB's WAL sync counts as one).
//! Process-wide rather than per engine because a process runs one broker; several
//! embedded brokers in one process (tests) add up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rafka_core::histogram::{Histogram, HistogramSnapshot};

static FSYNCS: AtomicU64 = AtomicU64::new(0);
static FSYNC_LATENCY: std::sync::LazyLock<Histogram> = std::sync::LazyLock::new(Histogram::default);

/// Runs one flush fsync, counting it and timing it (failed ones too).
pub(crate) fn timed_fsync(f: &std::fs::File) -> std::io::Result<()> {
    timed_sync(|| f.sync_data())
}

/// Runs one flush sync made some other way (RocksDB's WAL sync), counted and timed the
/// same way.
pub(crate) fn timed_sync<T>(sync: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let r = sync();
    FSYNC_LATENCY.observe(started.elapsed());
    FSYNCS.fetch_add(1, Ordering::Relaxed);
    r
}

/// Flush fsyncs made so far by every engine in this process.
pub fn fsync_count() -> u64 {
    FSYNCS.load(Ordering::Relaxed)
}

/// Their latencies.
pub fn fsync_latency() -> HistogramSnapshot {
    FSYNC_LATENCY.snapshot()
}
