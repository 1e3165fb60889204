// SPDX-License-Identifier: GPL-2.0-only
//! The scheduler's metrics: read from the BPF program's counters and the
//! loader's registry, served over the scx_stats socket (`--stats`,
//! `--monitor`), as OpenMetrics text (`--metrics-addr`), and printed on exit.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Result;
use morpheus_common::openmetrics::Exposition;
use scx_stats::prelude::*;
use scx_stats_derive::{Stats, stat_doc};
use serde::{Deserialize, Serialize};

/// One snapshot (counters are cumulative since attach, gauges are current).
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
    #[stat(desc = "Deepest queue (all queues) seen")]
    pub nr_queued_max: u64,
    #[stat(desc = "Current adaptive slice in microseconds (gauge)")]
    pub slice_us: u64,
    #[stat(desc = "Current pressure, 1024 = one runnable task per CPU (gauge)")]
    pub pressure: u64,
    #[stat(desc = "Processes with a registration session (gauge)")]
    pub processes: u64,
    #[stat(desc = "Live registrations in every state, the loader's own count (gauge)")]
    pub workers: u64,
    #[stat(desc = "Workers registered, not yet run (gauge)")]
    pub workers_registered: u64,
    #[stat(desc = "Workers running under the scheduler (gauge)")]
    pub workers_running: u64,
    #[stat(desc = "Workers whose thread exited, not yet reclaimed (gauge)")]
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
    #[stat(desc = "Hint delay (due to issued) p50 in microseconds (log2 bucket upper bound)")]
    pub hint_delay_p50_us: u64,
    #[stat(desc = "Hint delay (due to issued) p99 in microseconds (log2 bucket upper bound)")]
    pub hint_delay_p99_us: u64,
    #[stat(
        desc = "Decision timer lateness (due to fired) p50 in microseconds (log2 bucket upper bound)"
    )]
    pub timer_late_p50_us: u64,
    #[stat(
        desc = "Decision timer lateness (due to fired) p99 in microseconds (log2 bucket upper bound)"
    )]
    pub timer_late_p99_us: u64,
    #[stat(desc = "Hint response time p50 in microseconds (log2 bucket upper bound)")]
    pub response_p50_us: u64,
    #[stat(desc = "Hint response time p90 in microseconds (log2 bucket upper bound)")]
    pub response_p90_us: u64,
    #[stat(desc = "Hint response time p99 in microseconds (log2 bucket upper bound)")]
    pub response_p99_us: u64,
    #[stat(desc = "Escalations by thread kick")]
    pub escalations_kick: u64,
    #[stat(desc = "Escalations by throttle")]
    pub escalations_throttle: u64,
    #[stat(desc = "Throttles active now (gauge)")]
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

/// Which fields are gauges (kept as-is by `delta`, typed gauge in OpenMetrics).
const GAUGES: &[&str] = &[
    "slice_us",
    "pressure",
    "processes",
    "workers",
    "workers_registered",
    "workers_running",
    "workers_dead",
    "throttles_active",
    "nr_queued_max",
    "hint_delay_p50_us",
    "hint_delay_p99_us",
    "timer_late_p50_us",
    "timer_late_p99_us",
    "response_p50_us",
    "response_p90_us",
    "response_p99_us",
];

impl Metrics {
    /// (name, description, value) of every field, sorted by name.
    pub fn fields(&self) -> Vec<(String, String, u64)> {
        let json = serde_json::to_value(self).expect("plain struct");
        Metrics::meta()
            .fields
            .into_iter()
            .map(|(name, f)| {
                let value = json[&name].as_u64().unwrap_or(0);
                (name, f.attrs.desc.unwrap_or_default(), value)
            })
            .collect()
    }

    /// Prints three lines in the style of the other scx schedulers.
    pub fn format<W: Write>(&self, w: &mut W) -> Result<()> {
        writeln!(
            w,
            "[{}] dispatch -> direct: {:<6} shared: {:<6} | enqueue: {:<6} kicks: {:<6} | ticks: {:<6} qmax: {:<3} | slice: {}us pressure: {}",
            crate::SCHEDULER_NAME,
            self.nr_direct_dispatches,
            self.nr_shared_dispatches,
            self.nr_shared_enqueues,
            self.nr_idle_kicks,
            self.nr_ticks,
            self.nr_queued_max,
            self.slice_us,
            self.pressure,
        )?;
        writeln!(
            w,
            "[{}] preempt -> wakeup: {:<6} hint: {:<6} window: {:<5} slice: {:<6} | local: {:<6} steal: {:<5} | timers: {}",
            crate::SCHEDULER_NAME,
            self.nr_wakeup_preempts,
            self.nr_wakeup_hints,
            self.nr_window_preempts,
            self.nr_slice_preempts,
            self.nr_local_dispatches,
            self.nr_steals,
            self.nr_timer_kicks,
        )?;
        writeln!(
            w,
            "[{}] workers -> reg: {} run: {} dead: {} | hints -> sent: {} answered: {} in_grace: {} expired: {} dropped: {} | catch-ups: {} | delay p50/p99: {}/{}us timer late p50/p99: {}/{}us resp p50/p99: {}/{}us | escalations -> kick: {} throttle: {} | caps -> critical: {} overrun: {} | ring drops: {}",
            crate::SCHEDULER_NAME,
            self.workers_registered,
            self.workers_running,
            self.workers_dead,
            self.hints_sent,
            self.hints_answered,
            self.hints_answered_in_grace,
            self.hints_expired,
            self.hints_dropped,
            self.catch_ups,
            self.hint_delay_p50_us,
            self.hint_delay_p99_us,
            self.timer_late_p50_us,
            self.timer_late_p99_us,
            self.response_p50_us,
            self.response_p99_us,
            self.escalations_kick,
            self.escalations_throttle,
            self.critical_cap_violations,
            self.overrun_cap_violations,
            self.ring_drops,
        )?;
        Ok(())
    }

    /// The counters accumulated since `rhs` (gauges keep their value).
    pub fn delta(&self, rhs: &Self) -> Self {
        let mut cur = serde_json::to_value(self).expect("plain struct");
        let prev = serde_json::to_value(rhs).expect("plain struct");
        for (name, value) in cur.as_object_mut().expect("struct").iter_mut() {
            if GAUGES.contains(&name.as_str()) {
                continue;
            }
            let d = value
                .as_u64()
                .unwrap_or(0)
                .saturating_sub(prev[name].as_u64().unwrap_or(0));
            *value = d.into();
        }
        serde_json::from_value(cur).expect("same shape")
    }

    /// OpenMetrics text exposition (for Prometheus), ending with `# EOF`.
    pub fn openmetrics(&self) -> String {
        let mut m = Exposition::new("scx_morpheus_");
        for (name, desc, value) in self.fields() {
            if GAUGES.contains(&name.as_str()) {
                m.gauge(&name, &desc, value);
            } else {
                m.counter(&name, &desc, value);
            }
        }
        m.finish()
    }
}

/// Percentile `q` (0..1) of a log2(µs) histogram, as the bucket's upper bound.
pub fn hist_percentile(hist: &[u64], q: f64) -> u64 {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return 0;
    }
    let want = (total as f64 * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, n) in hist.iter().enumerate() {
        seen += n;
        if seen >= want {
            return 1u64 << (i + 1);
        }
    }
    1u64 << hist.len()
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
            "escalations",     // escalations_kick, escalations_throttle
            "cur_slice_ns",    // slice_us
            "cur_pressure",    // pressure
            "resp_hist",       // response_p50_us ...
            "hint_delay_hist", // hint_delay_p50_us ...
            "timer_late_hist", // timer_late_p50_us ...
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
        let fields: Vec<String> = Metrics::default()
            .fields()
            .into_iter()
            .map(|f| f.0)
            .collect();
        for name in names {
            assert!(
                fields.iter().any(|f| f == name) || CONVERTED.contains(&name),
                "BPF counter {name} has no stats field of that name"
            );
        }
    }

    #[test]
    fn percentiles_of_log2_buckets() {
        let mut h = [0u64; 24];
        assert_eq!(hist_percentile(&h, 0.5), 0);
        h[3] = 90; // 8..16 us
        h[10] = 10; // 1024..2048 us
        assert_eq!(hist_percentile(&h, 0.5), 16);
        assert_eq!(hist_percentile(&h, 0.9), 16);
        assert_eq!(hist_percentile(&h, 0.99), 2048);
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
}
