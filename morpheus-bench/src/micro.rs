// SPDX-License-Identifier: GPL-2.0-only
//! Microbenchmark cases shared by the criterion bench (`benches/`) and the
//! `microbench` program (timing and exact instruction counts under
//! callgrind).
//!
//! Each case runs on a fresh thread, does its setup there (attaching the
//! thread as a Morpheus worker with a one-hour budget, so no budget signal
//! fires during the loop, unless the case wants one) and then runs the
//! operation `n` times inside a `#[no_mangle]` function named `mb_<case>`,
//! which callgrind can be told to count (`--toggle-collect=mb_*`).

use std::future::Future;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use morpheus_runtime::{WorkerOptions, attach_worker, bindings, critical_section};

/// One microbenchmark.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// Short name (also `mb_<name>`, the counted function).
    pub name: &'static str,
    /// What one iteration does.
    pub what: &'static str,
    /// The function callgrind counts (`mb_...`).
    pub counted: &'static str,
    /// Environment variables the case needs (its own process).
    pub env: &'static [(&'static str, &'static str)],
    /// Runs `n` iterations on a fresh thread; returns the loop's time.
    pub run: fn(u64) -> Duration,
}

/// Every case, baselines first.
pub const CASES: &[Case] = &[
    Case {
        name: "empty_loop",
        what: "an empty loop iteration (black_box of the counter)",
        counted: "mb_empty_loop",
        env: &[],
        run: run_empty,
    },
    Case {
        name: "async_loop",
        what: "an async loop iteration in a task with a never-taken await point (the baseline for checkpoint!())",
        counted: "mb_async_loop",
        env: &[],
        run: run_async_loop,
    },
    Case {
        name: "tokio_has_budget",
        what: "tokio::task::coop::has_budget_remaining() in a task",
        counted: "mb_tokio_has_budget",
        env: &[],
        run: run_has_budget,
    },
    Case {
        name: "tokio_consume_budget",
        what: "tokio::task::coop::consume_budget().await in a task",
        counted: "mb_tokio_consume_budget",
        env: &[],
        run: run_consume_budget,
    },
    Case {
        name: "tokio_yield_now",
        what: "tokio::task::yield_now().await in a task",
        counted: "mb_tokio_yield_now",
        env: &[],
        run: run_yield_now,
    },
    Case {
        name: "checkpoint_async",
        what: "checkpoint!() fast path in a Tokio task (worker, no hint pending)",
        counted: "mb_checkpoint_async",
        env: &[],
        run: run_checkpoint_async,
    },
    Case {
        name: "checkpoint_sync",
        what: "bindings::checkpoint() fast path (worker, no hint pending)",
        counted: "mb_checkpoint_sync",
        env: &[],
        run: run_checkpoint_sync,
    },
    Case {
        name: "checkpoint_unregistered",
        what: "checkpoint!() fast path in a task of a thread with MORPHEUS_SOURCES=budget (never kernel-registered)",
        counted: "mb_checkpoint_async",
        env: &[("MORPHEUS_SOURCES", "budget")],
        run: run_checkpoint_async,
    },
    Case {
        name: "checkpoint_pending",
        what: "bindings::checkpoint() with a signal pending: the slow path (inside a critical section, so the yield itself is deferred)",
        counted: "mb_checkpoint_pending",
        env: &[],
        run: run_checkpoint_pending,
    },
    Case {
        name: "critical_section",
        what: "critical_section() guard: enter + exit",
        counted: "mb_critical_section",
        env: &[],
        run: run_critical,
    },
    Case {
        name: "enter_exit_critical",
        what: "enter_critical() + exit_critical() (the guardless API)",
        counted: "mb_enter_exit_critical",
        env: &[],
        run: run_enter_exit,
    },
];

/// The case called `name`.
pub fn case(name: &str) -> Option<&'static Case> {
    CASES.iter().find(|c| c.name == name)
}

/// Whether the last benchmark thread that attached got a kernel slot.
pub static REGISTERED: AtomicBool = AtomicBool::new(false);

fn worker(budget: Duration) {
    let opts = WorkerOptions {
        budget: Some(budget),
        ..Default::default()
    };
    attach_worker(opts).expect("attach the benchmark thread");
    let slot = morpheus_runtime::current_worker().ok().and_then(|w| w.slot);
    REGISTERED.store(slot.is_some(), Ordering::Relaxed);
}

const HOUR: Duration = Duration::from_secs(3600);

fn on_thread(f: impl FnOnce() -> Duration + Send + 'static) -> Duration {
    std::thread::spawn(f)
        .join()
        .expect("benchmark thread panicked")
}

fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

/// A current-thread runtime on this thread, running `fut` to completion and
/// timing it.
fn in_task<F: Future<Output = ()>>(fut: impl FnOnce() -> F) -> Duration {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let t = Instant::now();
        fut().await;
        t.elapsed()
    })
}

/// Counted: the empty loop.
#[unsafe(no_mangle)]
#[inline(never)]
pub fn mb_empty_loop(n: u64) {
    for i in 0..n {
        black_box(i);
    }
}
fn run_empty(n: u64) -> Duration {
    on_thread(move || timed(|| mb_empty_loop(n)))
}

/// Counted: an async loop with an await point that is never taken.
#[unsafe(no_mangle)]
#[inline(never)]
pub fn mb_async_loop(rt: &tokio::runtime::Runtime, n: u64) {
    rt.block_on(async {
        for _ in 0..n {
            if black_box(false) {
                tokio::task::yield_now().await;
            }
        }
    })
}
fn run_async_loop(n: u64) -> Duration {
    on_thread(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        timed(|| mb_async_loop(&rt, n))
    })
}

/// Counted: Tokio's has_budget_remaining.
#[unsafe(no_mangle)]
#[inline(never)]
pub fn mb_tokio_has_budget(n: u64) {
    for _ in 0..n {
        black_box(tokio::task::coop::has_budget_remaining());
    }
}
fn run_has_budget(n: u64) -> Duration {
    on_thread(move || in_task(|| async move { mb_tokio_has_budget(n) }))
}

/// Counted: Tokio's consume_budget (the async loop is polled in here).
#[unsafe(no_mangle)]
#[inline(never)]
pub fn mb_tokio_consume_budget(rt: &tokio::runtime::Runtime, n: u64) {
    rt.block_on(async {
        for _ in 0..n {
            tokio::task::coop::consume_budget().await;
        }
    })
}
fn run_consume_budget(n: u64) -> Duration {
    on_thread(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        timed(|| mb_tokio_consume_budget(&rt, n))
    })
}

/// Counted: Tokio's yield_now.
#[unsafe(no_mangle)]
#[inline(never)]
pub fn mb_tokio_yield_now(rt: &tokio::runtime::Runtime, n: u64) {
    rt.block_on(async {
        for _ in 0..n {
            tokio::task::yield_now().await;
        }
    })
}
fn run_yield_now(n: u64) -> Duration {
    on_thread(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        timed(|| mb_tokio_yield_now(&rt, n))
    })
}

/// Counted: checkpoint!() in a task.
#[unsafe(no_mangle)]
#[inline(never)]
pub fn mb_checkpoint_async(rt: &tokio::runtime::Runtime, n: u64) {
    rt.block_on(async {
        for _ in 0..n {
            morpheus_runtime::checkpoint!();
        }
    })
}
fn run_checkpoint_async(n: u64) -> Duration {
    on_thread(move || {
        worker(HOUR);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        timed(|| mb_checkpoint_async(&rt, n))
    })
}

/// Counted: bindings::checkpoint().
#[unsafe(no_mangle)]
#[inline(never)]
pub fn mb_checkpoint_sync(n: u64) {
    for _ in 0..n {
        black_box(bindings::checkpoint());
    }
}
fn run_checkpoint_sync(n: u64) -> Duration {
    on_thread(move || {
        worker(HOUR);
        timed(|| mb_checkpoint_sync(n))
    })
}

/// Counted: bindings::checkpoint() while a signal stays pending.
#[unsafe(no_mangle)]
#[inline(never)]
pub fn mb_checkpoint_pending(n: u64) {
    let mut yields = 0u64;
    for _ in 0..n {
        yields += u64::from(bindings::checkpoint().is_some());
    }
    black_box(yields);
}
fn run_checkpoint_pending(n: u64) -> Duration {
    on_thread(move || {
        worker(Duration::from_millis(1));
        let _cs = critical_section();
        // Run until the budget source has signalled (the deferral counter
        // moves): from then on every checkpoint takes the slow path.
        let deadline = Instant::now() + Duration::from_secs(30);
        while deferred() == 0 && Instant::now() < deadline {
            black_box(bindings::checkpoint());
        }
        assert!(deferred() > 0, "no budget signal within 30 s");
        timed(|| mb_checkpoint_pending(n))
    })
}
fn deferred() -> u64 {
    morpheus_runtime::current_worker().map_or(0, |w| w.ledger.checkpoints_deferred)
}

/// Counted: a critical_section() guard.
#[unsafe(no_mangle)]
#[inline(never)]
pub fn mb_critical_section(n: u64) {
    for _ in 0..n {
        drop(black_box(critical_section()));
    }
}
fn run_critical(n: u64) -> Duration {
    on_thread(move || {
        worker(HOUR);
        timed(|| mb_critical_section(n))
    })
}

/// Counted: enter_critical() + exit_critical().
#[unsafe(no_mangle)]
#[inline(never)]
pub fn mb_enter_exit_critical(n: u64) {
    for _ in 0..n {
        let _ = black_box(morpheus_runtime::bindings::enter_critical());
        let _ = black_box(morpheus_runtime::bindings::exit_critical());
    }
}
fn run_enter_exit(n: u64) -> Duration {
    on_thread(move || {
        worker(HOUR);
        timed(|| mb_enter_exit_critical(n))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_runs() {
        for c in CASES {
            let d = (c.run)(1000);
            assert!(d > Duration::ZERO, "{}", c.name);
        }
        assert!(case("checkpoint_sync").is_some());
        assert!(case("nope").is_none());
    }
}
