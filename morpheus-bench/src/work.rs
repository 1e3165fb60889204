// SPDX-License-Identifier: GPL-2.0-only
//! A unit of CPU-bound work that the optimiser cannot remove, and helpers to
//! summarise how evenly several threads progressed.

use std::hint::black_box;

/// Performs one work unit (a few microseconds of integer arithmetic on any
/// current CPU) and returns a value that depends on all of it.
#[inline(never)]
pub fn work_unit(seed: u64) -> u64 {
    let mut x = black_box(seed) | 1;
    for _ in 0..2_000 {
        // xorshift64*: cheap, serially dependent, not vectorisable.
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
    }
    black_box(x)
}

/// Measures the time of one [`work_unit`] on this thread, in nanoseconds
/// (the median of a few batches of `batch` units).
pub fn unit_ns(batch: u32) -> f64 {
    let mut times: Vec<f64> = (0..5)
        .map(|i| {
            let t = std::time::Instant::now();
            let mut acc = i;
            for _ in 0..batch.max(1) {
                acc = work_unit(acc);
            }
            black_box(acc);
            t.elapsed().as_nanos() as f64 / f64::from(batch.max(1))
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[2]
}

/// Summary of per-thread progress.
#[derive(Debug, Clone, PartialEq)]
pub struct Spread {
    /// Sum over threads.
    pub total: u64,
    /// Least progress of one thread.
    pub min: u64,
    /// Most progress of one thread.
    pub max: u64,
}

impl Spread {
    /// Summarises per-thread counts; `None` when there are none.
    pub fn of(counts: &[u64]) -> Option<Spread> {
        Some(Spread {
            total: counts.iter().sum(),
            min: *counts.iter().min()?,
            max: *counts.iter().max()?,
        })
    }

    /// min/max: 1.0 is perfectly fair, 0.0 means a thread starved.
    pub fn fairness(&self) -> f64 {
        if self.max == 0 {
            return 0.0;
        }
        self.min as f64 / self.max as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_unit_is_deterministic_and_seed_dependent() {
        assert_eq!(work_unit(1), work_unit(1));
        assert_ne!(work_unit(1), work_unit(2));
    }

    #[test]
    fn spread_summarises_counts() {
        let s = Spread::of(&[10, 20, 5]).unwrap();
        assert_eq!((s.total, s.min, s.max), (35, 5, 20));
        assert!((s.fairness() - 0.25).abs() < 1e-9);
        assert_eq!(Spread::of(&[]), None);
        assert_eq!(Spread::of(&[0, 0]).unwrap().fairness(), 0.0);
    }
}
