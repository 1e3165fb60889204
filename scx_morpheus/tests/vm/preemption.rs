// SPDX-License-Identifier: GPL-2.0-only
//! Wake-up preemption and decisions on time: a woken task takes a hog's CPU
//! at once, without waiting for the run-to-parity granularity when it
//! slept; a worker outside a critical section is hinted and gets its
//! yield window first; a critical section keeps its CPU until the cap;
//! hints are issued when due, not at the next tick.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::support::sleeper::{self, Lateness};
use crate::support::worker::{self, Behaviour};
use crate::support::*;

const SLEEP: Duration = Duration::from_millis(1);

/// Loader arguments for a slice of `ms` milliseconds whatever the load.
fn fixed_slice(ms: &str) -> [&str; 6] {
    ["--slice-ms", ms, "--slice-min-ms", ms, "--slice-max-ms", ms]
}

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

/// A thread that sleeps SLEEP in a loop for 1.5 s on the test CPU beside
/// two hogs there: how late its wake-ups were, and says so.
fn sleeper_beside_hogs(what: &str) -> Lateness {
    let stop = Arc::new(AtomicBool::new(false));
    let hogs = hogs(2, test_cpu(), stop.clone());
    let late = sleeper::spawn(test_cpu(), SLEEP, Duration::from_millis(1500))
        .join()
        .expect("sleeper");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    hogs.into_iter().for_each(|t| drop(t.join()));
    println!(
        "sleeper beside 2 hogs, {what}: {} wake-ups, median {:?}, max {:?}",
        late.samples(),
        late.median(),
        late.max()
    );
    late
}

#[test]
fn a_woken_task_preempts_a_hog_at_once() {
    require_sched_ext();
    let _slot = exclusive();
    // 20 ms slices: without wake-up preemption a woken thread would wait
    // for the running hog's slice to end, about 20 ms.
    let h = Harness::start("wakeup", 19601, &fixed_slice("20"));
    let before = h.metric("nr_wakeup_preempts");
    let late = sleeper_beside_hogs("20 ms slices");
    let preempts = h.metric("nr_wakeup_preempts") - before;
    println!("{preempts} wake-up preemptions");
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

/// The run-to-parity granularity protects a task that has just started
/// from tasks about even with it, not from one that slept: a woken task
/// that lags the running one by more than the granularity in vtime takes
/// the CPU at once, however recently that task started.
#[test]
fn a_task_that_slept_does_not_wait_for_the_granularity() {
    require_sched_ext();
    let _slot = exclusive();
    // A 10 ms granularity and 20 ms slices. A sleeper that preempted one
    // hog finds the next one just started when it wakes 1 ms later: by run
    // time alone it would wait about 9 ms for it. It slept while they ran,
    // so it lags them by more than 10 ms and preempts at once.
    let mut args = fixed_slice("20").to_vec();
    args.extend(["--wakeup-granularity-us", "10000"]);
    let h = Harness::start("parity", 19607, &args);
    let late = sleeper_beside_hogs("10 ms granularity");
    assert!(
        late.median() < Duration::from_millis(5),
        "a task that slept waited for the 10 ms granularity (median {:?})",
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
    let h = Harness::start("ontime", 19604, &fixed_slice("3"));
    let r = h.contended(0, Behaviour::Checkpoint, 1500);
    let (p50, p99) = (
        h.quantile_us("hint_delay_seconds", 0.50),
        h.quantile_us("hint_delay_seconds", 0.99),
    );
    let (late_p50, late_p99) = (
        h.quantile_us("timer_late_seconds", 0.50),
        h.quantile_us("timer_late_seconds", 0.99),
    );
    println!(
        "hint delay p50 <= {p50} us, p99 <= {p99} us; timer kicks {}, timers late p50 <= {late_p50} us, p99 <= {late_p99} us",
        h.metric("nr_timer_kicks")
    );
    assert!(r.hints >= 20, "hints at every slice end ({})", r.hints);
    assert!(h.metric("nr_timer_kicks") >= 1, "the decision timer fired");
    // How late the timers fired is recorded (log2 buckets of
    // microseconds: some samples, and in microseconds, not nanoseconds).
    assert!(
        (2..=late_p99).contains(&late_p50) && late_p99 < 1 << 20,
        "timer lateness p50 {late_p50} us, p99 {late_p99} us"
    );
    // A tick-driven hint would come 0-4 ms late, 2 ms in the median.
    assert!(
        p50 <= 1024,
        "the median hint is issued within 1 ms of its slice's end (p50 <= {p50} us)"
    );
    h.stop();
}

/// CPU time and involuntary context switches of the calling thread.
fn thread_usage() -> (Duration, i64) {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: ru is a valid rusage for the kernel to fill.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    assert_eq!(rc, 0, "getrusage: {}", std::io::Error::last_os_error());
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (tv(ru.ru_utime) + tv(ru.ru_stime), ru.ru_nivcsw)
}

#[test]
fn a_plain_task_gives_way_when_its_slice_ends_not_at_the_next_tick() {
    require_sched_ext();
    let _slot = exclusive();
    // 1 ms slices, a quarter of the 4 ms tick period (CONFIG_HZ=250): a
    // slice noticed only at a tick would last about 4 ms.
    let h = Harness::start("slices", 19605, &fixed_slice("1"));
    let before = h.metric("nr_slice_preempts");
    // Two plain CPU-bound threads on one CPU, each always waiting for the
    // other: every run should end when its slice does. The run length is
    // measured as CPU time per involuntary switch, which the emulator's
    // clock jumps do not disturb.
    let runs: Vec<(Duration, i64)> = (0..2)
        .map(|_| {
            std::thread::spawn(|| {
                pin_to(test_cpu());
                let start = thread_usage();
                let end = std::time::Instant::now() + Duration::from_millis(1500);
                while std::time::Instant::now() < end {
                    spin_us(20);
                }
                let stop = thread_usage();
                (stop.0 - start.0, stop.1 - start.1)
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().expect("hog"))
        .collect();
    let preempts = h.metric("nr_slice_preempts") - before;
    let cpu: Duration = runs.iter().map(|r| r.0).sum();
    let switches: i64 = runs.iter().map(|r| r.1).sum();
    let mean_run = cpu / switches.max(1) as u32;
    println!(
        "2 hogs, 1 ms slices: {cpu:?} CPU in {switches} runs, mean {mean_run:?}; {preempts} slice preemptions"
    );
    assert!(switches >= 100, "the hogs took turns ({switches} switches)");
    assert!(
        preempts as i64 >= switches / 2,
        "most runs ended at their slice's end by the timer or a waker ({preempts} of {switches})"
    );
    assert!(
        mean_run < Duration::from_millis(3),
        "a run lasts about its 1 ms slice, not a 4 ms tick period (mean {mean_run:?})"
    );
    h.stop();
}

/// Samples the loader's `slice_us` gauge every 20 ms for `dur`.
fn slice_samples(h: &Harness, dur: Duration) -> Vec<u64> {
    let end = std::time::Instant::now() + dur;
    let mut samples = Vec::new();
    while std::time::Instant::now() < end {
        samples.push(h.metric("slice_us"));
        std::thread::sleep(Duration::from_millis(20));
    }
    samples
}

#[test]
fn the_slice_shrinks_as_the_queues_grow_within_its_bounds() {
    require_sched_ext();
    let _slot = exclusive();
    // --slice-us at one waiting task per CPU; 2 * slice * cpus / (cpus +
    // queued) in general, within [min, max].
    let (slice, min, max) = (5000u64, 1000u64, 10_000u64);
    let h = Harness::start(
        "adaptive-slice",
        19606,
        &[
            "--slice-us",
            &slice.to_string(),
            "--slice-min-us",
            &min.to_string(),
            "--slice-max-us",
            &max.to_string(),
        ],
    );
    let cpus = online_cpus() as u64;
    // Nobody waits: twice the slice, clipped to the maximum.
    assert!(
        wait_for(Duration::from_secs(10), || h.metric("slice_us") == max),
        "an idle machine never got the maximum slice: {}",
        h.metric("slice_us")
    );
    for (n, lo, hi) in [
        // n - 1 hogs queued behind the one running: at most this slice.
        (12u64, min, 2 * slice * cpus / (cpus + 11)),
        // Far more: the minimum, never less.
        (40, min, min),
    ] {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = hogs(n as usize, test_cpu(), stop.clone());
        std::thread::sleep(Duration::from_millis(500));
        let samples = slice_samples(&h, Duration::from_secs(1));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        threads.into_iter().for_each(|t| {
            t.join().unwrap();
        });
        println!("{n} hogs on one CPU: slice_us samples {samples:?}");
        assert!(
            samples.iter().all(|&s| (lo..=hi).contains(&s)),
            "{n} hogs: slice outside {lo}..={hi} us: {samples:?}"
        );
    }
    assert!(
        wait_for(Duration::from_secs(10), || h.metric("slice_us") == max),
        "the slice did not grow back when the hogs left: {}",
        h.metric("slice_us")
    );
    h.stop();
}
