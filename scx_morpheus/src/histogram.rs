// SPDX-License-Identifier: GPL-2.0-only
//! The BPF program's log2(us) histograms (`hint_response_hist`, `hint_delay_hist`,
//! `timer_late_hist`) read as what they can honestly say: cumulative
//! buckets with upper bounds in seconds, and percentiles as bucket bounds.
//!
//! `hist_add()` in main.bpf.c counts a duration of `us` whole microseconds
//! in bucket `floor(log2(us))` (0 and 1 us in bucket 0), so bucket `i` holds
//! durations below `2^(i+1)` us, except the last, a clamp that holds
//! everything from its floor up. [`BOUNDED`] buckets have a bound; the last
//! is counted only in the `+Inf` bucket. The BPF program keeps no sum of
//! the durations, so none is reported.

/// Buckets whose contents have an upper bound: every bucket but the last.
pub const BOUNDED: usize =
    crate::bpf_intf::morpheus_sched_consts_MORPHEUS_RESP_BUCKETS as usize - 1;

/// Upper bound of bucket `i` in microseconds (exclusive: durations in it
/// are shorter).
fn bound_us(i: usize) -> u64 {
    1u64 << (i + 1)
}

/// The histogram as OpenMetrics buckets: (upper bound in seconds,
/// observations at most that long, cumulative) for every bounded bucket,
/// and the number of observations (the `+Inf` bucket).
pub fn cumulative_seconds(hist: &[u64]) -> (Vec<(f64, u64)>, u64) {
    let mut seen = 0u64;
    let buckets = hist
        .iter()
        .take(BOUNDED)
        .enumerate()
        .map(|(i, n)| {
            seen = seen.saturating_add(*n);
            (bound_us(i) as f64 / 1e6, seen)
        })
        .collect();
    let count = hist.iter().fold(0u64, |a, n| a.saturating_add(*n));
    (buckets, count)
}

/// Percentile `q` (0..1) of a histogram: the upper bound of the bucket it
/// falls in, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Percentile {
    /// Nothing was observed.
    Empty,
    /// Below this many microseconds.
    Below(u64),
    /// In an open-ended bucket: at least this many microseconds.
    AtLeast(u64),
}

/// Percentile `q` (0..1) of `hist`.
pub fn percentile(hist: &[u64], q: f64) -> Percentile {
    let total = hist.iter().fold(0u64, |a, n| a.saturating_add(*n));
    if total == 0 {
        return Percentile::Empty;
    }
    let want = ((total as f64 * q).ceil() as u64).clamp(1, total);
    let mut seen = 0u64;
    for (i, n) in hist.iter().enumerate() {
        seen = seen.saturating_add(*n);
        if seen >= want {
            return if i < BOUNDED {
                Percentile::Below(bound_us(i))
            } else {
                Percentile::AtLeast(bound_us(BOUNDED - 1))
            };
        }
    }
    Percentile::AtLeast(bound_us(BOUNDED - 1))
}

impl std::fmt::Display for Percentile {
    /// At most 7 columns: `-`, `<16us`, `<2.1ms`, `<263ms`, `<4.2s`,
    /// `>=4.2s`. A bound is rounded up (still a bound), a floor down.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match *self {
            Percentile::Empty => "-".to_string(),
            Percentile::Below(us) if us < 1_000 => format!("<{us}us"),
            Percentile::Below(us) if us < 10_000 => {
                format!("<{:.1}ms", us.div_ceil(100) as f64 / 10.0)
            }
            Percentile::Below(us) if us < 1_000_000 => format!("<{}ms", us.div_ceil(1_000)),
            Percentile::Below(us) => format!("<{:.1}s", us.div_ceil(100_000) as f64 / 10.0),
            Percentile::AtLeast(us) => format!(">={:.1}s", (us / 100_000) as f64 / 10.0),
        };
        f.pad(&text)
    }
}

/// Bucket-wise `cur - prev`: the observations made between two readings.
pub fn delta(cur: &[u64], prev: &[u64]) -> Vec<u64> {
    cur.iter()
        .enumerate()
        .map(|(i, n)| n.saturating_sub(prev.get(i).copied().unwrap_or(0)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: usize = crate::bpf_intf::morpheus_sched_consts_MORPHEUS_RESP_BUCKETS as usize;

    #[test]
    fn buckets_are_cumulative_with_bounds_in_seconds() {
        let mut h = [0u64; N];
        h[0] = 2; // 0..2 us
        h[3] = 5; // 8..16 us
        h[9] = 1; // 512..1024 us
        let (buckets, count) = cumulative_seconds(&h);
        assert_eq!(count, 8);
        assert_eq!(buckets.len(), BOUNDED);
        // Seconds, not microseconds: bucket 3 holds durations below 16 us.
        assert_eq!(buckets[0], (0.000002, 2));
        assert_eq!(buckets[3], (0.000016, 7));
        assert_eq!(buckets[9], (0.001024, 8));
        // Cumulative: each bucket counts everything at most its bound.
        assert_eq!(buckets[2].1, 2);
        assert_eq!(buckets.last().unwrap().1, 8);
        for pair in buckets.windows(2) {
            assert!(pair[0].0 < pair[1].0, "bounds increase: {pair:?}");
            assert!(pair[0].1 <= pair[1].1, "counts never decrease: {pair:?}");
        }
    }

    #[test]
    fn the_clamped_buckets_count_only_in_inf() {
        let mut h = [0u64; N];
        h[BOUNDED] = 3; // past every bound
        h[1] = 1;
        let (buckets, count) = cumulative_seconds(&h);
        assert_eq!(count, 4);
        // The largest bound says nothing about the clamped durations.
        assert_eq!(buckets.last().unwrap().1, 1);
        assert_eq!(percentile(&h, 0.99), Percentile::AtLeast(1 << BOUNDED));
    }

    #[test]
    fn percentiles_are_bucket_bounds() {
        let mut h = [0u64; N];
        assert_eq!(percentile(&h, 0.5), Percentile::Empty);
        h[3] = 90; // 8..16 us
        h[10] = 10; // 1024..2048 us
        assert_eq!(percentile(&h, 0.5), Percentile::Below(16));
        assert_eq!(percentile(&h, 0.9), Percentile::Below(16));
        assert_eq!(percentile(&h, 0.99), Percentile::Below(2048));
    }

    #[test]
    fn percentiles_print_in_at_most_seven_columns() {
        assert_eq!(Percentile::Empty.to_string(), "-");
        assert_eq!(Percentile::Below(16).to_string(), "<16us");
        assert_eq!(Percentile::Below(2048).to_string(), "<2.1ms");
        assert_eq!(Percentile::Below(262_144).to_string(), "<263ms");
        assert_eq!(Percentile::Below(1 << 22).to_string(), "<4.2s");
        assert_eq!(Percentile::AtLeast(1 << 22).to_string(), ">=4.1s");
        for i in 0..N {
            assert!(Percentile::Below(bound_us(i)).to_string().len() <= 7);
        }
    }

    #[test]
    fn delta_subtracts_bucket_by_bucket() {
        assert_eq!(delta(&[5, 7, 1], &[2, 7, 0]), vec![3, 0, 1]);
        // A reading from before a restart (larger) never underflows.
        assert_eq!(delta(&[1, 0], &[4, 4]), vec![0, 0]);
        // A first reading (nothing before it) is the histogram itself.
        assert_eq!(delta(&[1, 2], &[]), vec![1, 2]);
    }
}
