// SPDX-License-Identifier: GPL-2.0-only
//! The scheduler's metrics: read from the BPF program's counters, served over
//! the scx_stats socket (`--stats`, `--monitor`) and printed on exit.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Result;
use scx_stats::prelude::*;
use scx_stats_derive::{Stats, stat_doc};
use serde::{Deserialize, Serialize};

/// One snapshot of the scheduler's counters (cumulative since attach).
#[stat_doc]
#[derive(Clone, Debug, Default, Serialize, Deserialize, Stats)]
#[stat(top)]
pub struct Metrics {
    #[stat(desc = "Wakeups placed directly on an idle CPU")]
    pub nr_direct_dispatches: u64,
    #[stat(desc = "Tasks queued on the shared vtime queue")]
    pub nr_shared_enqueues: u64,
    #[stat(desc = "Tasks moved from the shared queue to a CPU")]
    pub nr_shared_dispatches: u64,
    #[stat(desc = "Idle CPUs woken for newly queued work")]
    pub nr_idle_kicks: u64,
    #[stat(desc = "Scheduler ticks observed")]
    pub nr_ticks: u64,
    #[stat(desc = "Deepest shared queue seen at a tick")]
    pub nr_queued_max: u64,
    #[stat(desc = "Scheduler slice in microseconds")]
    pub slice_us: u64,
}

impl Metrics {
    /// Prints one line, in the style of the other scx schedulers.
    pub fn format<W: Write>(&self, w: &mut W) -> Result<()> {
        writeln!(
            w,
            "[{}] dispatch -> direct: {:<6} shared: {:<6} | enqueue: {:<6} kicks: {:<6} | ticks: {:<6} qmax: {:<3} | slice: {}us",
            crate::SCHEDULER_NAME,
            self.nr_direct_dispatches,
            self.nr_shared_dispatches,
            self.nr_shared_enqueues,
            self.nr_idle_kicks,
            self.nr_ticks,
            self.nr_queued_max,
            self.slice_us,
        )?;
        Ok(())
    }

    /// The counters accumulated since `rhs` (gauges keep their current value).
    pub fn delta(&self, rhs: &Self) -> Self {
        Self {
            nr_direct_dispatches: self.nr_direct_dispatches - rhs.nr_direct_dispatches,
            nr_shared_enqueues: self.nr_shared_enqueues - rhs.nr_shared_enqueues,
            nr_shared_dispatches: self.nr_shared_dispatches - rhs.nr_shared_dispatches,
            nr_idle_kicks: self.nr_idle_kicks - rhs.nr_idle_kicks,
            nr_ticks: self.nr_ticks - rhs.nr_ticks,
            ..self.clone()
        }
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
