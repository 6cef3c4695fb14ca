//! Latency histograms: log-linear buckets (4 per power of two) over microseconds, so a
//! percentile is known to within 25% from 1 µs to hours in 128 counters. Each worker
//! owns its histograms (single writer, relaxed stores, like its counters); readers merge
//! the cores' buckets and read percentiles off the merged counts.
use std::sync::atomic::{AtomicU64, Ordering};

pub const BUCKETS: usize = 128;

/// The bucket of a value in microseconds.
#[inline]
pub fn bucket(us: u64) -> usize {
    if us < 4 {
        return us as usize;
    }
    let octave = 63 - us.leading_zeros() as usize; // >= 2
    let sub = ((us >> (octave - 2)) & 3) as usize;
    (4 * (octave - 1) + sub).min(BUCKETS - 1)
}

/// The largest value that falls in bucket `i` (what a percentile reports).
pub fn upper_bound(i: usize) -> u64 {
    if i < 4 {
        return i as u64;
    }
    let octave = i / 4 + 1;
    let sub = (i % 4) as u64;
    let width = 1u64 << (octave - 2);
    ((4 + sub) << (octave - 2)) + width - 1
}

#[derive(Debug)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS],
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Histogram {
    /// Records one value. Owning worker only (single writer).
    #[inline]
    pub fn record(&self, us: u64) {
        let c = &self.counts[bucket(us)];
        c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    pub fn add_into(&self, acc: &mut [u64; BUCKETS]) {
        for (a, c) in acc.iter_mut().zip(&self.counts) {
            *a += c.load(Ordering::Relaxed);
        }
    }
}

/// Percentiles of merged bucket counts, as JSON: count, p50, p90, p99, p999, max (µs).
pub fn summary(counts: &[u64; BUCKETS]) -> serde_json::Value {
    let total: u64 = counts.iter().sum();
    let pct = |p: f64| -> u64 {
        if total == 0 {
            return 0;
        }
        let rank = ((p * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return upper_bound(i);
            }
        }
        upper_bound(BUCKETS - 1)
    };
    let max = counts
        .iter()
        .rposition(|c| *c > 0)
        .map(upper_bound)
        .unwrap_or(0);
    serde_json::json!({
        "count": total, "p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99), "p999": pct(0.999), "max": max,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_bounds_hold() {
        let mut last = 0;
        for v in 0..100_000u64 {
            let b = bucket(v);
            assert!(b >= last, "bucket order at {v}");
            last = b;
            assert!(
                v <= upper_bound(b),
                "{v} above its bucket's bound {}",
                upper_bound(b)
            );
            if b > 0 {
                assert!(v > upper_bound(b - 1), "{v} belongs below");
            }
            if v >= 4 {
                assert!(upper_bound(b) - v < v / 4 + 1, "within 25% at {v}");
            }
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let h = Histogram::default();
        for v in 1..=1000u64 {
            h.record(v);
        }
        let mut acc = [0; BUCKETS];
        h.add_into(&mut acc);
        let s = summary(&acc);
        assert_eq!(s["count"], 1000);
        let p50 = s["p50"].as_u64().unwrap();
        assert!((500..=640).contains(&p50), "p50 {p50}");
        let p99 = s["p99"].as_u64().unwrap();
        assert!((990..=1023).contains(&p99), "p99 {p99}");
        assert_eq!(summary(&[0; BUCKETS])["p50"], 0);
    }
}
