// SPDX-License-Identifier: GPL-2.0-only
//! The yield ledger: every yield by cause, every hint and how fast it was
//! answered. One per worker (written by its thread, read by anyone), plus a
//! process-wide one that absorbs workers when their threads exit.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use morpheus_common::YieldCause;

const CAUSES: usize = 7;
const _: () = assert!(CAUSES == morpheus_common::abi::MORPHEUS_YIELD_CAUSE_NR as usize);

/// Upper bounds (nanoseconds) of the hint-response histogram buckets; a last
/// implicit bucket holds everything slower.
pub const RESPONSE_BUCKETS_NS: [u64; 9] = [
    10_000,
    100_000,
    500_000,
    1_000_000,
    5_000_000,
    10_000_000,
    50_000_000,
    100_000_000,
    500_000_000,
];

/// Counters of one worker or of the process (all relaxed atomics).
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    yields: [AtomicU64; CAUSES],
    yields_total: AtomicU64,
    hints_seen: AtomicU64,
    hints_answered: AtomicU64,
    hints_late: AtomicU64,
    hints_ignored: AtomicU64,
    checkpoints_deferred: AtomicU64,
    checkpoints_slow: AtomicU64,
    response: [AtomicU64; RESPONSE_BUCKETS_NS.len() + 1],
    response_sum_ns: AtomicU64,
}

impl Ledger {
    /// One yield with this cause.
    pub(crate) fn yielded(&self, cause: YieldCause, n: u64) {
        self.yields[cause.as_u32() as usize].fetch_add(n, Relaxed);
        self.yields_total.fetch_add(n, Relaxed);
    }

    /// `n` new kernel hints observed.
    pub(crate) fn hints_seen(&self, n: u64) {
        self.hints_seen.fetch_add(n, Relaxed);
    }

    /// A hint answered `response_ns` after it was issued.
    pub(crate) fn hint_answered(&self, response_ns: u64, grace_ns: u64) {
        self.hints_answered.fetch_add(1, Relaxed);
        if response_ns > grace_ns {
            self.hints_late.fetch_add(1, Relaxed);
        }
        let bucket = RESPONSE_BUCKETS_NS
            .iter()
            .position(|&b| response_ns <= b)
            .unwrap_or(RESPONSE_BUCKETS_NS.len());
        self.response[bucket].fetch_add(1, Relaxed);
        self.response_sum_ns.fetch_add(response_ns, Relaxed);
    }

    /// A hint seen in DETERMINISTIC mode, deliberately not answered.
    pub(crate) fn hint_ignored(&self) {
        self.hints_ignored.fetch_add(1, Relaxed);
    }

    /// A yield deferred because the worker was in a critical section.
    pub(crate) fn checkpoint_deferred(&self) {
        self.checkpoints_deferred.fetch_add(1, Relaxed);
    }

    /// A checkpoint that took the slow path.
    pub(crate) fn slow_checkpoint(&self) {
        self.checkpoints_slow.fetch_add(1, Relaxed);
    }

    /// Adds every counter of `self` into `into` (a worker retiring).
    pub(crate) fn add_into(&self, into: &Ledger) {
        let pairs = self
            .yields
            .iter()
            .zip(&into.yields)
            .chain(self.response.iter().zip(&into.response))
            .chain([
                (&self.yields_total, &into.yields_total),
                (&self.hints_seen, &into.hints_seen),
                (&self.hints_answered, &into.hints_answered),
                (&self.hints_late, &into.hints_late),
                (&self.hints_ignored, &into.hints_ignored),
                (&self.checkpoints_deferred, &into.checkpoints_deferred),
                (&self.checkpoints_slow, &into.checkpoints_slow),
                (&self.response_sum_ns, &into.response_sum_ns),
            ]);
        for (from, to) in pairs {
            to.fetch_add(from.load(Relaxed), Relaxed);
        }
    }

    /// A plain copy of the counters.
    pub(crate) fn snapshot(&self) -> LedgerSnapshot {
        LedgerSnapshot {
            yields: std::array::from_fn(|i| self.yields[i].load(Relaxed)),
            yields_total: self.yields_total.load(Relaxed),
            hints_seen: self.hints_seen.load(Relaxed),
            hints_answered: self.hints_answered.load(Relaxed),
            hints_late: self.hints_late.load(Relaxed),
            hints_ignored: self.hints_ignored.load(Relaxed),
            checkpoints_deferred: self.checkpoints_deferred.load(Relaxed),
            checkpoints_slow: self.checkpoints_slow.load(Relaxed),
            hint_response: ResponseHistogram {
                counts: std::array::from_fn(|i| self.response[i].load(Relaxed)),
                sum_ns: self.response_sum_ns.load(Relaxed),
            },
        }
    }
}

/// Histogram of hint response times (issue to answer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResponseHistogram {
    /// Answers per bucket: `counts[i]` for `i < 9` are those at most
    /// [`RESPONSE_BUCKETS_NS`]`[i]` (and above the previous bound); the last
    /// holds the slower ones.
    pub counts: [u64; RESPONSE_BUCKETS_NS.len() + 1],
    /// Sum of all response times, nanoseconds.
    pub sum_ns: u64,
}

impl ResponseHistogram {
    /// Number of answers recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// The ledger of a worker or of the whole process, at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LedgerSnapshot {
    /// Yields by cause, indexed by [`YieldCause::as_u32`].
    pub yields: [u64; CAUSES],
    /// Yields of any cause (kept separately; equals the sum of `yields`).
    pub yields_total: u64,
    /// Kernel hints observed (sequence numbers advanced past).
    pub hints_seen: u64,
    /// Kernel hints answered (acknowledged after yielding).
    pub hints_answered: u64,
    /// Answered hints whose response took longer than the grace period.
    pub hints_late: u64,
    /// Hints not answered because the worker is in DETERMINISTIC mode.
    pub hints_ignored: u64,
    /// Yields deferred because the worker was inside a critical section.
    pub checkpoints_deferred: u64,
    /// Checkpoints that took the slow path (a signal was pending).
    pub checkpoints_slow: u64,
    /// Time from hint issue (deadline minus grace) to its answer.
    pub hint_response: ResponseHistogram,
}

impl LedgerSnapshot {
    /// Yields with this cause.
    pub fn yields_by(&self, cause: YieldCause) -> u64 {
        self.yields[cause.as_u32() as usize]
    }

    /// Adds `other` into `self` (summing workers).
    pub(crate) fn add(&mut self, other: &LedgerSnapshot) {
        for (a, b) in self.yields.iter_mut().zip(other.yields) {
            *a += b;
        }
        for (a, b) in self
            .hint_response
            .counts
            .iter_mut()
            .zip(other.hint_response.counts)
        {
            *a += b;
        }
        self.hint_response.sum_ns += other.hint_response.sum_ns;
        self.yields_total += other.yields_total;
        self.hints_seen += other.hints_seen;
        self.hints_answered += other.hints_answered;
        self.hints_late += other.hints_late;
        self.hints_ignored += other.hints_ignored;
        self.checkpoints_deferred += other.checkpoints_deferred;
        self.checkpoints_slow += other.checkpoints_slow;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yields_add_up_and_retiring_preserves_totals() {
        let a = Ledger::default();
        let b = Ledger::default();
        a.yielded(YieldCause::Budget, 3);
        a.yielded(YieldCause::Hint, 1);
        b.yielded(YieldCause::Voluntary, 2);
        b.yielded(YieldCause::Escalated, 4);
        a.hint_answered(50_000, 100_000_000);
        a.hint_answered(200_000_000, 100_000_000);
        let (sa, sb) = (a.snapshot(), b.snapshot());
        assert_eq!(sa.yields.iter().sum::<u64>(), sa.yields_total);
        assert_eq!(sa.hints_late, 1);
        assert_eq!(sa.hint_response.count(), 2);
        assert_eq!(sa.hint_response.counts[1], 1); // 50 us <= 100 us
        assert_eq!(sa.hint_response.counts[8], 1); // 200 ms <= 500 ms
        let mut sum = sa;
        sum.add(&sb);
        let process = Ledger::default();
        a.add_into(&process);
        b.add_into(&process);
        assert_eq!(process.snapshot(), sum);
        assert_eq!(sum.yields_total, 10);
        assert_eq!(sum.yields_by(YieldCause::Escalated), 4);
    }
}
