// SPDX-License-Identifier: GPL-2.0-only
//! Soak: CPU hogs on every CPU, a Tokio service with checkpointing tasks,
//! hundreds of short-lived registering threads, and the loader restarted a
//! few times. Afterwards: no watchdog ejection, no leaked slot, and the hint
//! accounting adds up. `MORPHEUS_SOAK_SECS` sets the length (CI: 40 s; the
//! full run in BENCHMARKS.md/SECURITY.md: 600 s).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use morpheus_runtime::{Builder, checkpoint};

use crate::support::client::{Session, metrics};
use crate::support::*;

const PHASES: u64 = 4; // the loader restarts PHASES - 1 times

#[test]
fn soak_with_churn_restarts_and_full_load() {
    require_sched_ext();
    let _slot = exclusive();
    let secs: u64 = std::env::var("MORPHEUS_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let addr = "127.0.0.1:19601";
    let cpus = std::thread::available_parallelism().unwrap().get();

    // Background load on every CPU for the whole run.
    let stop = Arc::new(AtomicBool::new(false));
    let hog_threads: Vec<_> = (0..cpus).flat_map(|c| hogs(1, c, stop.clone())).collect();

    // A Tokio service: checkpointing CPU tasks plus a 1 ms probe.
    let rt = Builder::new_multi_thread()
        .worker_threads(cpus)
        .enable_all()
        .build()
        .unwrap();
    let worst_probe_us = Arc::new(AtomicU64::new(0));
    let service_steps = Arc::new(AtomicU64::new(0));
    for _ in 0..cpus {
        let (stop, steps) = (stop.clone(), service_steps.clone());
        rt.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                spin_us(50);
                checkpoint!();
                steps.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    {
        let (stop, worst) = (stop.clone(), worst_probe_us.clone());
        rt.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                tokio::time::sleep(Duration::from_millis(1)).await;
                worst.fetch_max(t.elapsed().as_micros() as u64, Ordering::Relaxed);
            }
        });
    }

    /// Totals over all loader instances, for the summary line.
    #[derive(Default)]
    struct Totals {
        sent: u64,
        answered: u64,
        expired: u64,
        dropped: u64,
        registrations: u64,
        reaped: u64,
        escalations: u64,
        cap_violations: u64,
        leaked_slots: u64,
        leaked_fds: i64,
        ejections: u64,
    }
    let mut t = Totals::default();
    // Workers of the Tokio service that hold a slot.
    let service_registered = || {
        morpheus_runtime::metrics::snapshot()
            .workers
            .iter()
            .filter(|w| w.slot.is_some())
            .count() as u64
    };
    let held = |m: &std::collections::HashMap<String, u64>| m["workers"];

    let mut churned = 0u64;
    let started = Instant::now();
    for phase in 0..PHASES {
        let mut args = vec!["--metrics-addr", addr];
        if phase % 2 == 1 {
            args.extend(["--enforce", "--grace-ms", "50"]);
        }
        let loader = Loader::start(&args);
        let session = Arc::new(Session::open(morpheus_common::DEFAULT_SOCKET_PATH.as_ref()));
        // The loader's descriptors once the service is back: the same
        // count must be reached again when the churn is over.
        wait_for(Duration::from_secs(30), || {
            service_registered() == cpus as u64 && held(&metrics(addr)) == cpus as u64
        });
        let fds_start = fd_count(loader.pid());
        let service_start = service_registered();
        let phase_end = Instant::now() + Duration::from_secs(secs / PHASES);
        while Instant::now() < phase_end {
            // A wave of short-lived workers: half unregister, half just exit.
            let wave: Vec<_> = (0..16)
                .map(|i| {
                    let s = session.clone();
                    std::thread::spawn(move || {
                        if let Ok((slot, generation)) = s.register(0) {
                            spin_us(1000 + 200 * i);
                            if i % 2 == 0 {
                                s.unregister(slot, generation);
                            }
                        }
                    })
                })
                .collect();
            wave.into_iter().for_each(|t| drop(t.join()));
            churned += 16;
        }
        assert_eq!(
            sched_ext_state(),
            "enabled",
            "phase {phase}: the scheduler was ejected"
        );
        // Every exited worker is reclaimed; only the service's workers stay.
        let settled = wait_for(Duration::from_secs(10), || {
            held(&metrics(addr)) <= service_registered()
        });
        let leaked_slots = held(&metrics(addr)).saturating_sub(service_registered());
        // Every registered worker holds one pidfd in the loader: beyond
        // the start's count, only the service's workers registered since
        // (or fewer, for those it lost) may hold one.
        let expected_fds = || fds_start as i64 + service_registered() as i64 - service_start as i64;
        wait_for(Duration::from_secs(10), || {
            fd_count(loader.pid()) as i64 <= expected_fds()
        });
        let leaked_fds = fd_count(loader.pid()) as i64 - expected_fds();
        assert!(
            settled && leaked_slots == 0 && leaked_fds <= 0,
            "phase {phase}: leaked {leaked_slots} slots, {leaked_fds} loader fds"
        );
        // One snapshot; counters are read one after another, so a hint sent
        // and answered in between can make `resolved` lead by a little.
        let m = metrics(addr);
        let (sent, answered, expired, dropped) = (
            m["hints_sent"],
            m["hints_answered"],
            m["hints_expired"],
            m["hints_dropped"],
        );
        let resolved = answered + expired + dropped;
        let live = held(&m);
        println!(
            "phase {phase}: sent {sent} answered {answered} expired {expired} dropped {dropped} escalations {} reaped {} registrations {} leaked slots {leaked_slots} fds {leaked_fds}",
            m["escalations_kick"], m["workers_reaped"], m["registrations"]
        );
        assert!(
            resolved <= sent + cpus as u64 && sent <= resolved + live + cpus as u64,
            "phase {phase}: hint accounting: sent {sent}, resolved {resolved}, live workers {live}"
        );
        t.sent += sent;
        t.answered += answered;
        t.expired += expired;
        t.dropped += dropped;
        t.registrations += m["registrations"];
        t.reaped += m["workers_reaped"];
        t.escalations += m["escalations_kick"] + m["escalations_throttle"];
        t.cap_violations += m["critical_cap_violations"] + m["overrun_cap_violations"];
        t.leaked_slots += leaked_slots;
        t.leaked_fds += leaked_fds.max(0);
        drop(session);
        let exit = loader.stop();
        assert!(exit.status.success(), "phase {phase}: {}", exit.stderr);
        if exit.stderr.contains("stall") {
            t.ejections += 1;
        }
        assert_eq!(
            t.ejections, 0,
            "phase {phase}: watchdog ejection:\n{}",
            exit.stderr
        );
    }
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let service_steps = service_steps.load(Ordering::Relaxed);
    drop(rt);
    let hog_work: Vec<u64> = hog_threads.into_iter().map(|h| h.join().unwrap()).collect();
    let (hog_min, hog_max) = (
        *hog_work.iter().min().unwrap(),
        *hog_work.iter().max().unwrap(),
    );
    assert!(hog_min > 0, "a hog starved: {hog_work:?}");
    println!(
        "soak: {elapsed:.0}s on kernel {}, {cpus} CPUs, {PHASES} loader instances ({} restarts)",
        kernel_release(),
        PHASES - 1
    );
    println!(
        "soak load: {cpus} hogs (least/most work {:.2}), {cpus} checkpointing service tasks ({service_steps} steps), worst 1 ms probe delay {} ms",
        hog_min as f64 / hog_max as f64,
        worst_probe_us.load(Ordering::Relaxed) / 1000
    );
    println!(
        "soak churn: {churned} short-lived workers, {} registrations, {} reaped",
        t.registrations, t.reaped
    );
    println!(
        "soak hints: sent {} answered {} expired {} dropped {} (unresolved {}), escalations {}, cap violations {}",
        t.sent,
        t.answered,
        t.expired,
        t.dropped,
        t.sent as i64 - (t.answered + t.expired + t.dropped) as i64,
        t.escalations,
        t.cap_violations
    );
    println!(
        "soak faults: watchdog ejections {}, leaked slots {}, leaked loader fds {}",
        t.ejections, t.leaked_slots, t.leaked_fds
    );
}
