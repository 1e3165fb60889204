// SPDX-License-Identifier: GPL-2.0-only
//! Metrics: a plain [`snapshot`] and its OpenMetrics text
//! ([`openmetrics`]) for a service's own `/metrics` endpoint; with the
//! `prometheus-client` feature, `MorpheusCollector` adds the same metric
//! families to a `prometheus_client` registry.
//!
//! ```
//! let text = morpheus_runtime::metrics::openmetrics();
//! assert!(text.ends_with("# EOF\n"));
//! let snap = morpheus_runtime::metrics::snapshot();
//! assert_eq!(snap.process.yields.iter().sum::<u64>(), snap.process.yields_total);
//! ```

use std::time::Duration;

use morpheus_common::openmetrics::Exposition;
use morpheus_common::{RuntimeKind, RuntimeMode};

use crate::config::Sources;
use crate::ledger::LedgerSnapshot;
use crate::process::Process;
use crate::session::RegistrationState;

mod families;
// Unit-tested in every test build (prometheus-client is a dev-dependency).
#[cfg(any(feature = "prometheus-client", test))]
mod prometheus;

pub use crate::ledger::ResponseHistogram;
use families::{Labels, Options, PREFIX, Samples, families};
#[cfg(feature = "prometheus-client")]
pub use prometheus::MorpheusCollector;

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

/// Renders the snapshot as OpenMetrics text (ends with `# EOF`), as the
/// process is configured (per-worker samples only with
/// `MORPHEUS_METRICS_PER_WORKER=1`).
pub fn openmetrics() -> String {
    openmetrics_with(None)
}

/// [`openmetrics`] with the per-worker samples on (`Some(true)`) or off
/// (`Some(false)`) whatever the configuration says; `None`: as configured.
pub fn openmetrics_with(per_worker: Option<bool>) -> String {
    let (s, opts) = snapshot_and_options(per_worker);
    render_with(&s, opts)
}

/// The snapshot and the `Options` the process's configuration asks for,
/// with `per_worker` in place of its choice when given.
pub(crate) fn snapshot_and_options(per_worker: Option<bool>) -> (Snapshot, Options) {
    let of = |p: &Process| {
        let opts = Options {
            per_worker: per_worker.unwrap_or(p.config().metrics_per_worker),
        };
        (snapshot_of(p), opts)
    };
    match Process::try_get() {
        Some(p) => of(p),
        None => of(&Process::unstarted()),
    }
}

/// Renders a snapshot as OpenMetrics text.
fn render_with(s: &Snapshot, opts: Options) -> String {
    let mut m = Exposition::new(PREFIX);
    for f in families(s, opts) {
        let mut family = m.family(f.name, f.kind(), f.help);
        match &f.samples {
            Samples::Counter(samples) => {
                for (labels, v) in samples {
                    family.sample(&borrowed(labels), v);
                }
            }
            Samples::Gauge(samples) => {
                for (labels, v) in samples {
                    family.sample(&borrowed(labels), v);
                }
            }
            Samples::Histogram {
                buckets,
                count,
                sum,
            } => {
                family.histogram(buckets, *count, Some(*sum));
            }
        }
    }
    m.finish()
}

fn borrowed(labels: &Labels) -> Vec<(&str, &str)> {
    labels.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use morpheus_common::YieldCause;

    /// A snapshot with two live workers that yielded.
    fn with_workers() -> Snapshot {
        let mut s = snapshot_of(&Process::new(crate::config::Config::default()));
        for id in [41, 42] {
            let mut ledger = LedgerSnapshot::default();
            ledger.yields[YieldCause::Budget.as_u32() as usize] = id;
            s.workers.push(WorkerSnapshot {
                id,
                tid: 1000 + id as i32,
                kind: RuntimeKind::Tokio,
                mode: RuntimeMode::Pressured,
                pinned_mode: None,
                slot: None,
                escapable: false,
                budget: Duration::from_millis(10),
                critical_depth: 0,
                ledger,
            });
        }
        s
    }

    #[test]
    fn worker_labels_are_off_by_default() {
        let s = with_workers();
        let text = render_with(&s, Options::default());
        assert!(!text.contains("worker="), "{text}");
        assert!(!text.contains("worker_yields"), "{text}");
        assert!(!crate::config::Config::default().metrics_per_worker);
    }

    #[test]
    fn worker_labels_are_there_when_asked_for() {
        let text = render_with(&with_workers(), Options { per_worker: true });
        assert!(
            text.contains(
                "morpheus_runtime_worker_yields_total{worker=\"41\",cause=\"budget\"} 41\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("{worker=\"42\",cause=\"budget\"} 42\n"),
            "{text}"
        );
    }

    #[test]
    fn openmetrics_text_is_well_formed() {
        let mut s = snapshot_of(&Process::new(crate::config::Config::default()));
        s.process.yields[YieldCause::Hint.as_u32() as usize] = 3;
        s.process.hint_response.counts[2] = 3;
        s.process.hint_response.sum_ns = 900_000;
        s.cpu_pressure = Some(12.5);
        let text = render_with(&s, Options::default());
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
