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

use crate::support::client::{Session, metric, metrics};
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
    for _ in 0..cpus {
        let stop = stop.clone();
        rt.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                spin_us(50);
                checkpoint!();
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

    let mut churned = 0u64;
    let mut hints = 0u64;
    let started = Instant::now();
    for phase in 0..PHASES {
        let mut args = vec!["--metrics-addr", addr];
        if phase % 2 == 1 {
            args.extend(["--enforce", "--grace-ms", "50"]);
        }
        let loader = Loader::start(&args);
        let session = Arc::new(Session::open(morpheus_common::DEFAULT_SOCKET_PATH.as_ref()));
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
        // Every exited worker is reclaimed; only the service's workers stay.
        let live = |addr: &str| {
            metric(addr, "workers_registered")
                + metric(addr, "workers_running")
                + metric(addr, "workers_dead")
        };
        assert!(
            wait_for(Duration::from_secs(10), || live(addr) <= cpus as u64),
            "phase {phase}: slots leaked: {} live workers, service has {cpus}",
            live(addr)
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
        let live = m["workers_registered"] + m["workers_running"] + m["workers_dead"];
        println!(
            "phase {phase}: sent {sent} answered {answered} expired {expired} dropped {dropped} escalations {} reaped {}",
            m["escalations_kick"], m["workers_reaped"]
        );
        assert!(
            resolved <= sent + cpus as u64 && sent <= resolved + live + cpus as u64,
            "phase {phase}: hint accounting: sent {sent}, resolved {resolved}, live workers {live}"
        );
        hints += sent;
        drop(session);
        let exit = loader.stop();
        assert!(exit.status.success(), "phase {phase}: {}", exit.stderr);
        assert!(
            !exit.stderr.contains("stall"),
            "phase {phase}: watchdog ejection:\n{}",
            exit.stderr
        );
    }
    stop.store(true, Ordering::Relaxed);
    drop(rt);
    hog_threads.into_iter().for_each(|h| drop(h.join()));
    println!(
        "soak: {:.0}s, {PHASES} loader instances, {churned} short-lived workers, {hints} hints, worst probe delay {} ms, zero ejections",
        started.elapsed().as_secs_f64(),
        worst_probe_us.load(Ordering::Relaxed) / 1000
    );
}
