// SPDX-License-Identifier: GPL-2.0-only
//! The monitor thread: the budget source, and once per reconnect interval
//! the pressure source, the connection watchdog and the mode machine.
//!
//! One per process, started with the first worker; it sleeps on a condition
//! variable while there are no workers. It checks every worker: one whose
//! budget started (at its last yield or unpark) a budget ago (wall time)
//! *and* that used at least half a budget of CPU since then gets its
//! `expected` word poisoned, so its next checkpoint yields. Then it sleeps
//! until the earliest time any worker's budget can run out (0.2 ms to
//! 100 ms), not for a fixed tick: a worker that yields often (at kernel
//! hints, say) costs about one wake-up per budget, and one whose budget runs
//! out is poisoned on time. Every wake-up of the monitor is a wake-up the
//! scheduler has to place somewhere. Wall time is what a task waiting on
//! the same worker experiences.
//!
//! Idle workers cost nothing where the runtime says when they park: the
//! workers of a [`Builder`](crate::Builder) runtime mark themselves parked
//! in Tokio's park hooks, a parked worker's budget cannot run out, and
//! with every worker parked the monitor sleeps until housekeeping; the
//! first worker to unpark restarts its budget and wakes it
//! ([`Process::worker_unparked`]). A plain `#[tokio::main]` has no such
//! hooks: there the CPU condition keeps an idle worker from accumulating
//! budget, at the price of a check every half budget while it idles. The
//! worker never reads a clock on its fast path: it stamps both clocks only
//! when it yields or unparks.

pub(crate) mod mode;
pub(crate) mod pressure;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use morpheus_common::clock::monotonic_ns;
use morpheus_common::{RuntimeMode, YieldCause};

use self::mode::ModeInputs;
use crate::process::Process;
use crate::scb::ScbRef;
use crate::worker::Worker;

/// The budget a worker has in its current mode, and the cause to record
/// when it runs out.
fn effective_budget(p: &Process, w: &Worker) -> (u64, YieldCause) {
    let b = w.budget_ns();
    match w.mode() {
        RuntimeMode::Defensive => ((b / 4).max(1), YieldCause::Defensive),
        RuntimeMode::Pressured
            if p.config().sources.pressure && w.registration().is_none() && p.overloaded() =>
        {
            ((b / 2).max(1), YieldCause::Pressure)
        }
        _ => (b, YieldCause::Budget),
    }
}

/// Checks `w`'s budget, poisoning its `expected` word if it ran out.
/// Returns how long (ns) until it can run out next, or `None` while the
/// worker is parked (it cannot until it unparks): the monitor sleeps until
/// the earliest such time over all workers instead of polling.
fn check_budget(p: &Process, w: &Worker) -> Option<u64> {
    if w.is_parked() {
        return None;
    }
    let (budget, cause) = effective_budget(p, w);
    if w.poisoned() {
        // Nothing to do until it yields; its next budget ends a budget
        // after that at the earliest.
        return Some(budget);
    }
    // Epoch first: if the worker yields after this, the poison is stale and
    // the worker ignores it.
    let epoch = w.yield_epoch();
    let wall = w.wall_since_yield();
    if wall < budget {
        // Its CPU time is not read: the wall-time bound alone is a lower
        // bound on when the budget can run out.
        return Some(budget - wall);
    }
    let cpu = w.cpu_since_yield();
    match until_budget_out(budget, wall, cpu) {
        Some(left) => Some(left),
        None => {
            w.poison(epoch, cause);
            Some(budget)
        }
    }
}

/// When a worker's budget runs out: a whole `budget` of wall time since
/// its last yield, of which at least half a budget on a CPU (an idle,
/// parked worker accumulates none). `None`: it has run out; else the least
/// time (ns) until it can (CPU time grows no faster than wall time).
fn until_budget_out(budget: u64, wall: u64, cpu: u64) -> Option<u64> {
    let wall_left = budget.saturating_sub(wall);
    let cpu_left = (budget / 2).saturating_sub(cpu);
    match wall_left.max(cpu_left) {
        0 => None,
        left => Some(left),
    }
}

/// The monitor's shortest sleep: budgets run out at most this late.
const MIN_TICK: Duration = Duration::from_micros(200);
/// Its longest sleep while a worker's budget runs.
const MAX_TICK: Duration = Duration::from_millis(100);

/// The monitor loop (never returns).
pub(crate) fn run(p: &'static Process) {
    let housekeeping_every = p.config().reconnect_interval.min(Duration::from_secs(1));
    let psi_files = pressure::psi_files();
    let mut next_housekeeping = Instant::now();
    let mut workers = p.workers();
    loop {
        while workers.is_empty() {
            workers = p.wait_for_workers(workers, None);
        }
        let budgets = p.config().sources.budget;
        let mut next_check: Option<u64> = None;
        if budgets {
            for w in workers.iter() {
                if let Some(left) = check_budget(p, w) {
                    next_check = Some(next_check.map_or(left, |n| n.min(left)));
                }
            }
        }
        if Instant::now() >= next_housekeeping {
            let list: Vec<Arc<Worker>> = workers.clone();
            drop(workers);
            housekeeping(p, &list, &psi_files);
            next_housekeeping = Instant::now() + housekeeping_every;
            workers = p.workers();
            // A worker may have unparked meanwhile: check the budgets again.
            continue;
        }
        let tick = match next_check {
            Some(ns) => Duration::from_nanos(ns)
                .clamp(MIN_TICK, MAX_TICK)
                .min(housekeeping_every),
            // Every worker is parked: nothing runs out before one unparks,
            // which wakes the monitor (else it checked again just now).
            None if budgets && !p.monitor_may_idle(&workers) => continue,
            None => next_housekeeping.saturating_duration_since(Instant::now()),
        };
        workers = p.wait_for_workers(workers, Some(tick));
        p.monitor_awake();
    }
}

/// Once per reconnect interval (at most a second): the pressure source,
/// the session, escalations and the mode.
fn housekeeping(p: &Process, workers: &[Arc<Worker>], psi_files: &[std::path::PathBuf]) {
    let config = p.config();
    // Pressure source.
    let mut psi = None;
    if config.sources.pressure {
        match pressure::read_pressure(psi_files) {
            Ok(v) => psi = Some(v),
            Err(e) => p.say_once(
                log::Level::Info,
                &format!("morpheus: pressure source inactive: {e}"),
            ),
        }
    }
    p.set_psi(psi);

    // Kernel source: watch the session, reconnect, (re-)register.
    if config.sources.kernel {
        p.session().maintain(p, workers, config.reconnect_interval);
    }

    // Escalations and kernel pressure of registered workers.
    let mut new_escalations = 0u64;
    let mut kernel_pressure: Option<u32> = None;
    let mut registered = false;
    for w in workers {
        let Some(reg) = w.registration() else {
            continue;
        };
        registered = true;
        // SAFETY: registered SCBs are in never-unmapped mappings.
        let scb = unsafe { ScbRef::new(reg.scb) };
        let esc = scb.escalations().load(Relaxed);
        let seen = w.swap_escalations_seen(esc);
        let delta = u64::from(esc.wrapping_sub(seen));
        if delta > 0 && delta < u64::from(u32::MAX / 2) {
            w.ledger().yielded(YieldCause::Escalated, delta);
            new_escalations += delta;
        }
        let pr = scb.pressure().load(Relaxed);
        kernel_pressure = Some(kernel_pressure.map_or(pr, |k| k.max(pr)));
    }
    p.add_escalations(new_escalations);
    let inputs = ModeInputs {
        registered,
        new_escalations,
        psi_avg10: psi,
        kernel_pressure,
    };
    p.update_mode(monotonic_ns(), inputs);
}

#[cfg(test)]
mod tests {
    use super::until_budget_out;

    const B: u64 = 10_000_000;

    #[test]
    fn the_budget_runs_out_after_a_budget_of_wall_time_and_half_of_cpu() {
        assert_eq!(until_budget_out(B, B, B / 2), None);
        assert_eq!(until_budget_out(B, 2 * B, B), None);
        // A budget of wall time, too little CPU: at least the CPU missing.
        assert_eq!(until_budget_out(B, B, B / 2 - 1_000), Some(1_000));
        assert_eq!(until_budget_out(B, 3 * B, 0), Some(B / 2));
        // Busy, but not a budget yet: the wall time missing.
        assert_eq!(until_budget_out(B, B - 7, B - 7), Some(7));
        // Neither: whichever is further off.
        assert_eq!(until_budget_out(B, B / 4, 0), Some(3 * B / 4));
        assert_eq!(until_budget_out(B, 3 * B / 4, 0), Some(B / 2));
        assert_eq!(until_budget_out(B, B / 4, B / 4), Some(3 * B / 4));
        assert_eq!(until_budget_out(B, 0, 0), Some(B));
    }
}
