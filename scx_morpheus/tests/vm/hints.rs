// SPDX-License-Identifier: GPL-2.0-only
//! Hints: sent only under contention, answered at checkpoints, measured.

use morpheus_common::WorkerState;

use crate::support::worker::Behaviour;
use crate::support::*;

#[test]
fn a_worker_gets_hints_only_when_others_wait_for_its_cpu() {
    require_sched_ext();
    let _slot = exclusive();
    // The loader's threads stay off the worker's CPU, and this thread (the
    // only other one of the test that runs meanwhile) too: nothing else of
    // ours can wait for that CPU. Wakeups of other tasks find the other CPU
    // idle, or one already kicked for them, and do not count as waiting.
    let h = Harness::start_off_test_cpu("hints", 19101, &[]);
    let others: Vec<usize> = (0..test_cpu()).collect();
    pin_to_any(&others);

    // Alone on its CPU (a checkpointing worker, so every answered hint
    // could be followed by another): runs undisturbed.
    let alone = h.alone(0, Behaviour::Checkpoint, 1500);
    assert_eq!(
        alone.state_after_run,
        WorkerState::Running as u16,
        "first run moves REGISTERED -> RUNNING"
    );
    pin_to_any(&(0..online_cpus()).collect::<Vec<_>>());

    // Two CPU hogs on the same CPU: the worker runs its slice while they wait.
    let busy = h.contended(0, Behaviour::Checkpoint, 1500);

    // Alone on its CPU it is hinted only when a task that woke with no CPU
    // idle (the other CPU busy for a moment) is entitled to its CPU: wake-up
    // preemption makes that task a waiter too. That is rare; waiting hogs
    // make hints a matter of every slice.
    assert!(
        alone.hints * 20 <= busy.hints,
        "an uncontended worker got {} hints, a contended one {}",
        alone.hints,
        busy.hints
    );
    assert!(
        busy.hints >= 5,
        "a worker that ran its slice while others waited got {} hints",
        busy.hints
    );
    // At a tick in the contended run the worker runs and at least one hog
    // waits in the queue: two runnable tasks at the least. (The uncontended
    // run's maximum is no baseline: a momentary queue can reach any level.)
    let contended_level = morpheus_common::abi::MORPHEUS_PRESSURE_ONE * 2 / online_cpus() as u32;
    assert!(
        busy.pressure_max >= contended_level,
        "the SCB carries the pressure level: {} under contention, expected >= {contended_level}",
        busy.pressure_max
    );
    assert!(h.metric("hints_sent") >= busy.hints);
    h.stop();
}

#[test]
fn a_checkpointing_worker_answers_within_grace_and_is_measured() {
    require_sched_ext();
    let _slot = exclusive();
    let h = Harness::start("answers", 19102, &["--grace-ms", "100"]);
    assert_eq!(
        h.session.grace_ns, 100_000_000,
        "HELLO announces the grace period"
    );

    let report = h.contended(0, Behaviour::Checkpoint, 2000);
    assert!(report.slot < h.session.max_workers && report.generation >= 1);

    assert!(report.hints >= 1 && report.acked >= 1, "{report:?}");
    assert!(
        report.answered_in_grace >= 1,
        "the SCB counts hints answered in grace"
    );
    let sent = h.metric("hints_sent");
    let answered = h.metric("hints_answered");
    let in_grace = h.metric("hints_answered_in_grace");
    let p99 = h.quantile_us("hint_response_seconds", 0.99);
    println!("metrics: sent {sent} answered {answered} in grace {in_grace} p99 {p99}us");
    assert!(in_grace >= 1 && answered >= in_grace);
    assert!(
        p99 > 0 && p99 <= 2 * 100_000,
        "response time histogram: p99 {p99}us"
    );
    assert_eq!(
        h.metric("escalations_kick"),
        0,
        "observer mode never escalates"
    );
    h.stop();
}
