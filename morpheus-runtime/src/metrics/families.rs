// SPDX-License-Identifier: GPL-2.0-only
//! The runtime's metric families as data, built once from a [`Snapshot`]:
//! the OpenMetrics text ([`super::render`]), the `prometheus-client`
//! collector and Python's `prometheus_client` collector all expose these,
//! so a figure has the same name wherever it is scraped.

use morpheus_common::openmetrics::Kind;
use morpheus_common::{RuntimeMode, YieldCause};

use super::Snapshot;
use crate::ledger::RESPONSE_BUCKETS_NS;
use crate::session::RegistrationState;

/// Prefix of every family's name.
pub const PREFIX: &str = "morpheus_runtime_";

/// A sample's labels: (name, value) pairs.
pub type Labels = Vec<(&'static str, String)>;

/// What the families show beyond the process's own figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Add `worker_yields`, one sample per live worker and cause, labelled
    /// with the worker's number. Off by default: workers come and go (a
    /// soak run churned 11 808 of them), and every worker number a scrape
    /// has seen stays a series in Prometheus. The process-wide `yields`
    /// family counts the same yields. [`crate::Config::metrics_per_worker`]
    /// (`MORPHEUS_METRICS_PER_WORKER=1`) turns it on.
    pub per_worker: bool,
}

/// One family's samples.
#[derive(Debug, Clone, PartialEq)]
pub enum Samples {
    /// Counter values (the text names the samples `<family>_total`).
    Counter(Vec<(Labels, u64)>),
    /// Gauge values.
    Gauge(Vec<(Labels, f64)>),
    /// A histogram without labels.
    Histogram {
        /// (upper bound in seconds, observations at most that long),
        /// cumulative, in increasing order; `+Inf` is `count`.
        buckets: Vec<(f64, u64)>,
        /// Every observation.
        count: u64,
        /// Their sum in seconds.
        sum: f64,
    },
}

/// A metric family.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// Its name without [`PREFIX`].
    pub name: &'static str,
    /// Its help text.
    pub help: &'static str,
    /// Its samples.
    pub samples: Samples,
}

impl Family {
    /// The family's type.
    pub fn kind(&self) -> Kind {
        match self.samples {
            Samples::Counter(_) => Kind::Counter,
            Samples::Gauge(_) => Kind::Gauge,
            Samples::Histogram { .. } => Kind::Histogram,
        }
    }

    fn counter(name: &'static str, help: &'static str, value: u64) -> Family {
        Family {
            name,
            help,
            samples: Samples::Counter(vec![(Vec::new(), value)]),
        }
    }

    fn gauges(name: &'static str, help: &'static str, samples: Vec<(Labels, f64)>) -> Family {
        Family {
            name,
            help,
            samples: Samples::Gauge(samples),
        }
    }
}

fn label(name: &'static str, value: impl ToString) -> Labels {
    vec![(name, value.to_string())]
}

fn flag(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// The families describing `s`.
pub fn families(s: &Snapshot, opts: Options) -> Vec<Family> {
    let mut out = vec![Family {
        name: "yields",
        help: "Yields taken by the process's workers, by cause.",
        samples: Samples::Counter(
            YieldCause::ALL
                .iter()
                .map(|c| (label("cause", c.as_str()), s.process.yields_by(*c)))
                .collect(),
        ),
    }];
    if opts.per_worker {
        let mut samples = Vec::new();
        for w in &s.workers {
            for c in YieldCause::ALL {
                let labels = vec![("worker", w.id.to_string()), ("cause", c.as_str().into())];
                samples.push((labels, w.ledger.yields_by(*c)));
            }
        }
        out.push(Family {
            name: "worker_yields",
            help: "Yields taken by each live worker, by cause.",
            samples: Samples::Counter(samples),
        });
    }
    out.extend([
        Family::counter("hints_seen", "Kernel hints observed.", s.process.hints_seen),
        Family::counter(
            "hints_answered",
            "Kernel hints answered at a checkpoint.",
            s.process.hints_answered,
        ),
        Family::counter(
            "hints_late",
            "Hints answered after the grace period.",
            s.process.hints_late,
        ),
        Family::counter(
            "hints_ignored",
            "Hints ignored in DETERMINISTIC mode.",
            s.process.hints_ignored,
        ),
        Family::counter(
            "checkpoints_deferred",
            "Yields deferred inside critical sections.",
            s.process.checkpoints_deferred,
        ),
        Family::counter(
            "escalations",
            "Escalations applied to this process's workers.",
            s.escalations,
        ),
    ]);
    let h = &s.process.hint_response;
    let buckets = RESPONSE_BUCKETS_NS
        .iter()
        .zip(&h.counts)
        .scan(0, |cumulative, (bound, n)| {
            *cumulative += n;
            Some((*bound as f64 / 1e9, *cumulative))
        })
        .collect();
    out.push(Family {
        name: "hint_response_seconds",
        help: "Time from a kernel hint to its answer.",
        samples: Samples::Histogram {
            buckets,
            count: h.count(),
            sum: h.sum_ns as f64 / 1e9,
        },
    });
    out.push(Family::gauges(
        "mode",
        "1 for the process's current mode.",
        RuntimeMode::ALL
            .iter()
            .map(|m| (label("mode", m), flag(*m == s.mode)))
            .collect(),
    ));
    out.push(Family::gauges(
        "registration",
        "1 for the current connection state with scx_morpheus.",
        RegistrationState::ALL
            .iter()
            .map(|r| (label("state", r.as_str()), flag(*r == s.registration)))
            .collect(),
    ));
    // Which hint sources produce hints now, and which are configured.
    for (name, help, set) in [
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
        out.push(Family::gauges(
            name,
            help,
            vec![
                (label("source", "kernel"), flag(set.kernel)),
                (label("source", "budget"), flag(set.budget)),
                (label("source", "pressure"), flag(set.pressure)),
            ],
        ));
    }
    let registered = s.workers.iter().filter(|w| w.slot.is_some()).count();
    out.push(Family::gauges(
        "workers",
        "Live workers, by registration with the kernel.",
        vec![
            (label("registered", "true"), registered as f64),
            (
                label("registered", "false"),
                (s.workers.len() - registered) as f64,
            ),
        ],
    ));
    if let Some(psi) = s.cpu_pressure {
        out.push(Family::gauges(
            "cpu_pressure_ratio",
            "PSI CPU some avg10, as a ratio.",
            vec![(Vec::new(), psi / 100.0)],
        ));
    }
    out
}
