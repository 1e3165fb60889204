// SPDX-License-Identifier: GPL-2.0-only
//! The Morpheus runtime's own view of a run (from
//! `morpheus_runtime::metrics::snapshot()`): yields by cause, kernel hints
//! seen and answered, registration state.

use std::collections::BTreeMap;

use morpheus_runtime::YieldCause;
use serde::{Deserialize, Serialize};

/// Runtime-side figures of this process (cumulative, or an increment after
/// [`RuntimeFigures::since`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuntimeFigures {
    /// Connection to scx_morpheus: connected, unavailable, ...
    pub registration: String,
    /// Live workers holding a kernel slot.
    pub registered_workers: usize,
    /// Yields by cause (hint, budget, pressure, ...).
    pub yields: BTreeMap<String, u64>,
    /// Kernel hints observed.
    pub hints_seen: u64,
    /// Kernel hints answered.
    pub hints_answered: u64,
    /// Yields deferred by critical sections.
    #[serde(alias = "deferred")]
    pub checkpoints_deferred: u64,
    /// Checkpoints that took the slow path.
    pub checkpoints_slow: u64,
}

impl RuntimeFigures {
    /// The process's figures now.
    pub fn now() -> RuntimeFigures {
        let s = morpheus_runtime::metrics::snapshot();
        let p = &s.process;
        RuntimeFigures {
            registration: s.registration.as_str().to_string(),
            registered_workers: s.workers.iter().filter(|w| w.slot.is_some()).count(),
            yields: YieldCause::ALL
                .iter()
                .map(|&c| (c.as_str().to_string(), p.yields_by(c)))
                .filter(|(_, n)| *n > 0)
                .collect(),
            hints_seen: p.hints_seen,
            hints_answered: p.hints_answered,
            checkpoints_deferred: p.checkpoints_deferred,
            checkpoints_slow: p.checkpoints_slow,
        }
    }

    /// Increments since `before` (state fields as now).
    pub fn since(&self, before: &RuntimeFigures) -> RuntimeFigures {
        let mut d = self.clone();
        for (k, v) in d.yields.iter_mut() {
            *v = v.saturating_sub(*before.yields.get(k).unwrap_or(&0));
        }
        d.yields.retain(|_, v| *v > 0);
        d.hints_seen = self.hints_seen.saturating_sub(before.hints_seen);
        d.hints_answered = self.hints_answered.saturating_sub(before.hints_answered);
        d.checkpoints_deferred = self
            .checkpoints_deferred
            .saturating_sub(before.checkpoints_deferred);
        d.checkpoints_slow = self
            .checkpoints_slow
            .saturating_sub(before.checkpoints_slow);
        d
    }

    /// Adds the increments of `b` (a later run) into `self`; state fields
    /// become `b`'s.
    pub fn absorb(&mut self, b: &RuntimeFigures) {
        for (k, v) in &b.yields {
            *self.yields.entry(k.clone()).or_default() += v;
        }
        self.hints_seen += b.hints_seen;
        self.hints_answered += b.hints_answered;
        self.checkpoints_deferred += b.checkpoints_deferred;
        self.checkpoints_slow += b.checkpoints_slow;
        self.registration.clone_from(&b.registration);
        self.registered_workers = b.registered_workers;
    }

    /// One line: "yields hint=12 budget=3; hints seen 14 answered 12".
    pub fn brief(&self) -> String {
        let yields: Vec<String> = self
            .yields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!(
            "{} ({} registered); yields {}; hints seen {} answered {}",
            self.registration,
            self.registered_workers,
            if yields.is_empty() {
                "none".into()
            } else {
                yields.join(" ")
            },
            self.hints_seen,
            self.hints_answered
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increments_subtract() {
        let mut a = RuntimeFigures::default();
        a.yields.insert("budget".into(), 2);
        let mut b = a.clone();
        b.yields.insert("budget".into(), 5);
        b.yields.insert("hint".into(), 1);
        b.hints_seen = 3;
        let d = b.since(&a);
        assert_eq!(d.yields["budget"], 3);
        assert_eq!(d.yields["hint"], 1);
        assert_eq!(d.hints_seen, 3);
        assert!(d.brief().contains("budget=3 hint=1"));
    }
}
