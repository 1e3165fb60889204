// SPDX-License-Identifier: GPL-2.0-only
//! A latency probe: a Tokio task that asks to wake every period and
//! records how late each wake-up is. A task that cannot run (its worker is
//! hogged) shows up as lateness; one still waiting when the probe is
//! finished counts with its lateness so far, so a probe that never ran is
//! not reported as "no samples".
//!
//! Tokio's timer has a 1 ms resolution: an idle runtime shows up to ~1 ms.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct State {
    origin: Instant,
    /// The pending deadline in ns since `origin` (u64::MAX: none).
    deadline_ns: AtomicU64,
    /// Samples, and whether the probe is finished (no more samples).
    samples: Mutex<(Vec<u64>, bool)>,
}

/// A running probe.
pub struct Probe {
    state: Arc<State>,
}

impl Probe {
    /// Spawns the probe task on `rt` with the given wake-up period.
    pub fn spawn(rt: &tokio::runtime::Handle, period: Duration) -> Probe {
        let state = Arc::new(State {
            origin: Instant::now(),
            deadline_ns: AtomicU64::new(u64::MAX),
            samples: Mutex::new((Vec::with_capacity(1 << 16), false)),
        });
        let s = state.clone();
        rt.spawn(async move {
            let mut deadline = Instant::now() + period;
            loop {
                let rel = deadline.duration_since(s.origin).as_nanos() as u64;
                s.deadline_ns.store(rel, Ordering::Release);
                tokio::time::sleep_until(deadline.into()).await;
                let now = Instant::now();
                {
                    let mut g = s.samples.lock().unwrap_or_else(|e| e.into_inner());
                    if g.1 {
                        return;
                    }
                    g.0.push(now.saturating_duration_since(deadline).as_nanos() as u64);
                }
                deadline += period;
                if deadline <= now {
                    deadline = now + period;
                }
            }
        });
        Probe { state }
    }

    /// Stops recording and returns the lateness samples (ns), including the
    /// lateness so far of a wake-up still pending.
    pub fn finish(self) -> Vec<u64> {
        let now = Instant::now();
        let mut g = self.state.samples.lock().unwrap_or_else(|e| e.into_inner());
        g.1 = true;
        let pending = self.state.deadline_ns.load(Ordering::Acquire);
        let elapsed = now.duration_since(self.state.origin).as_nanos() as u64;
        // Only a wake-up that is overdue by more than the timer's resolution
        // counts as pending (otherwise it is simply about to happen).
        if pending != u64::MAX && elapsed > pending + 2_000_000 {
            g.0.push(elapsed - pending);
        }
        std::mem::take(&mut g.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_runtime_has_small_lateness() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let p = Probe::spawn(rt.handle(), Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(100));
        let samples = p.finish();
        assert!(samples.len() > 20, "{} samples", samples.len());
    }

    #[test]
    fn a_starved_probe_reports_its_pending_lateness() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let p = Probe::spawn(rt.handle(), Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(20));
        let s2 = stop.clone();
        rt.spawn(async move {
            while !s2.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        });
        std::thread::sleep(Duration::from_millis(200));
        let samples = p.finish();
        stop.store(true, Ordering::Relaxed);
        let max = samples.iter().copied().max().unwrap();
        assert!(max >= 150_000_000, "max lateness {max} ns");
    }
}
