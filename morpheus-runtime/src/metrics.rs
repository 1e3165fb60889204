// SPDX-License-Identifier: GPL-2.0-only
//! Metrics: a plain [`snapshot`] and its OpenMetrics text ([`openmetrics`])
//! for a service's own `/metrics` endpoint.
//!
//! ```
//! let text = morpheus_runtime::metrics::openmetrics();
//! assert!(text.ends_with("# EOF\n"));
//! let snap = morpheus_runtime::metrics::snapshot();
//! assert_eq!(snap.process.yields.iter().sum::<u64>(), snap.process.yields_total);
//! ```

use std::time::Duration;

use morpheus_common::openmetrics::{Exposition, Kind};
use morpheus_common::{RuntimeKind, RuntimeMode, YieldCause};

use crate::config::Sources;
use crate::ledger::{LedgerSnapshot, RESPONSE_BUCKETS_NS};
use crate::process::Process;
use crate::session::RegistrationState;

pub use crate::ledger::ResponseHistogram;

/// One worker thread.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSnapshot {
    /// Process-unique worker number.
    pub id: u64,
    /// Kernel thread id.
    pub tid: i32,
    /// The runtime it belongs to.
    pub kind: RuntimeKind,
    /// Its effective mode.
    pub mode: RuntimeMode,
    /// Its pinned mode, if any.
    pub pinned_mode: Option<RuntimeMode>,
    /// Its slot in scx_morpheus's SCB array while registered.
    pub slot: Option<u32>,
    /// Registered as escapable.
    pub escapable: bool,
    /// Its configured local budget.
    pub budget: Duration,
    /// Current critical-section depth.
    pub critical_depth: u32,
    /// Its yield ledger.
    pub ledger: LedgerSnapshot,
}

/// Whether each hint source is enabled by configuration and active now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceStatus {
    /// Enabled by configuration.
    pub configured: Sources,
    /// Producing hints now: kernel = some worker registered; budget = the
    /// monitor runs; pressure = PSI readable and the kernel source idle.
    pub active: Sources,
}

/// The whole process at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Morpheus is enabled (`MORPHEUS_DISABLE` unset).
    pub enabled: bool,
    /// The process's automatic (or configured) mode.
    pub mode: RuntimeMode,
    /// Mode changes so far.
    pub mode_transitions: u64,
    /// Connection state with scx_morpheus.
    pub registration: RegistrationState,
    /// Why the kernel source is not in use, if it is not.
    pub registration_reason: Option<String>,
    /// Sessions opened with scx_morpheus (reconnections included).
    pub connects: u64,
    /// Hint sources.
    pub sources: SourceStatus,
    /// PSI `some avg10` percent, if read.
    pub cpu_pressure: Option<f64>,
    /// PSI says the machine is overloaded (budget halved when unregistered).
    pub overloaded: bool,
    /// Escalations observed against this process's workers.
    pub escalations: u64,
    /// Sum over live and exited workers.
    pub process: LedgerSnapshot,
    /// Live workers.
    pub workers: Vec<WorkerSnapshot>,
    /// Workers whose threads have exited.
    pub retired_workers: u64,
}

/// Takes a snapshot (cheap: a few locks, no system call).
///
/// Before any worker exists this describes the configuration that would be
/// used, without starting anything.
pub fn snapshot() -> Snapshot {
    match Process::try_get() {
        Some(p) => snapshot_of(p),
        None => snapshot_of(&Process::unstarted()),
    }
}

fn snapshot_of(p: &Process) -> Snapshot {
    let workers: Vec<WorkerSnapshot> = p
        .workers()
        .iter()
        .map(|w| WorkerSnapshot {
            id: w.id(),
            tid: w.tid(),
            kind: w.kind(),
            mode: w.mode(),
            pinned_mode: w.pinned_mode(),
            slot: w.registration().map(|r| r.slot),
            escapable: w.escapable(),
            budget: Duration::from_nanos(w.budget_ns()),
            critical_depth: w.critical_depth(),
            ledger: w.ledger().snapshot(),
        })
        .collect();
    let (mut process, retired_workers) = p.retired();
    for w in &workers {
        process.add(&w.ledger);
    }
    let session = p.session().status();
    let machine = p.mode_machine();
    let cfg = p.config();
    let registered = workers.iter().any(|w| w.slot.is_some());
    let running = cfg.enabled && !workers.is_empty();
    let psi = p.psi();
    Snapshot {
        enabled: cfg.enabled,
        mode: p.mode(),
        mode_transitions: machine.transitions(),
        registration: session.state,
        registration_reason: session.reason,
        connects: session.connects,
        sources: SourceStatus {
            configured: cfg.sources,
            active: Sources {
                kernel: cfg.enabled && cfg.sources.kernel && registered,
                budget: running && cfg.sources.budget,
                pressure: running && cfg.sources.pressure && psi.is_some() && !registered,
            },
        },
        cpu_pressure: psi,
        overloaded: machine.overloaded(),
        escalations: p.escalations(),
        process,
        workers,
        retired_workers,
    }
}

const PREFIX: &str = "morpheus_runtime_";

/// Renders the snapshot as OpenMetrics text (ends with `# EOF`).
pub fn openmetrics() -> String {
    render(&snapshot())
}

/// Renders a snapshot as OpenMetrics text.
pub fn render(s: &Snapshot) -> String {
    let mut m = Exposition::new(PREFIX);
    let mut yields = m.family(
        "yields",
        Kind::Counter,
        "Yields taken by the process's workers, by cause.",
    );
    for c in YieldCause::ALL {
        yields.sample(&[("cause", c.as_str())], s.process.yields_by(*c));
    }
    let mut per_worker = m.family(
        "worker_yields",
        Kind::Counter,
        "Yields taken by each live worker, by cause.",
    );
    for w in &s.workers {
        let id = w.id.to_string();
        for c in YieldCause::ALL {
            per_worker.sample(
                &[("worker", &id), ("cause", c.as_str())],
                w.ledger.yields_by(*c),
            );
        }
    }
    m.counter("hints_seen", "Kernel hints observed.", s.process.hints_seen);
    m.counter(
        "hints_answered",
        "Kernel hints answered at a checkpoint.",
        s.process.hints_answered,
    );
    m.counter(
        "hints_late",
        "Hints answered after the grace period.",
        s.process.hints_late,
    );
    m.counter(
        "hints_ignored",
        "Hints ignored in DETERMINISTIC mode.",
        s.process.hints_ignored,
    );
    m.counter(
        "checkpoints_deferred",
        "Yields deferred inside critical sections.",
        s.process.deferred,
    );
    m.counter(
        "escalations",
        "Escalations applied to this process's workers.",
        s.escalations,
    );
    let h = &s.process.hint_response;
    let buckets: Vec<(f64, u64)> = RESPONSE_BUCKETS_NS
        .iter()
        .zip(&h.counts)
        .scan(0, |cumulative, (bound, n)| {
            *cumulative += n;
            Some((*bound as f64 / 1e9, *cumulative))
        })
        .collect();
    m.family(
        "hint_response_seconds",
        Kind::Histogram,
        "Time from a kernel hint to its answer.",
    )
    .histogram(&buckets, h.count(), Some(h.sum_ns as f64 / 1e9));
    let mut mode = m.family("mode", Kind::Gauge, "1 for the process's current mode.");
    for md in RuntimeMode::ALL {
        mode.sample(&[("mode", &md.to_string())], u8::from(*md == s.mode));
    }
    let mut registration = m.family(
        "registration",
        Kind::Gauge,
        "1 for the current connection state with scx_morpheus.",
    );
    for r in RegistrationState::ALL {
        registration.sample(&[("state", r.as_str())], u8::from(r == s.registration));
    }
    // Which hint sources produce hints now, and which are configured.
    for (family, help, set) in [
        (
            "source_active",
            "1 if the hint source produces hints now.",
            s.sources.active,
        ),
        (
            "source_configured",
            "1 if the hint source is enabled by configuration.",
            s.sources.configured,
        ),
    ] {
        m.family(family, Kind::Gauge, help)
            .sample(&[("source", "kernel")], u8::from(set.kernel))
            .sample(&[("source", "budget")], u8::from(set.budget))
            .sample(&[("source", "pressure")], u8::from(set.pressure));
    }
    let reg = s.workers.iter().filter(|w| w.slot.is_some()).count();
    m.family(
        "workers",
        Kind::Gauge,
        "Live workers, by registration with the kernel.",
    )
    .sample(&[("registered", "true")], reg)
    .sample(&[("registered", "false")], s.workers.len() - reg);
    if let Some(psi) = s.cpu_pressure {
        m.gauge(
            "cpu_pressure_ratio",
            "PSI CPU some avg10, as a ratio.",
            psi / 100.0,
        );
    }
    m.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_text_is_well_formed() {
        let mut s = snapshot_of(&Process::new(crate::config::Config::default()));
        s.process.yields[YieldCause::Hint.as_u32() as usize] = 3;
        s.process.hint_response.counts[2] = 3;
        s.process.hint_response.sum_ns = 900_000;
        s.cpu_pressure = Some(12.5);
        let text = render(&s);
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(text.matches("# EOF").count(), 1);
        assert!(
            text.contains("morpheus_runtime_yields_total{cause=\"hint\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("morpheus_runtime_hint_response_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("morpheus_runtime_hint_response_seconds_bucket{le=\"0.0005\"} 3\n"));
        assert!(text.contains("morpheus_runtime_mode{mode=\"deterministic\"} 1\n"));
        assert!(text.contains("morpheus_runtime_cpu_pressure_ratio 0.125\n"));
        let mut types = std::collections::HashMap::new();
        let mut current: Option<String> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(name.starts_with(PREFIX));
                assert!(
                    types.insert(name.to_string(), kind.to_string()).is_none(),
                    "dup {name}"
                );
                current = Some(name.to_string());
            } else if !line.starts_with('#') {
                // A sample belongs to the family whose metadata came last.
                let name = line.split(['{', ' ']).next().unwrap();
                let fam = current
                    .as_ref()
                    .filter(|f| name.starts_with(f.as_str()))
                    .unwrap_or_else(|| panic!("sample {name} follows another family's metadata"));
                if types[fam] == "counter" {
                    assert!(name.ends_with("_total"), "{name}");
                }
                let value = line.rsplit(' ').next().unwrap();
                assert!(value.parse::<f64>().is_ok(), "{line}");
            }
        }
    }
}
