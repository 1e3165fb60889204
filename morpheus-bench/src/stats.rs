// SPDX-License-Identifier: GPL-2.0-only
//! Percentiles, CDFs and ratios of latency samples (nanoseconds).

use serde::{Deserialize, Serialize};

/// Summary of a set of latency samples, in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of samples.
    pub count: usize,
    /// Arithmetic mean.
    pub mean_ns: u64,
    /// Median.
    pub p50_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// Largest sample.
    pub max_ns: u64,
}

impl Summary {
    /// Summarises `samples` (sorted in place). All zero when empty.
    pub fn of(samples: &mut [u64]) -> Summary {
        samples.sort_unstable();
        if samples.is_empty() {
            return Summary::default();
        }
        let sum: u128 = samples.iter().map(|&s| u128::from(s)).sum();
        Summary {
            count: samples.len(),
            mean_ns: (sum / samples.len() as u128) as u64,
            p50_ns: percentile(samples, 0.50),
            p99_ns: percentile(samples, 0.99),
            p999_ns: percentile(samples, 0.999),
            max_ns: *samples.last().unwrap_or(&0),
        }
    }
}

/// Nearest-rank percentile `q` (0..=1) of sorted samples; 0 when empty.
pub fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The empirical CDF of sorted samples as about `points` (value, fraction)
/// pairs or fewer, always including the largest sample: spaced evenly in
/// the fraction for the body of the distribution and in the nines of the
/// tail (see [`thin_cdf`]), so that p99 and p99.9 stay visible.
pub fn cdf(sorted: &[u64], points: usize) -> Vec<(u64, f64)> {
    let n = sorted.len();
    if n == 0 || points == 0 {
        return Vec::new();
    }
    // The fraction at or below each distinct value.
    let mut full: Vec<(u64, f64)> = Vec::new();
    for (i, &x) in sorted.iter().enumerate() {
        if sorted.get(i + 1) != Some(&x) {
            full.push((x, (i + 1) as f64 / n as f64));
        }
    }
    thin_cdf(&full, points, n)
}

/// Pools CDFs (as [`cdf`] returns them) of `parts`, each with the number of
/// samples it stands for, into one CDF of about `points` points or fewer
/// ([`thin_cdf`]): at each value the fraction is the sample-weighted mean
/// of the parts' fractions (each part a step function: its fraction at the
/// largest value not above). Used to plot several rounds as one
/// distribution.
pub fn pool_cdfs(parts: &[(usize, &[(u64, f64)])], points: usize) -> Vec<(u64, f64)> {
    let total: usize = parts.iter().map(|p| p.0).sum();
    let mut xs: Vec<u64> = parts.iter().flat_map(|p| p.1.iter().map(|q| q.0)).collect();
    xs.sort_unstable();
    xs.dedup();
    if total == 0 || xs.is_empty() || points == 0 {
        return Vec::new();
    }
    let at = |cdf: &[(u64, f64)], x: u64| {
        let k = cdf.partition_point(|q| q.0 <= x);
        if k == 0 { 0.0 } else { cdf[k - 1].1 }
    };
    let pooled: Vec<(u64, f64)> = xs
        .iter()
        .map(|&x| {
            let sum: f64 = parts.iter().map(|(n, c)| *n as f64 * at(c, x)).sum();
            (x, sum / total as f64)
        })
        .collect();
    thin_cdf(&pooled, points, total)
}

/// Keeps about `points` of a CDF's points or fewer (of `samples` samples),
/// always the last: a point is kept when the fraction moved by 1/`points`
/// since the last kept one, or the tail fraction (1 - fraction, down to
/// 1/`samples`) moved by 1/`points` of its decades. A plot with a linear
/// axis then sees the body, one with a log tail axis the nines.
pub fn thin_cdf(cdf: &[(u64, f64)], points: usize, samples: usize) -> Vec<(u64, f64)> {
    let Some(&last) = cdf.last() else {
        return Vec::new();
    };
    let floor = 1.0 / samples.max(1) as f64;
    let nines = |f: f64| -(1.0 - f).max(floor).log10();
    let step = 1.0 / points.max(1) as f64;
    let nines_step = nines(1.0) * step;
    let mut out: Vec<(u64, f64)> = Vec::new();
    for &p in cdf {
        let keep = match out.last() {
            None => true,
            Some(&(_, f)) => p.1 - f >= step || nines(p.1) - nines(f) >= nines_step,
        };
        if keep {
            out.push(p);
        }
    }
    if out.last() != Some(&last) {
        out.push(last);
    }
    out
}

/// `a / b`, or NaN when `b` is zero (printed as "n/a").
pub fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 { f64::NAN } else { a / b }
}

/// Nanoseconds as milliseconds with a sensible number of digits.
pub fn fmt_ms(ns: u64) -> String {
    let ms = ns as f64 / 1e6;
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else if ms >= 10.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.2}")
    }
}

/// A ratio with two decimals, or "n/a".
pub fn fmt_ratio(r: f64) -> String {
    if r.is_finite() {
        format!("{r:.2}x")
    } else {
        "n/a".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut v: Vec<u64> = (1..=1000).rev().collect();
        let s = Summary::of(&mut v);
        assert_eq!(
            (s.p50_ns, s.p99_ns, s.p999_ns, s.max_ns),
            (500, 990, 999, 1000)
        );
        assert_eq!(s.count, 1000);
        assert_eq!(s.mean_ns, 500);
        assert_eq!(percentile(&[7], 0.999), 7);
        assert_eq!(Summary::of(&mut []), Summary::default());
    }

    #[test]
    fn cdf_is_monotonic_and_ends_at_one() {
        let v: Vec<u64> = (0..10_000).collect();
        let c = cdf(&v, 100);
        assert!(c.len() <= 201, "{} points", c.len());
        assert!(c.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1));
        assert_eq!(c.last(), Some(&(9_999, 1.0)));
        assert!(cdf(&[], 10).is_empty());
        // Repeated values are one point, at their highest fraction.
        assert_eq!(cdf(&[5, 5, 5, 9], 10), vec![(5, 0.75), (9, 1.0)]);
    }

    #[test]
    fn cdf_keeps_the_tail() {
        // 100 000 samples 0..100 000: p99, p99.9 and p99.99 are resolved
        // (a point within a tenth of a nine of each), not only the body.
        let v: Vec<u64> = (0..100_000).collect();
        let c = cdf(&v, 100);
        for q in [0.5f64, 0.99, 0.999, 0.9999] {
            let near = c.iter().any(|p| {
                let tail = (1.0 - p.1).max(1e-5);
                ((1.0 - q).log10() - tail.log10()).abs() < 0.1
            });
            assert!(near, "no point near p{} in {c:?}", q * 100.0);
        }
        // Evenly spaced only in the fraction, the last 1 % would get one
        // point of 100.
        let tail = c.iter().filter(|p| p.1 > 0.99).count();
        assert!(tail >= 20, "{tail} points above p99");
    }

    #[test]
    fn pooled_cdfs_weigh_parts_by_samples() {
        let a = cdf(&[1, 2], 10);
        let b = cdf(&[3, 4, 5, 6], 10);
        let p = pool_cdfs(&[(2, &a), (4, &b)], 100);
        assert_eq!(p.first(), Some(&(1, 1.0 / 6.0)));
        assert_eq!(p[1], (2, 2.0 / 6.0));
        assert_eq!(p[2], (3, 3.0 / 6.0));
        assert_eq!(p.last(), Some(&(6, 1.0)));
        // Downsampled, it still ends at the largest value.
        let q = pool_cdfs(&[(2, &a), (4, &b)], 2);
        assert!(q.len() <= 3 && q.last() == Some(&(6, 1.0)), "{q:?}");
        assert!(pool_cdfs(&[(0, &[])], 10).is_empty());
    }

    #[test]
    fn ratios_and_formatting() {
        assert_eq!(ratio(1.0, 2.0), 0.5);
        assert!(ratio(1.0, 0.0).is_nan());
        assert_eq!(fmt_ratio(f64::NAN), "n/a");
        assert_eq!(fmt_ratio(1.234), "1.23x");
        assert_eq!(fmt_ms(1_500_000), "1.50");
        assert_eq!(fmt_ms(250_000_000), "250");
    }
}
