//! A latency histogram cheap enough for the request path: fixed bucket bounds, one relaxed
//! atomic add per bucket hit plus two for the sum and the count. No lock, no allocation.
//! Rendered by the broker in Prometheus' cumulative form.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds (the last, +Inf, is implicit). From 50 µs (a
/// produce served from memory) to 10 s (a stuck fsync).
pub const BUCKET_BOUNDS_SECONDS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 10.0,
];

const BUCKET_BOUNDS_NANOS: [u64; 16] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    10_000_000_000,
];

/// Counts of observations per bucket (not cumulative), their sum and their number.
#[derive(Debug, Default)]
pub struct Histogram {
    /// One more than the bounds: the last is +Inf.
    buckets: [AtomicU64; 17],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

/// A consistent-enough copy of a [`Histogram`] for rendering.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Observations per bucket, not cumulative; index 16 is above the last bound.
    pub buckets: [u64; 17],
    /// Sum of the observations in nanoseconds.
    pub sum_nanos: u64,
    /// Number of observations.
    pub count: u64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = BUCKET_BOUNDS_NANOS.partition_point(|b| *b < nanos);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The current figures. Concurrent observations may be half-counted (a bucket without
    /// the count yet); Prometheus tolerates that skew between scrapes.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut s = HistogramSnapshot::default();
        for (out, b) in s.buckets.iter_mut().zip(&self.buckets) {
            *out = b.load(Ordering::Relaxed);
        }
        s.sum_nanos = self.sum_nanos.load(Ordering::Relaxed);
        s.count = self.count.load(Ordering::Relaxed);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_bucket_whose_bound_is_not_below_them() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(50)); // exactly the first bound: le="0.00005"
        h.observe(Duration::from_micros(51));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.buckets[0], 1);
        assert_eq!(s.buckets[1], 1);
        assert_eq!(s.buckets[6], 1, "3 ms is in le=0.005");
        assert_eq!(s.buckets[16], 1, "60 s is above every bound");
        assert_eq!(s.count, 4);
        assert_eq!(s.sum_nanos, 50_000 + 51_000 + 3_000_000 + 60_000_000_000);
    }

    #[test]
    fn the_two_bound_tables_agree() {
        for (s, n) in BUCKET_BOUNDS_SECONDS.iter().zip(BUCKET_BOUNDS_NANOS) {
            assert_eq!((s * 1e9).round() as u64, n);
        }
    }
}
