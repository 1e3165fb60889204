// SPDX-License-Identifier: GPL-2.0-only
//! Escalation is opt-in recovery: only --enforce, only escapable workers,
//! never inside a critical section (until its cap); caps bound everyone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use morpheus_common::WORKER_ESCAPABLE;

use crate::support::client::{Session, metric};
use crate::support::worker::{self, Behaviour, Report};
use crate::support::*;

/// Runs one worker against two hogs on the test CPU.
fn contended(session: &Arc<Session>, flags: u32, behaviour: Behaviour, ms: u64) -> Report {
    let cpu = test_cpu();
    let stop = Arc::new(AtomicBool::new(false));
    let hogs = hogs(2, cpu, stop.clone());
    let r = worker::run(
        session.clone(),
        flags,
        behaviour,
        cpu,
        Duration::from_millis(ms),
    );
    stop.store(true, Ordering::Relaxed);
    hogs.into_iter().for_each(|h| drop(h.join()));
    println!("{behaviour:?} flags {flags}: {r:?}");
    r
}

#[test]
fn enforce_escalates_only_escapable_workers_outside_critical_sections() {
    require_sched_ext();
    let _slot = exclusive();
    let (sock, addr) = endpoints("enforce", 19201);
    let loader = Loader::start(&[
        "--socket",
        &sock,
        "--metrics-addr",
        &addr,
        "--enforce",
        "--grace-ms",
        "20",
        "--max-overrun-ms",
        "100",
        "--max-critical-ms",
        "2000",
    ]);
    let session = Arc::new(Session::open(sock.as_ref()));
    assert_ne!(
        session.flags & morpheus_common::SCBK_ENFORCING,
        0,
        "HELLO announces enforcement"
    );

    let escapable = contended(&session, WORKER_ESCAPABLE, Behaviour::Ignore, 1500);
    assert!(escapable.hints >= 1);
    assert!(
        escapable.escalations >= 1,
        "an escapable worker ignoring hints past grace is escalated"
    );
    let kicks = metric(&addr, "escalations_kick");
    assert!(kicks >= escapable.escalations as u64);

    let stubborn = contended(&session, 0, Behaviour::Ignore, 1500);
    assert!(stubborn.hints >= 1);
    assert_eq!(
        stubborn.escalations, 0,
        "a non-escapable worker is never escalated"
    );
    assert!(
        metric(&addr, "overrun_cap_violations") >= 1,
        "but it is preempted at the overrun cap"
    );

    let critical = contended(&session, WORKER_ESCAPABLE, Behaviour::CriticalForever, 1500);
    assert!(critical.hints >= 1);
    assert_eq!(
        critical.escalations, 0,
        "no escalation inside a critical section"
    );
    assert_eq!(metric(&addr, "escalations_kick"), kicks);

    drop(session);
    assert!(loader.stop().status.success());
}

#[test]
fn observer_mode_never_escalates() {
    require_sched_ext();
    let _slot = exclusive();
    let (sock, addr) = endpoints("observer", 19202);
    let loader = Loader::start(&[
        "--socket",
        &sock,
        "--metrics-addr",
        &addr,
        "--grace-ms",
        "20",
        "--max-overrun-ms",
        "50",
    ]);
    let session = Arc::new(Session::open(sock.as_ref()));
    let r = contended(&session, WORKER_ESCAPABLE, Behaviour::Ignore, 1500);
    assert!(r.hints >= 1);
    assert_eq!(r.escalations, 0);
    assert_eq!(
        metric(&addr, "escalations_kick") + metric(&addr, "escalations_throttle"),
        0
    );
    assert!(metric(&addr, "hints_expired") >= 1, "ignored hints expire");
    assert!(
        metric(&addr, "overrun_cap_violations") >= 1,
        "the safety cap still applies"
    );
    drop(session);
    assert!(loader.stop().status.success());
}

#[test]
fn cgroup_throttle_penalises_a_repeat_offender_for_a_bounded_window() {
    require_sched_ext();
    let _slot = exclusive();
    let (sock, addr) = endpoints("throttle", 19203);
    let loader = Loader::start(&[
        "--socket",
        &sock,
        "--metrics-addr",
        &addr,
        "--enforce",
        "--escalation",
        "cgroup_throttle",
        "--grace-ms",
        "20",
        "--throttle-ms",
        "300",
    ]);
    let session = Arc::new(Session::open(sock.as_ref()));
    let r = contended(&session, WORKER_ESCAPABLE, Behaviour::Ignore, 1500);
    assert!(r.escalations >= 1);
    assert!(metric(&addr, "escalations_throttle") >= 1);
    // The penalty window ends by itself.
    assert!(
        wait_for(Duration::from_secs(5), || {
            // Expired entries are cleared when a task of the cgroup next stops.
            std::thread::sleep(Duration::from_millis(50));
            metric(&addr, "throttles_active") == 0
        }),
        "throttle never expired"
    );
    drop(session);
    assert!(loader.stop().status.success());
}

#[test]
fn a_liar_in_a_critical_section_delays_others_by_at_most_the_cap() {
    require_sched_ext();
    let _slot = exclusive();
    const CAP_MS: u64 = 50;
    let (sock, addr) = endpoints("liar", 19204);
    let loader = Loader::start(&[
        "--socket",
        &sock,
        "--metrics-addr",
        &addr,
        "--max-critical-ms",
        &CAP_MS.to_string(),
        "--grace-ms",
        "20",
        "--max-overrun-ms",
        "400",
    ]);
    let session = Arc::new(Session::open(sock.as_ref()));
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
        session.clone(),
        WORKER_ESCAPABLE,
        Behaviour::CriticalForever,
        cpu,
        Duration::from_secs(2),
    );
    stop.store(true, Ordering::Relaxed);
    probe.join().unwrap();
    let worst_ms = worst.load(Ordering::Relaxed) as f64 / 1000.0;
    let violations = metric(&addr, "critical_cap_violations");
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
    drop(session);
    assert!(loader.stop().status.success());
}
