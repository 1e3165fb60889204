// SPDX-License-Identifier: GPL-2.0-only
//! A plain (unregistered) thread that sleeps in a loop and measures how late
//! it gets its CPU back: the wake-up latency the preemption tests observe.

use std::time::{Duration, Instant};

use super::pin_to;

/// How late a sleeper ran after each of its wake-ups.
#[derive(Debug, Clone)]
pub struct Lateness {
    sorted: Vec<Duration>,
}

impl Lateness {
    /// The median lateness.
    pub fn median(&self) -> Duration {
        self.sorted[self.sorted.len() / 2]
    }

    /// The largest lateness.
    pub fn max(&self) -> Duration {
        *self.sorted.last().expect("at least one sample")
    }

    /// How many wake-ups were measured.
    pub fn samples(&self) -> usize {
        self.sorted.len()
    }
}

/// Spawns a thread pinned to `cpu` that sleeps `period` at a time until
/// `dur` has passed and returns how late each wake-up was (time on the CPU
/// again minus the end of the sleep).
pub fn spawn(cpu: usize, period: Duration, dur: Duration) -> std::thread::JoinHandle<Lateness> {
    std::thread::spawn(move || {
        pin_to(cpu);
        let end = Instant::now() + dur;
        let mut late = Vec::new();
        while Instant::now() < end {
            let due = Instant::now() + period;
            std::thread::sleep(period);
            late.push(Instant::now().saturating_duration_since(due));
        }
        late.sort();
        assert!(!late.is_empty(), "the sleeper never woke up");
        Lateness { sorted: late }
    })
}
