// SPDX-License-Identifier: GPL-2.0-only
//! Escalation is opt-in recovery: only --enforce, only escapable workers,
//! never inside a critical section (until its cap); caps bound everyone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use morpheus_common::WORKER_ESCAPABLE;

use crate::support::worker::{self, Behaviour};
use crate::support::*;

/// Escalations within the window after which HYBRID throttles
/// (`MORPHEUS_HYBRID_REPEAT` in the scheduler's intf.h).
const HYBRID_REPEAT: u64 = 3;

/// Waits until every penalty window has ended (they are bounded).
fn throttles_expire(h: &Harness) -> bool {
    wait_for(Duration::from_secs(5), || {
        // Expired entries are cleared when a task of the cgroup next stops.
        std::thread::sleep(Duration::from_millis(50));
        h.metric("throttles_active") == 0
    })
}

#[test]
fn enforce_escalates_only_escapable_workers_outside_critical_sections() {
    require_sched_ext();
    let _slot = exclusive();
    let h = Harness::start(
        "enforce",
        19201,
        &[
            "--enforce",
            "--grace-ms",
            "20",
            "--max-overrun-ms",
            "100",
            "--max-critical-ms",
            "2000",
        ],
    );
    assert_ne!(
        h.session.flags & morpheus_common::SCBK_ENFORCING,
        0,
        "HELLO announces enforcement"
    );

    let escapable = h.contended(WORKER_ESCAPABLE, Behaviour::Ignore, 1500);
    assert!(escapable.hints >= 1);
    assert!(
        escapable.escalations >= 1,
        "an escapable worker ignoring hints past grace is escalated"
    );
    let kicks = h.metric("escalations_kick");
    assert!(kicks >= escapable.escalations as u64);

    let stubborn = h.contended(0, Behaviour::Ignore, 1500);
    assert!(stubborn.hints >= 1);
    assert_eq!(
        stubborn.escalations, 0,
        "a non-escapable worker is never escalated"
    );
    assert!(
        h.metric("overrun_cap_violations") >= 1,
        "but it is preempted at the overrun cap"
    );

    let critical = h.contended(WORKER_ESCAPABLE, Behaviour::CriticalForever, 1500);
    assert!(critical.hints >= 1);
    assert_eq!(
        critical.escalations, 0,
        "no escalation inside a critical section"
    );
    assert_eq!(h.metric("escalations_kick"), kicks);
    h.stop();
}

#[test]
fn observer_mode_never_escalates() {
    require_sched_ext();
    let _slot = exclusive();
    let h = Harness::start(
        "observer",
        19202,
        &["--grace-ms", "20", "--max-overrun-ms", "50"],
    );
    let r = h.contended(WORKER_ESCAPABLE, Behaviour::Ignore, 1500);
    assert!(r.hints >= 1);
    assert_eq!(r.escalations, 0);
    assert_eq!(
        h.metric("escalations_kick") + h.metric("escalations_throttle"),
        0
    );
    assert!(h.metric("hints_expired") >= 1, "ignored hints expire");
    assert!(
        h.metric("overrun_cap_violations") >= 1,
        "the safety cap still applies"
    );
    h.stop();
}

#[test]
fn cgroup_throttle_penalises_a_repeat_offender_for_a_bounded_window() {
    require_sched_ext();
    let _slot = exclusive();
    let h = Harness::start(
        "throttle",
        19203,
        &[
            "--enforce",
            "--escalation",
            "cgroup_throttle",
            "--grace-ms",
            "20",
            "--throttle-ms",
            "300",
        ],
    );
    let r = h.contended(WORKER_ESCAPABLE, Behaviour::Ignore, 1500);
    assert!(r.escalations >= 1);
    assert!(h.metric("escalations_throttle") >= 1);
    assert!(
        r.throttled_seen,
        "its SCB never said it was throttled: {r:?}"
    );
    // The penalty window ends by itself.
    assert!(throttles_expire(&h), "throttle never expired");
    h.stop();
}

/// `--enforce --escalation none` changes nothing: a worker that lets its
/// hints expire is neither kicked nor throttled, and no escalation shows
/// in the metrics or in its SCB (so its runtime never turns defensive).
#[test]
fn escalation_none_escalates_nothing() {
    require_sched_ext();
    let _slot = exclusive();
    let h = Harness::start(
        "escalation-none",
        19206,
        &["--enforce", "--escalation", "none", "--grace-ms", "20"],
    );
    let r = h.contended(WORKER_ESCAPABLE, Behaviour::Ignore, 1500);
    let expired = h.metric("hints_expired");
    assert!(expired >= 1, "no hint expired, so nothing was due: {r:?}");
    assert_eq!(r.escalations, 0, "its SCB counts escalations: {r:?}");
    assert!(!r.throttled_seen, "its SCB said throttled: {r:?}");
    assert_eq!(
        (
            h.metric("escalations_kick"),
            h.metric("escalations_throttle")
        ),
        (0, 0)
    );
    h.stop();
}

#[test]
fn hybrid_kicks_first_then_throttles_repeat_offenders_for_a_bounded_window() {
    require_sched_ext();
    let _slot = exclusive();
    let h = Harness::start(
        "hybrid",
        19205,
        &[
            "--enforce",
            "--escalation",
            "hybrid",
            "--grace-ms",
            "20",
            "--throttle-ms",
            "300",
        ],
    );
    let r = h.contended(WORKER_ESCAPABLE, Behaviour::Ignore, 2000);
    let kicks = h.metric("escalations_kick");
    let throttles = h.metric("escalations_throttle");
    println!(
        "hybrid: {} escalations: {kicks} kicks, {throttles} throttles",
        r.escalations
    );
    // One worker, one run well inside the repeat window: its first
    // offences are kicked, every later one throttles its workload.
    assert!(
        r.escalations as u64 > HYBRID_REPEAT,
        "the worker was not escalated repeatedly: {r:?}"
    );
    assert_eq!(
        kicks,
        HYBRID_REPEAT - 1,
        "the first offences are kicked, not throttled"
    );
    // (The worker reads its SCB just before it leaves: one more may follow.)
    assert!(
        throttles >= 1 && throttles >= r.escalations as u64 - kicks,
        "repeat offences are throttled"
    );
    // The penalty window is bounded and undone.
    assert!(throttles_expire(&h), "throttle never expired");
    h.stop();
}

#[test]
fn a_liar_in_a_critical_section_delays_others_by_at_most_the_cap() {
    require_sched_ext();
    let _slot = exclusive();
    const CAP_MS: u64 = 50;
    let h = Harness::start(
        "liar",
        19204,
        &[
            "--max-critical-ms",
            &CAP_MS.to_string(),
            "--grace-ms",
            "20",
            "--max-overrun-ms",
            "400",
        ],
    );
    let cpu = test_cpu();

    // A probe on the liar's CPU wakes every millisecond and records lateness.
    let stop = Arc::new(AtomicBool::new(false));
    let worst = Arc::new(AtomicU64::new(0));
    let probe = {
        let (stop, worst) = (stop.clone(), worst.clone());
        std::thread::spawn(move || {
            pin_to(cpu);
            std::thread::sleep(Duration::from_millis(300)); // let the liar start
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                std::thread::sleep(Duration::from_millis(1));
                let late = t.elapsed().as_micros() as u64;
                worst.fetch_max(late, Ordering::Relaxed);
            }
        })
    };
    let liar = worker::run(
        h.session.clone(),
        WORKER_ESCAPABLE,
        Behaviour::CriticalForever,
        cpu,
        Duration::from_secs(2),
    );
    stop.store(true, Ordering::Relaxed);
    probe.join().unwrap();
    let worst_ms = worst.load(Ordering::Relaxed) as f64 / 1000.0;
    let violations = h.metric("critical_cap_violations");
    println!(
        "liar {liar:?}: worst probe delay {worst_ms:.1} ms (cap {CAP_MS} ms), cap violations {violations}"
    );
    assert!(violations >= 1, "the liar was not stopped at the cap");
    // Without the cap the liar could hold the CPU for its whole grant
    // (slice + --max-overrun-ms 400 ms). With it: cap + one 4 ms tick +
    // wakeup, plus slack for software emulation, whose stalls count as
    // delay too (the liar benchmark reports the precise figures).
    assert!(
        worst_ms <= (CAP_MS + 4 + 120) as f64,
        "probe delayed {worst_ms:.1} ms with a {CAP_MS} ms cap"
    );
    assert_eq!(liar.escalations, 0);
    h.stop();
}
