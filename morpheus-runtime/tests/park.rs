// SPDX-License-Identifier: GPL-2.0-only
//! Parked workers cost the monitor nothing, and a worker that unparks is
//! budgeted at once: the workers of a Morpheus `Builder` runtime tell the
//! monitor when they park (Tokio's park hooks). No scheduler is running
//! (socket path absent). Its own process: no other worker may exist.
#![cfg(feature = "tokio")]

mod common;

use std::time::{Duration, Instant};

use common::switches_of;
use morpheus_runtime::{Builder, YieldCause, try_checkpoint};

const BUDGET: Duration = Duration::from_millis(10);
const IDLE: Duration = Duration::from_millis(600);
/// Far below the housekeeping interval (one second), which is how long a
/// monitor that nobody wakes would sleep with every worker parked.
const FIRST_BUDGET_YIELD_BOUND: Duration = Duration::from_millis(300);

/// Spins with a checkpoint every ~50 us until one yields for the budget;
/// returns how long that took.
async fn until_budget_yield() -> Duration {
    let start = Instant::now();
    loop {
        common::spin(Duration::from_micros(50));
        if try_checkpoint().await.unwrap() == Some(YieldCause::Budget) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no budget yield in 30 s"
        );
    }
}

#[test]
fn parked_workers_cost_no_wakeups_and_an_unparked_one_is_budgeted_at_once() {
    common::configure_budget_only("park-absent", BUDGET);
    let rt = Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Both workers attach at their first park; then everything idles.
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(100)).await });
    let workers = morpheus_runtime::metrics::snapshot().workers.len();
    assert_eq!(workers, 2, "both runtime threads are workers");

    // Idle: a monitor polling each idle worker's CPU time every half
    // budget would wake about 120 times; housekeeping wakes it once a second.
    let before = switches_of("morpheus-monitor");
    std::thread::sleep(IDLE);
    let wakes = switches_of("morpheus-monitor") - before;
    assert!(
        wakes <= 6,
        "the monitor woke {wakes} times in {IDLE:?} with every worker parked"
    );

    // A worker that unparks into a long task is budgeted from its unpark,
    // however long the monitor meant to sleep. Several times, each after
    // an idle spell, at different distances from housekeeping.
    let (mut best, mut worst) = (Duration::MAX, Duration::ZERO);
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(150));
        let took = rt.block_on(async { tokio::spawn(until_budget_yield()).await.unwrap() });
        best = best.min(took);
        worst = worst.max(took);
    }
    eprintln!(
        "idle monitor: {wakes} wake-ups in {IDLE:?}; first budget yield after an unpark \
         in {best:?} to {worst:?}"
    );
    assert!(
        worst < FIRST_BUDGET_YIELD_BOUND,
        "a worker that unparked waited {worst:?} for its first budget yield (budget {BUDGET:?})"
    );
    // Nor earlier than a budget: it starts at the unpark, not at the last
    // yield before the idle spell (then half a budget of CPU would do).
    assert!(
        best >= BUDGET * 8 / 10,
        "a worker that unparked yielded for its budget after {best:?} (budget {BUDGET:?})"
    );
}
