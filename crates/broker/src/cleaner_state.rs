//! What the log cleaner knows and has done, kept in [`Shared`](crate::shared::Shared) so a
//! metrics scrape reads it without the cleaner: per compacted partition the clean offset and
//! bytes (checkpointed by `cleaner_checkpoint`) and when it was last cleaned, and the
//! cleaner's totals since start-up (Kafka's `kafka.log:type=LogCleaner` figures).
//!
//! The partition map sits behind one short `parking_lot` lock, taken only for a lookup or
//! an insert (never across a compaction or an `.await`); the totals are relaxed atomics.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rafka_core::{CompactionStats, Offset, TopicPartition};

/// Per compacted partition: the clean offset, the clean bytes, when the cleaner last looked
/// at it (ms; the `max.compaction.lag.ms` clock), and its size when a round last found
/// nothing to clean (skipped until the size changes).
pub(crate) type CleanedMap = HashMap<TopicPartition, (Offset, u64, i64, u64)>;

/// The cleaner's state and totals.
#[derive(Debug, Default)]
pub(crate) struct CleanerState {
    cleaned: parking_lot::Mutex<CleanedMap>,
    /// When each partition's last compaction that made progress finished (ms).
    last_cleaned: parking_lot::Mutex<HashMap<TopicPartition, i64>>,
    runs: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    records_removed: AtomicU64,
    micros: AtomicU64,
    errors: AtomicU64,
    last_error_ms: AtomicI64,
    /// The dirty ratio of the partition the last round chose, in millionths.
    max_dirty_millionths: AtomicU64,
    /// Partitions a worker is compacting now (`log.cleaner.threads` > 1: never two on one).
    busy: parking_lot::Mutex<HashSet<TopicPartition>>,
    /// Serializes checkpoint writes between workers.
    pub(crate) checkpoint: parking_lot::Mutex<()>,
    /// The I/O throttle (`log.cleaner.io.max.bytes.per.second`, shared by every worker):
    /// when the bytes moved so far at the allowed rate would be done.
    io_until: parking_lot::Mutex<Option<Instant>>,
}

/// A partition claimed by one cleaner worker; released when dropped.
pub(crate) struct Claim<'a> {
    state: &'a CleanerState,
    tp: TopicPartition,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.state.busy.lock().remove(&self.tp);
    }
}

/// The cleaner totals a scrape shows.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct CleanerTotals {
    /// Compactions run (successful or not).
    pub runs: u64,
    /// Bytes read by compactions.
    pub bytes_read: u64,
    /// Bytes written by compactions.
    pub bytes_written: u64,
    /// Records removed by compactions.
    pub records_removed: u64,
    /// Seconds spent compacting.
    pub seconds: f64,
    /// Compactions that failed.
    pub errors: u64,
    /// When the last failure happened (ms since the epoch), 0 if none.
    pub last_error_ms: i64,
    /// Kafka's `max-dirty-percent`: the dirty ratio (in percent) of the partition the last
    /// round chose to clean.
    pub max_dirty_percent: f64,
}

/// One compacted partition as the cleaner sees it.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct CleanerPartition {
    /// Bytes below the clean offset.
    pub clean_bytes: u64,
    /// Bytes above it.
    pub dirty_bytes: u64,
    /// When its last compaction that made progress finished (ms), if any since start-up.
    pub last_cleaned_ms: Option<i64>,
}

impl CleanerPartition {
    /// Dirty bytes over all bytes (0 when empty).
    pub fn dirty_ratio(&self) -> f64 {
        let total = self.clean_bytes + self.dirty_bytes;
        if total == 0 {
            0.0
        } else {
            self.dirty_bytes as f64 / total as f64
        }
    }
}

impl CleanerState {
    /// The partition map (held for a lookup or an insert only).
    pub(crate) fn lock(&self) -> parking_lot::MutexGuard<'_, CleanedMap> {
        self.cleaned.lock()
    }

    /// Whether another worker is compacting `tp`.
    pub(crate) fn is_busy(&self, tp: &TopicPartition) -> bool {
        self.busy.lock().contains(tp)
    }

    /// Claims `tp` for this worker, unless another one holds it.
    pub(crate) fn claim(&self, tp: &TopicPartition) -> Option<Claim<'_>> {
        self.busy.lock().insert(tp.clone()).then(|| Claim {
            state: self,
            tp: tp.clone(),
        })
    }

    /// How long a worker waits before its next compaction to keep the cleaners' I/O at
    /// the allowed rate (zero when under it).
    pub(crate) fn throttle_wait(&self) -> Duration {
        self.io_until.lock().map_or(Duration::ZERO, |t| {
            t.saturating_duration_since(Instant::now())
        })
    }

    /// Charges `bytes` moved by a compaction that began at `started` to the throttle
    /// (`rate` bytes per second; `f64::MAX` is unlimited).
    fn charge(&self, started: Instant, bytes: u64, rate: f64) {
        if rate >= f64::MAX || bytes == 0 {
            return;
        }
        let cost = Duration::try_from_secs_f64(bytes as f64 / rate).unwrap_or(Duration::MAX);
        let mut until = self.io_until.lock();
        let from = until.map_or(started, |u| u.max(started));
        *until = from.checked_add(cost).or(*until);
    }

    /// A round chose a partition whose dirty ratio is `ratio`.
    pub(crate) fn chose(&self, ratio: f64) {
        self.max_dirty_millionths
            .store((ratio.clamp(0.0, 1.0) * 1e6) as u64, Ordering::Relaxed);
    }

    /// A compaction of `tp` that began at `started` finished; its I/O is charged to the
    /// throttle at `rate` bytes per second.
    pub(crate) fn ran(
        &self,
        tp: &TopicPartition,
        stats: &CompactionStats,
        started: Instant,
        rate: f64,
    ) {
        let took = started.elapsed();
        let now_ms = rafka_core::Timestamp::now().0;
        self.charge(started, stats.bytes_read + stats.bytes_written, rate);
        self.runs.fetch_add(1, Ordering::Relaxed);
        self.bytes_read
            .fetch_add(stats.bytes_read, Ordering::Relaxed);
        self.bytes_written
            .fetch_add(stats.bytes_written, Ordering::Relaxed);
        self.records_removed
            .fetch_add(stats.records_removed, Ordering::Relaxed);
        self.micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        self.last_cleaned.lock().insert(tp.clone(), now_ms);
    }

    /// A compaction that began at `started` failed.
    pub(crate) fn failed(&self, started: Instant) {
        let took = started.elapsed();
        let now_ms = rafka_core::Timestamp::now().0;
        self.runs.fetch_add(1, Ordering::Relaxed);
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        self.last_error_ms.store(now_ms, Ordering::Relaxed);
    }

    /// The totals now.
    pub(crate) fn totals(&self) -> CleanerTotals {
        CleanerTotals {
            runs: self.runs.load(Ordering::Relaxed),
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
            records_removed: self.records_removed.load(Ordering::Relaxed),
            seconds: self.micros.load(Ordering::Relaxed) as f64 / 1e6,
            errors: self.errors.load(Ordering::Relaxed),
            last_error_ms: self.last_error_ms.load(Ordering::Relaxed),
            max_dirty_percent: self.max_dirty_millionths.load(Ordering::Relaxed) as f64 / 1e4,
        }
    }

    /// How the cleaner sees `tp` when it holds `size` bytes.
    pub(crate) fn partition(&self, tp: &TopicPartition, size: u64) -> CleanerPartition {
        let clean = self.cleaned.lock().get(tp).map_or(0, |c| c.1).min(size);
        CleanerPartition {
            clean_bytes: clean,
            dirty_bytes: size - clean,
            last_cleaned_ms: self.last_cleaned.lock().get(tp).copied(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new(rafka_core::TopicName::new("t").unwrap(), p)
    }

    #[test]
    fn a_partition_is_claimed_by_one_worker_at_a_time() {
        let s = CleanerState::default();
        let a = s.claim(&tp(0)).expect("free");
        assert!(s.is_busy(&tp(0)));
        assert!(s.claim(&tp(0)).is_none(), "never two on one partition");
        let b = s.claim(&tp(1)).expect("another partition is free");
        drop(a);
        assert!(!s.is_busy(&tp(0)));
        assert!(s.claim(&tp(0)).is_some());
        drop(b);
    }

    #[test]
    fn the_throttle_keeps_the_rate_across_compactions() {
        let s = CleanerState::default();
        let stats = CompactionStats {
            cleaned_to: Offset(1),
            clean_bytes: 0,
            bytes_read: 600_000,
            bytes_written: 400_000,
            records_removed: 3,
            batches_removed: 0,
        };
        // Unlimited: no wait.
        s.ran(&tp(0), &stats, Instant::now(), f64::MAX);
        assert_eq!(s.throttle_wait(), Duration::ZERO);
        // 1 MB at 10 MB/s: 100 ms; two compactions in a row: 200 ms.
        let now = Instant::now();
        s.ran(&tp(0), &stats, now, 10e6);
        s.ran(&tp(1), &stats, now, 10e6);
        let w = s.throttle_wait();
        assert!(
            w > Duration::from_millis(150) && w <= Duration::from_millis(200),
            "{w:?}"
        );
        let t = s.totals();
        assert_eq!(
            (t.runs, t.bytes_read, t.bytes_written, t.records_removed),
            (3, 1_800_000, 1_200_000, 9)
        );
    }
}
