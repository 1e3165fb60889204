// SPDX-License-Identifier: GPL-2.0-only
//! The monitor thread sleeps until a budget can run out: a worker that
//! yields more often than its budget costs it about one wake-up per budget,
//! not one per quarter budget (a fixed tick). No scheduler is running
//! (socket path absent). Its own process: no other worker may exist.

mod common;

use std::time::{Duration, Instant};

use common::switches_of;
use morpheus_runtime::{YieldCause, bindings, current_worker};

const BUDGET: Duration = Duration::from_millis(10);
const WINDOW: Duration = Duration::from_millis(600);

#[test]
fn the_monitor_wakes_about_once_per_budget_while_a_worker_yields_often() {
    common::configure_budget_only("monitor-absent", BUDGET);
    // The first checkpoint attaches this thread (and starts the monitor).
    assert_eq!(bindings::checkpoint(), None);
    assert!(current_worker().is_ok());
    // Let the monitor settle into its loop.
    std::thread::sleep(Duration::from_millis(50));

    let before = switches_of("morpheus-monitor");
    let start = Instant::now();
    let mut yields = 0u64;
    while start.elapsed() < WINDOW {
        // Busy for 1 ms, then a yield: the budget never runs out.
        common::spin(Duration::from_millis(1));
        morpheus_runtime::bindings::record_voluntary_yield();
        yields += 1;
        assert_eq!(
            bindings::checkpoint(),
            None,
            "no budget yield while yielding every 1 ms"
        );
    }
    let wakes = switches_of("morpheus-monitor") - before;
    let me = current_worker().unwrap();
    assert_eq!(
        me.ledger.yields_by(YieldCause::Budget),
        0,
        "{:?}",
        me.ledger
    );
    assert!(
        yields >= 100,
        "only {yields} yields: the host is too busy for this test"
    );
    // About WINDOW / BUDGET = 60 sleeps, plus housekeeping once a second; a
    // quarter-budget tick would take 240. Twice the expected figure leaves
    // room for wake-ups the host adds; a loaded host only stretches sleeps.
    let bound = 2 * (WINDOW.as_millis() / BUDGET.as_millis()) as u64 + 4;
    assert!(
        wakes <= bound,
        "the monitor woke {wakes} times in {WINDOW:?} (at most {bound} expected)"
    );
}
