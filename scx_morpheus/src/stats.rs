// SPDX-License-Identifier: GPL-2.0-only
//! The scheduler's metrics: read from the BPF program's counters and the
//! loader's registry, served over the scx_stats socket (`--stats`,
//! `--monitor`), as OpenMetrics text (`--metrics-addr`), and printed on exit.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Result;
use morpheus_common::openmetrics::{Exposition, Kind};
use scx_stats::prelude::*;
use scx_stats_derive::{Stats, stat_doc};
use serde::{Deserialize, Serialize};

use crate::histogram;

/// One snapshot (counters and histograms are cumulative since attach,
/// gauges are current). A field is a counter unless flagged `_gauge` or
/// `_histogram` (an array of counts per log2(us) bucket, see [`Exposed`]).
#[stat_doc]
#[derive(Clone, Debug, Default, Serialize, Deserialize, Stats)]
#[stat(top)]
pub struct Metrics {
    #[stat(desc = "Wakeups placed directly on an idle CPU")]
    pub nr_direct_dispatches: u64,
    #[stat(desc = "Per-CPU kernel threads run at once on their CPU")]
    pub nr_kthread_dispatches: u64,
    #[stat(desc = "Tasks queued on the shared vtime queue")]
    pub nr_shared_enqueues: u64,
    #[stat(desc = "Tasks moved from the shared queue to a CPU")]
    pub nr_shared_dispatches: u64,
    #[stat(desc = "Tasks queued on one CPU's own queue (pinned, or won it by preemption)")]
    pub nr_local_enqueues: u64,
    #[stat(desc = "Tasks a CPU took from its own queue")]
    pub nr_local_dispatches: u64,
    #[stat(desc = "Tasks a CPU took from another CPU's queue")]
    pub nr_steals: u64,
    #[stat(desc = "Idle CPUs woken for newly queued work")]
    pub nr_idle_kicks: u64,
    #[stat(desc = "Woken tasks that preempted a plain task at once")]
    pub nr_wakeup_preempts: u64,
    #[stat(desc = "Woken tasks that asked a worker to yield first (hint, then yield window)")]
    pub nr_wakeup_hints: u64,
    #[stat(desc = "Workers preempted when their yield window ended")]
    pub nr_window_preempts: u64,
    #[stat(
        desc = "Plain tasks preempted at the end of their slice for waiters (timer or waker, not a tick)"
    )]
    pub nr_slice_preempts: u64,
    #[stat(desc = "Decision timers that fired for a running task")]
    pub nr_timer_kicks: u64,
    #[stat(desc = "Scheduler ticks observed")]
    pub nr_ticks: u64,
    #[stat(desc = "Deepest queue (all queues) seen", _gauge)]
    pub nr_queued_max: u64,
    #[stat(desc = "Current adaptive slice in microseconds (gauge)", _gauge)]
    pub slice_us: u64,
    #[stat(
        desc = "Current pressure, 1024 = one runnable task per CPU (gauge)",
        _gauge
    )]
    pub pressure: u64,
    #[stat(desc = "Processes with a registration session (gauge)", _gauge)]
    pub processes: u64,
    #[stat(
        desc = "Live registrations in every state, the loader's own count (gauge)",
        _gauge
    )]
    pub workers: u64,
    #[stat(desc = "Workers registered, not yet run (gauge)", _gauge)]
    pub workers_registered: u64,
    #[stat(desc = "Workers running under the scheduler (gauge)", _gauge)]
    pub workers_running: u64,
    #[stat(
        desc = "Workers whose thread exited, not yet reclaimed (gauge)",
        _gauge
    )]
    pub workers_dead: u64,
    #[stat(desc = "Registrations accepted")]
    pub registrations: u64,
    #[stat(desc = "Registrations refused")]
    pub registrations_refused: u64,
    #[stat(desc = "Invalid protocol messages received")]
    pub bad_messages: u64,
    #[stat(desc = "Worker slots reclaimed after their thread exited")]
    pub workers_reaped: u64,
    #[stat(desc = "Registered workers that started running under the scheduler")]
    pub workers_started: u64,
    #[stat(desc = "Registered workers whose thread exited")]
    pub workers_exited: u64,
    #[stat(desc = "Hints sent to workers")]
    pub hints_sent: u64,
    #[stat(desc = "Hints answered (acknowledged, or the worker yielded/blocked)")]
    pub hints_answered: u64,
    #[stat(desc = "Hints answered within the grace period")]
    pub hints_answered_in_grace: u64,
    #[stat(desc = "Hints that passed their deadline unanswered")]
    pub hints_expired: u64,
    #[stat(desc = "Hints dropped because the worker exited or unregistered")]
    pub hints_dropped: u64,
    #[stat(desc = "Catch-ups sent: I/O became ready for a process whose workers were all busy")]
    pub catch_ups: u64,
    #[stat(desc = "Catch-ups that waited for one of the process's workers to run")]
    pub catch_ups_deferred: u64,
    #[stat(
        desc = "Time from a hint to its answer (acknowledged, or the worker yielded or blocked).",
        _histogram
    )]
    pub hint_response_hist: Vec<u64>,
    #[stat(desc = "Time from a hint being due to its being issued.", _histogram)]
    pub hint_delay_hist: Vec<u64>,
    #[stat(
        desc = "Time from a decision timer being due to its firing.",
        _histogram
    )]
    pub timer_late_hist: Vec<u64>,
    #[stat(
        desc = "Time from I/O becoming ready for a process none of whose workers ran to one of them running.",
        _histogram
    )]
    pub catch_up_delay_hist: Vec<u64>,
    #[stat(desc = "Escalations by thread kick")]
    pub escalations_kick: u64,
    #[stat(desc = "Escalations by throttle")]
    pub escalations_throttle: u64,
    #[stat(desc = "Throttles active now (gauge)", _gauge)]
    pub throttles_active: u64,
    #[stat(desc = "Throttles applied")]
    pub throttles: u64,
    #[stat(desc = "Critical sections preempted at --max-critical-ms")]
    pub critical_cap_violations: u64,
    #[stat(desc = "Workers preempted at --max-overrun-ms")]
    pub overrun_cap_violations: u64,
    #[stat(desc = "Events lost to a full ring buffer")]
    pub ring_drops: u64,
}

/// How a field is exposed, from its scx_stats flags: `_gauge` (a current
/// value: kept by `delta`, typed gauge in OpenMetrics), `_histogram` (a
/// `*_hist` array of log2(us) buckets, exposed in seconds as the family
/// `*_seconds`), else a counter. The description is the OpenMetrics help.
enum Exposed {
    Counter,
    Gauge,
    Histogram,
}

impl Exposed {
    fn of(field: &StatsField) -> Exposed {
        let user = &field.attrs.user;
        if user.contains_key("_gauge") {
            Exposed::Gauge
        } else if user.contains_key("_histogram") {
            Exposed::Histogram
        } else {
            Exposed::Counter
        }
    }
}

/// The OpenMetrics family of histogram field `name` (`hint_delay_hist`:
/// `hint_delay_seconds`).
fn histogram_family(name: &str) -> String {
    format!("{}_seconds", name.strip_suffix("_hist").unwrap_or(name))
}

/// Every field of [`Metrics`]: (name, description, how it is exposed),
/// sorted by name.
fn exposed_fields() -> Vec<(String, String, Exposed)> {
    Metrics::meta()
        .fields
        .into_iter()
        .map(|(name, f)| {
            let how = Exposed::of(&f);
            (name, f.attrs.desc.unwrap_or_default(), how)
        })
        .collect()
}

/// The buckets of histogram field `name` in `json` (a [`Metrics`] as JSON).
fn buckets(json: &serde_json::Value, name: &str) -> Vec<u64> {
    json[name]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_u64().unwrap_or(0)).collect())
        .unwrap_or_default()
}

impl Metrics {
    /// Prints the figures on lines of at most 100 columns ([`crate::lines`]).
    pub fn format<W: Write>(&self, w: &mut W) -> Result<()> {
        for line in crate::lines::lines(self) {
            writeln!(w, "{line}")?;
        }
        Ok(())
    }

    /// The counters and histogram observations accumulated since `rhs`
    /// (gauges keep their value).
    pub fn delta(&self, rhs: &Self) -> Self {
        let mut cur = serde_json::to_value(self).expect("plain struct");
        let prev = serde_json::to_value(rhs).expect("plain struct");
        for (name, _, how) in exposed_fields() {
            let d: serde_json::Value = match how {
                Exposed::Gauge => continue,
                Exposed::Histogram => {
                    histogram::delta(&buckets(&cur, &name), &buckets(&prev, &name)).into()
                }
                Exposed::Counter => cur[&name]
                    .as_u64()
                    .unwrap_or(0)
                    .saturating_sub(prev[&name].as_u64().unwrap_or(0))
                    .into(),
            };
            cur[&name] = d;
        }
        serde_json::from_value(cur).expect("same shape")
    }

    /// OpenMetrics text exposition (for Prometheus), ending with `# EOF`.
    pub fn openmetrics(&self) -> String {
        let mut m = Exposition::new("scx_morpheus_");
        let json = serde_json::to_value(self).expect("plain struct");
        let mut histograms = Vec::new();
        for (name, desc, how) in exposed_fields() {
            let value = json[&name].as_u64().unwrap_or(0);
            match how {
                Exposed::Gauge => m.gauge(&name, &desc, value),
                Exposed::Counter => m.counter(&name, &desc, value),
                Exposed::Histogram => histograms.push((name, desc)),
            };
        }
        for (name, help) in histograms {
            let (buckets, count) = histogram::cumulative_seconds(&buckets(&json, &name));
            // The BPF program keeps no sum of the durations: none is made up.
            m.family(&histogram_family(&name), Kind::Histogram, &help)
                .histogram(&buckets, count, None);
        }
        m.finish()
    }
}

/// The scx_stats server description: one "top" stats op serving deltas.
pub fn server_data() -> StatsServerData<(), Metrics> {
    let open: Box<dyn StatsOpener<(), Metrics>> = Box::new(move |(req_ch, res_ch)| {
        req_ch.send(())?;
        let mut prev = res_ch.recv()?;

        let read: Box<dyn StatsReader<(), Metrics>> = Box::new(move |_args, (req_ch, res_ch)| {
            req_ch.send(())?;
            let cur = res_ch.recv()?;
            let delta = cur.delta(&prev);
            prev = cur;
            delta.to_json()
        });

        Ok(read)
    });

    StatsServerData::new()
        .add_meta(Metrics::meta())
        .add_ops("top", StatsOps { open, close: None })
}

/// Prints the running scheduler's metrics every `intv` until `shutdown`.
pub fn monitor(intv: Duration, shutdown: Arc<AtomicBool>) -> Result<()> {
    scx_utils::monitor_stats::<Metrics>(
        &[],
        intv,
        || shutdown.load(Ordering::Relaxed),
        |metrics| metrics.format(&mut std::io::stdout()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One name per counter: every counter the BPF program keeps for the
    /// loader is the stats field of the same name, except those converted
    /// on the way (listed).
    #[test]
    fn bpf_counters_are_named_as_their_stats_fields() {
        const CONVERTED: &[&str] = &[
            "escalations",  // escalations_kick, escalations_throttle
            "cur_slice_ns", // slice_us
            "cur_pressure", // pressure
        ];
        let bpf = include_str!("bpf/main.bpf.c");
        let block = bpf
            .split_once("Counters and gauges read by the loader")
            .expect("the counters block")
            .1;
        let block = &block[..block.find("\n\n").expect("its end")];
        let names: Vec<&str> = block
            .lines()
            .filter_map(|l| l.strip_prefix("u64 "))
            .map(|l| l.split(['[', ';']).next().unwrap().trim())
            .collect();
        assert!(names.len() > 30, "counters block not found: {names:?}");
        let fields: Vec<String> = Metrics::meta().fields.into_iter().map(|f| f.0).collect();
        for name in names {
            assert!(
                fields.iter().any(|f| f == name) || CONVERTED.contains(&name),
                "BPF counter {name} has no stats field of that name"
            );
        }
    }

    #[test]
    fn delta_subtracts_counters_and_keeps_gauges() {
        let a = Metrics {
            hints_sent: 10,
            slice_us: 5000,
            ..Default::default()
        };
        let b = Metrics {
            hints_sent: 4,
            slice_us: 2000,
            ..Default::default()
        };
        let d = a.delta(&b);
        assert_eq!((d.hints_sent, d.slice_us), (6, 5000));
    }

    #[test]
    fn delta_subtracts_histograms_bucket_by_bucket() {
        let a = Metrics {
            hint_response_hist: vec![3, 0, 9],
            ..Default::default()
        };
        let b = Metrics {
            hint_response_hist: vec![1, 0, 9],
            ..Default::default()
        };
        // Since the previous reading: 2 in bucket 0, nothing in bucket 2.
        assert_eq!(a.delta(&b).hint_response_hist, vec![2, 0, 0]);
    }

    /// The arrays are exactly the fields flagged `_histogram`, each named
    /// `*_hist` (its family is `*_seconds`); gauges are plain numbers.
    #[test]
    fn every_array_field_is_a_flagged_histogram() {
        let mut histograms = 0;
        for (name, f) in Metrics::meta().fields {
            let array = matches!(f.data, StatsData::Array(_));
            match Exposed::of(&f) {
                Exposed::Histogram => {
                    assert!(array && name.ends_with("_hist"), "{name}");
                    histograms += 1;
                }
                Exposed::Gauge | Exposed::Counter => assert!(!array, "{name} is not flagged"),
            }
        }
        assert_eq!(histograms, 4);
        assert_eq!(histogram_family("hint_delay_hist"), "hint_delay_seconds");
    }

    #[test]
    fn openmetrics_is_well_formed() {
        let m = Metrics {
            hints_sent: 3,
            workers_running: 2,
            ..Default::default()
        };
        let text = m.openmetrics();
        assert!(text.contains("# TYPE scx_morpheus_hints_sent counter\n"));
        assert!(text.contains("scx_morpheus_hints_sent_total 3\n"));
        assert!(text.contains("# TYPE scx_morpheus_workers_running gauge\n"));
        assert!(text.contains("scx_morpheus_workers_running 2\n"));
        assert!(text.ends_with("# EOF\n"));
        for line in text.lines() {
            assert!(
                line.starts_with('#') || line.split(' ').count() == 2,
                "{line}"
            );
        }
    }

    #[test]
    fn histograms_are_in_seconds_without_a_made_up_sum() {
        let mut h = vec![0u64; 24];
        h[3] = 2; // 8..16 us
        h[6] = 1; // 64..128 us
        let m = Metrics {
            hint_response_hist: h,
            ..Default::default()
        };
        let text = m.openmetrics();
        assert!(text.contains("# TYPE scx_morpheus_hint_response_seconds histogram\n"));
        assert!(text.contains("scx_morpheus_hint_response_seconds_bucket{le=\"0.000008\"} 0\n"));
        assert!(text.contains("scx_morpheus_hint_response_seconds_bucket{le=\"0.000016\"} 2\n"));
        assert!(text.contains("scx_morpheus_hint_response_seconds_bucket{le=\"0.000128\"} 3\n"));
        assert!(text.contains("scx_morpheus_hint_response_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(!text.contains("_sum"), "{text}");
        assert!(!text.contains("_count"), "{text}");
        assert!(!text.contains("_us_"), "no microsecond families: {text}");
        for family in ["hint_delay_seconds", "timer_late_seconds"] {
            let inf = format!("scx_morpheus_{family}_bucket{{le=\"+Inf\"}} 0\n");
            assert!(text.contains(&inf), "{inf}");
        }
    }

    /// The exposition Python's OpenMetrics parser reads in
    /// morpheus-py/tests/test_exposition.py: a change to the loader's text
    /// must be made here too, where the parser checks it.
    #[test]
    fn the_exposition_matches_the_parsed_sample() {
        let text = sample().openmetrics();
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/openmetrics.txt");
        if std::env::var_os("MORPHEUS_BLESS").is_some() {
            std::fs::write(path, &text).unwrap();
        }
        let expected = std::fs::read_to_string(path).unwrap();
        assert!(
            text == expected,
            "the loader's OpenMetrics text differs from {path}; if the change is \
             meant, run with MORPHEUS_BLESS=1 and run morpheus-py's tests"
        );
    }

    /// Figures with every histogram, counter and gauge non-zero.
    pub(crate) fn sample() -> Metrics {
        let mut json = serde_json::to_value(Metrics::default()).unwrap();
        for (i, value) in json.as_object_mut().unwrap().values_mut().enumerate() {
            if value.is_u64() {
                *value = (i as u64 * 7 + 1).into();
            }
        }
        let mut m: Metrics = serde_json::from_value(json).unwrap();
        let hist = |seed: u64| (0..24u64).map(|i| (i * seed) % 5).collect::<Vec<u64>>();
        m.hint_response_hist = hist(3);
        m.hint_delay_hist = hist(2);
        m.timer_late_hist = hist(1);
        m.catch_up_delay_hist = hist(4);
        m
    }
}
