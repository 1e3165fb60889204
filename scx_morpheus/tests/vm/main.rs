// SPDX-License-Identifier: GPL-2.0-only
//! Tests against a real sched_ext kernel. Run them with
//! `./morpheus-dev vm -- cargo test -p scx_morpheus --test vm`
//! (or natively as root on a kernel with sched_ext).

mod availability;
mod catch_up;
mod charging;
mod escalation;
mod faults;
mod hints;
mod hostile;
mod operator;
mod preemption;
mod registration;
mod runtime;
mod soak;
mod support;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use support::client::{Session, connect};
use support::*;

/// Runs CPU-bound threads (more than CPUs, so tasks wait) for `secs`.
fn cpu_workload(threads: usize, secs: f64) -> Vec<u64> {
    let deadline = std::time::Instant::now() + Duration::from_secs_f64(secs);
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                let mut n = 0u64;
                while std::time::Instant::now() < deadline {
                    for _ in 0..10_000 {
                        n = std::hint::black_box(n.wrapping_add(1));
                    }
                }
                n
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// Parses "label value" from the loader's final totals.
fn counter(stderr: &str, label: &str) -> u64 {
    let blocks = support::figures::blocks(stderr);
    let totals = blocks
        .last()
        .unwrap_or_else(|| panic!("no totals in the loader output:\n{stderr}"));
    support::figures::figure(totals, label)
        .unwrap_or_else(|| panic!("no {label} in the totals: {totals}"))
}

#[test]
fn attaches_schedules_a_cpu_workload_and_detaches_on_sigint() {
    require_sched_ext();
    let _slot = exclusive();
    println!(
        "kernel {}: state before attach: {}",
        kernel_release(),
        sched_ext_state()
    );

    let loader = Loader::start(&[]);
    let ops = attached_ops().expect("root/ops exists while attached");
    println!(
        "kernel {}: attached, state {}, ops {ops}",
        kernel_release(),
        sched_ext_state()
    );
    assert!(ops.starts_with("morpheus"), "unexpected ops name {ops}");

    // Twice as many CPU hogs as CPUs: every one must make progress.
    let cpus = std::thread::available_parallelism().unwrap().get();
    let progress = cpu_workload(2 * cpus, 2.0);
    assert!(
        progress.iter().all(|&n| n > 0),
        "a thread starved: {progress:?}"
    );
    assert_eq!(
        sched_ext_state(),
        "enabled",
        "the scheduler was ejected during the workload"
    );

    let exit = loader.stop();
    assert!(
        exit.status.success(),
        "loader failed: {}\n{}",
        exit.status,
        exit.stderr
    );
    assert!(wait_for(Duration::from_secs(10), || sched_ext_state() == "disabled"));
    assert!(attached_ops().is_none());
    println!(
        "kernel {}: detached, state {}",
        kernel_release(),
        sched_ext_state()
    );

    // The scheduler really scheduled the workload.
    assert!(counter(&exit.stderr, "ticks") > 0);
    // "shared E/D": tasks queued on the shared queue, and taken from it.
    assert!(counter(&exit.stderr, "shared") > 0);
    let totals = support::figures::blocks(&exit.stderr).pop().unwrap();
    let dispatched = totals
        .split(" shared ")
        .nth(1)
        .unwrap()
        .split([' ', '/'])
        .nth(1);
    assert!(dispatched.is_some_and(|d| d != "0"), "{totals}");
}

#[test]
fn sigterm_detaches_too() {
    require_sched_ext();
    let _slot = exclusive();
    let loader = Loader::start(&[
        "--slice-ms",
        "2",
        "--slice-min-ms",
        "2",
        "--slice-max-ms",
        "2",
    ]);
    loader.signal(libc::SIGTERM);
    let exit = loader.wait(Duration::from_secs(60));
    assert!(
        exit.status.success(),
        "loader failed: {}\n{}",
        exit.status,
        exit.stderr
    );
    assert!(wait_for(Duration::from_secs(10), || sched_ext_state() == "disabled"));
    assert_eq!(counter(&exit.stderr, "slice"), 2000);
}

#[test]
fn injected_bpf_error_ejects_the_scheduler_with_its_reason() {
    require_sched_ext();
    let _slot = exclusive();
    let loader = Loader::start(&["--inject-error-after-ms", "300"]);
    let exit = loader.wait(Duration::from_secs(60));
    println!(
        "kernel {}: after injected error, state {}",
        kernel_release(),
        sched_ext_state()
    );

    assert!(
        !exit.status.success(),
        "an ejected scheduler must exit non-zero"
    );
    assert!(
        exit.stderr.contains("injected error 1"),
        "the loader must print the kernel's exit reason:\n{}",
        exit.stderr
    );
    assert!(wait_for(Duration::from_secs(10), || sched_ext_state() == "disabled"));
    // The machine keeps scheduling on the default class.
    assert!(Command::new("true").status().unwrap().success());
}

#[test]
fn invalid_flags_are_rejected_before_anything_is_loaded() {
    require_sched_ext();
    let _slot = exclusive();
    for args in [
        &["--slice-ms", "0"][..],
        &["--slice-ms", "abc"],
        &["--stats", "0"],
        &["--stats=-1"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_scx_morpheus"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?} must be a usage error");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("invalid value"), "{args:?}: {stderr}");
        assert_eq!(
            sched_ext_state(),
            "disabled",
            "{args:?} attached a scheduler"
        );
    }
}

/// Whether the loader's socket has closed our connection (scheduler gone).
fn connection_closed(session: &Session) -> bool {
    use std::os::fd::AsFd;
    matches!(
        morpheus_common::seqpacket::recv(session.socket().as_fd()),
        Ok(morpheus_common::seqpacket::Received::Closed) | Err(_)
    )
}

/// Every attach and detach leaves a clean slate, with a worker registered
/// and hogs running: the worker's connection closes, the socket goes, the
/// kernel falls back. Ten cycles by default (MORPHEUS_VM_CYCLES): each
/// costs about 15 s under single-threaded emulation, and the race hunt is
/// `./morpheus-dev attach-stress` (200 cycles under stress-ng).
#[test]
fn attach_detach_cycles_with_workers_running() {
    require_sched_ext();
    let _slot = exclusive();
    let cycles: usize = std::env::var("MORPHEUS_VM_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let (sock, _) = endpoints("cycles", 0);
    let stop = Arc::new(AtomicBool::new(false));
    let hogs = hogs(2, test_cpu(), stop.clone());
    let started = std::time::Instant::now();
    for i in 0..cycles {
        let loader = Loader::start(&["--socket", &sock]);
        // A worker (re-)registers with every new instance.
        let session = Session::open(sock.as_ref());
        let (slot, _) = session.register(0).expect("registration");
        assert_eq!(session.scb(slot).magic(), morpheus_common::ABI_MAGIC);
        let exit = loader.stop();
        assert!(exit.status.success(), "cycle {i}: {}", exit.stderr);
        assert!(
            wait_for(Duration::from_secs(10), || sched_ext_state() == "disabled"),
            "cycle {i}"
        );
        assert!(
            connection_closed(&session),
            "cycle {i}: the worker's connection must close"
        );
        assert!(
            !std::path::Path::new(&sock).exists(),
            "cycle {i}: socket left behind"
        );
    }
    stop.store(true, Ordering::Relaxed);
    hogs.into_iter().for_each(|h| drop(h.join()));
    println!(
        "kernel {}: {cycles} attach/detach cycles in {:.1}s",
        kernel_release(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn sigkill_of_the_loader_returns_to_the_default_scheduler_and_a_restart_works() {
    require_sched_ext();
    let _slot = exclusive();
    let (sock, _) = endpoints("sigkill", 0);
    let loader = Loader::start(&["--socket", &sock]);
    let session = Session::open(sock.as_ref());
    session.register(0).expect("registration");
    loader.signal(libc::SIGKILL);
    let killed_at = std::time::Instant::now();
    let exit = loader.wait(Duration::from_secs(30));
    assert!(!exit.status.success());
    assert!(wait_for(Duration::from_secs(10), || sched_ext_state() == "disabled"));
    println!(
        "kernel {}: back on the default scheduler {:?} after SIGKILL",
        kernel_release(),
        killed_at.elapsed()
    );
    assert!(connection_closed(&session));
    assert!(
        std::path::Path::new(&sock).exists(),
        "a killed loader cannot remove its socket"
    );
    assert!(
        connect(sock.as_ref()).is_err(),
        "nobody serves the stale socket"
    );

    // The next loader removes the stale socket and serves again.
    let loader = Loader::start(&["--socket", &sock]);
    let session = Session::open(sock.as_ref());
    session.register(0).expect("re-registration after restart");
    assert!(loader.stop().status.success());
}

#[test]
fn sysrq_s_ejects_the_scheduler_and_the_loader_reports_it() {
    require_sched_ext();
    let _slot = exclusive();
    let (sock, _) = endpoints("sysrq", 0);
    let loader = Loader::start(&["--socket", &sock]);
    std::fs::write("/proc/sysrq-trigger", "S").expect("write /proc/sysrq-trigger");
    let exit = loader.wait(Duration::from_secs(30));
    assert!(wait_for(Duration::from_secs(10), || sched_ext_state() == "disabled"));
    assert!(
        exit.stderr.contains("sysrq"),
        "the exit reason names sysrq:\n{}",
        exit.stderr
    );
    assert!(!std::path::Path::new(&sock).exists(), "socket left behind");
}
