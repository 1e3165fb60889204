// SPDX-License-Identifier: GPL-2.0-only
//! Wake-up preemption and decisions on time: a woken task takes a hog's CPU
//! at once; a worker outside a critical section is hinted and gets its
//! yield window first; a critical section keeps its CPU until the cap;
//! hints are issued when due, not at the next tick.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::support::sleeper::{self, Lateness};
use crate::support::worker::{self, Behaviour};
use crate::support::*;

const SLEEP: Duration = Duration::from_millis(1);

/// Runs a registered worker with `behaviour` on the test CPU for `ms` and,
/// once it has started, a sleeper beside it; returns both reports.
fn worker_and_sleeper(h: &Harness, behaviour: Behaviour, ms: u64) -> (worker::Report, Lateness) {
    let session = h.session.clone();
    let w = std::thread::spawn(move || {
        worker::run(session, 0, behaviour, test_cpu(), Duration::from_millis(ms))
    });
    std::thread::sleep(Duration::from_millis(200));
    let late = sleeper::spawn(test_cpu(), SLEEP, Duration::from_millis(ms - 400))
        .join()
        .expect("sleeper");
    let report = w.join().expect("worker");
    println!(
        "{behaviour:?}: {report:?}; sleeper: {} wake-ups, median {:?}, max {:?}",
        late.samples(),
        late.median(),
        late.max()
    );
    (report, late)
}

#[test]
fn a_woken_task_preempts_a_hog_at_once() {
    require_sched_ext();
    let _slot = exclusive();
    // 20 ms slices: without wake-up preemption a woken thread would wait
    // for the running hog's slice to end, about 20 ms.
    let slice = [
        "--slice-ms",
        "20",
        "--slice-min-ms",
        "20",
        "--slice-max-ms",
        "20",
    ];
    let h = Harness::start("wakeup", 19601, &slice);
    let stop = Arc::new(AtomicBool::new(false));
    let hogs = hogs(2, test_cpu(), stop.clone());
    let before = h.metric("nr_wakeup_preempts");
    let late = sleeper::spawn(test_cpu(), SLEEP, Duration::from_millis(1500))
        .join()
        .expect("sleeper");
    let preempts = h.metric("nr_wakeup_preempts") - before;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    hogs.into_iter().for_each(|t| drop(t.join()));
    println!(
        "sleeper beside 2 hogs: {} wake-ups, median {:?}, max {:?}; {preempts} wake-up preemptions",
        late.samples(),
        late.median(),
        late.max()
    );
    assert!(
        preempts as usize >= late.samples() / 2,
        "most wake-ups preempt a hog ({preempts} of {})",
        late.samples()
    );
    assert!(
        late.median() < Duration::from_millis(5),
        "a woken task does not wait for the hog's 20 ms slice (median {:?})",
        late.median()
    );
    h.stop();
}

#[test]
fn a_worker_is_hinted_and_gets_its_yield_window_before_preemption() {
    require_sched_ext();
    let _slot = exclusive();
    // A 20 ms window, long enough to tell from an immediate preemption
    // under emulation.
    let h = Harness::start("window", 19602, &["--yield-window-us", "20000"]);

    // A worker that never checkpoints keeps the CPU for the whole window,
    // then is preempted.
    let (_ignore, late) = worker_and_sleeper(&h, Behaviour::Ignore, 1500);
    let window_preempts = h.metric("nr_window_preempts");
    // It never answers, so its one hint stays outstanding (and may come
    // before it reads its SCB): the scheduler's count says it was sent.
    assert!(h.metric("hints_sent") >= 1, "the worker is hinted first");
    assert!(h.metric("nr_wakeup_hints") >= 1);
    assert!(window_preempts >= 1, "and preempted when the window ends");
    assert!(
        late.median() >= Duration::from_millis(10),
        "the woken task waited for the window (median {:?})",
        late.median()
    );

    // A worker that checkpoints yields at its next checkpoint, well within
    // the window: the woken task gets the CPU soon, nobody is preempted.
    let (checkpoint, late) = worker_and_sleeper(&h, Behaviour::Checkpoint, 1500);
    assert!(checkpoint.acked >= 1, "it answered hints");
    assert!(
        late.median() < Duration::from_millis(5),
        "a worker at a checkpoint gives way in time (median {:?})",
        late.median()
    );
    assert!(
        h.metric("nr_window_preempts") <= window_preempts + 2,
        "a checkpointing worker is not preempted ({} window preemptions)",
        h.metric("nr_window_preempts") - window_preempts
    );
    h.stop();
}

#[test]
fn a_critical_section_keeps_its_cpu_until_the_cap() {
    require_sched_ext();
    let _slot = exclusive();
    let h = Harness::start(
        "critical",
        19603,
        &["--yield-window-us", "1000", "--max-critical-ms", "100"],
    );
    let (crit, late) = worker_and_sleeper(&h, Behaviour::CriticalForever, 1500);
    assert!(crit.hints >= 1, "the worker is hinted");
    assert_eq!(
        h.metric("nr_window_preempts"),
        0,
        "a critical section is not preempted when the yield window ends"
    );
    assert!(
        h.metric("critical_cap_violations") >= 1,
        "but it is at the cap"
    );
    assert!(
        late.median() >= Duration::from_millis(50),
        "the woken task waited for the section, up to the 100 ms cap (median {:?})",
        late.median()
    );
    h.stop();
}

#[test]
fn hints_are_issued_when_due_not_at_the_next_tick() {
    require_sched_ext();
    let _slot = exclusive();
    // 3 ms slices: the worker's slice ends between two 4 ms ticks.
    let slice = [
        "--slice-ms",
        "3",
        "--slice-min-ms",
        "3",
        "--slice-max-ms",
        "3",
    ];
    let h = Harness::start("ontime", 19604, &slice);
    let r = h.contended(0, Behaviour::Checkpoint, 1500);
    let (p50, p99) = (h.metric("hint_delay_p50_us"), h.metric("hint_delay_p99_us"));
    println!(
        "hint delay p50 <= {p50} us, p99 <= {p99} us; timer kicks {}",
        h.metric("nr_timer_kicks")
    );
    assert!(r.hints >= 20, "hints at every slice end ({})", r.hints);
    assert!(h.metric("nr_timer_kicks") >= 1, "the decision timer fired");
    // A tick-driven hint would come 0-4 ms late, 2 ms in the median.
    assert!(
        p50 <= 1024,
        "the median hint is issued within 1 ms of its slice's end (p50 <= {p50} us)"
    );
    h.stop();
}
