// SPDX-License-Identifier: GPL-2.0-only
//! The operator surface against a running instance: `--partial` and
//! `--monitor`.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::process::{NOBODY, as_user};
use crate::support::worker::Behaviour;
use crate::support::*;

/// A field of `/proc/thread-self/sched` ("name : value") of the calling thread.
fn own_sched_field(name: &str) -> Option<i64> {
    let text = std::fs::read_to_string("/proc/thread-self/sched").ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == name).then(|| v.trim().parse().ok())?
    })
}

/// (policy, ext.enabled) of a new thread that first switches itself to `policy`.
fn class_of_a_thread(policy: Option<i32>) -> (i64, i64) {
    std::thread::spawn(move || {
        if let Some(p) = policy {
            set_policy(p);
        }
        let text = std::fs::read_to_string("/proc/thread-self/sched").unwrap_or_default();
        (
            own_sched_field("policy").unwrap_or_else(|| panic!("no policy in:\n{text}")),
            own_sched_field("ext.enabled").unwrap_or_else(|| panic!("no ext.enabled in:\n{text}")),
        )
    })
    .join()
    .unwrap()
}

#[test]
fn partial_mode_manages_only_sched_ext_tasks_and_still_hints_their_workers() {
    require_sched_ext();
    let _slot = exclusive();
    let h = Harness::start("partial", 19501, &["--partial"]);

    // Ordinary tasks stay on the fair class; POLICY_SCHED_EXT ones are ours.
    assert_eq!(
        class_of_a_thread(None),
        (libc::SCHED_OTHER as i64, 0),
        "a normal thread was moved to sched_ext in partial mode"
    );
    assert_eq!(
        class_of_a_thread(Some(POLICY_SCHED_EXT)),
        (POLICY_SCHED_EXT as i64, 1),
        "a POLICY_SCHED_EXT thread is scheduled by sched_ext"
    );

    // The loader never changes a thread's policy (by its id it could reach a
    // reused id's new owner): a thread that registers and does not switch
    // itself stays on the fair class, and its SCB tells it to switch.
    let session = h.session.clone();
    let (policy, flags) = std::thread::spawn(move || {
        let (slot, generation) = session.register(0).expect("registration accepted");
        // SAFETY: sched_getscheduler on ourselves.
        let policy = unsafe { libc::sched_getscheduler(0) };
        let flags = session.scb(slot).flags();
        assert_eq!(
            session.unregister(slot, generation),
            morpheus_common::Status::Ok
        );
        (policy, flags)
    })
    .join()
    .unwrap();
    assert_eq!(
        policy,
        libc::SCHED_OTHER,
        "the loader changed a registered thread's policy"
    );
    assert_ne!(
        flags & morpheus_common::SCBK_PARTIAL,
        0,
        "the SCB does not say the scheduler runs partial"
    );

    // A registered worker that switches itself to POLICY_SCHED_EXT, as
    // morpheus-runtime does, is hinted when contended by two other
    // POLICY_SCHED_EXT tasks on its CPU.
    let r = with_hogs_of_policy(Some(POLICY_SCHED_EXT), || {
        crate::support::worker::run(
            h.session.clone(),
            0,
            Behaviour::Checkpoint,
            test_cpu(),
            Duration::from_millis(1500),
        )
    });
    println!("partial, contended by POLICY_SCHED_EXT hogs: {r:?}");
    assert_eq!(
        r.policy, POLICY_SCHED_EXT,
        "the registered worker is not POLICY_SCHED_EXT"
    );
    assert!(
        r.hints >= 1,
        "no hint under POLICY_SCHED_EXT contention: {r:?}"
    );
    assert!(r.acked >= 1);
    assert!(h.metric("hints_sent") >= r.hints);
    h.stop();
}

#[test]
fn monitor_attaches_to_a_running_instance_and_prints_its_figures() {
    require_sched_ext();
    let _slot = exclusive();
    let h = Harness::start("monitor", 19502, &[]);
    let sent_before = h.metric("hints_sent");

    let mut monitor = Command::new(env!("CARGO_BIN_EXE_scx_morpheus"))
        .args(["--monitor", "0.5"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start scx_morpheus --monitor");
    // While it watches, give the instance figures worth reading: hints to a
    // contended worker. Then let it print one more interval.
    std::thread::sleep(Duration::from_secs(1));
    let r = h.contended(0, Behaviour::Checkpoint, 1500);
    assert!(r.hints >= 1, "{r:?}");
    std::thread::sleep(Duration::from_secs(1));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(monitor.id() as i32, libc::SIGINT) };
    let exited = wait_for(Duration::from_secs(30), || {
        monitor.try_wait().ok().flatten().is_some()
    });
    if !exited {
        let _ = monitor.kill();
    }
    let status = monitor.wait().unwrap();
    let (mut out, mut err) = (String::new(), String::new());
    monitor
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    monitor
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    println!("--- monitor stdout ---\n{out}--- stderr ---\n{err}---");
    assert!(exited && status.success(), "monitor exit {status}: {err}");

    // It prints the running instance's figures for each interval: the
    // scheduler ticks, and the hints the worker saw add up to no more than
    // the instance sent in all. Every line fits a 100-column terminal.
    let blocks = figures::blocks(&out);
    let ticks: Vec<u64> = blocks
        .iter()
        .filter_map(|b| figures::figure(b, "ticks"))
        .collect();
    let sent: Vec<u64> = blocks
        .iter()
        .filter_map(|b| figures::figure(b, "hints sent"))
        .collect();
    assert!(
        out.lines().all(|l| l.len() <= 100),
        "a line is too long:\n{out}"
    );
    let sent_total = h.metric("hints_sent") - sent_before;
    println!("monitor: ticks {ticks:?} hints sent {sent:?}; instance sent {sent_total}");
    assert!(ticks.len() >= 2, "fewer than two intervals printed");
    assert!(ticks.iter().any(|&t| t > 0), "no scheduler tick reported");
    let sent_sum: u64 = sent.iter().sum();
    assert!(
        sent_sum >= 1 && sent_sum <= sent_total,
        "monitor saw {sent_sum} hints, the instance sent {sent_total}"
    );
    // The instance it watched is unaffected.
    assert_eq!(sched_ext_state(), "enabled");
    h.stop();
}

/// Registers the calling thread on the default socket and unregisters it.
/// A loader that restarts (CPU hotplug) serves its socket anew: wait for it.
fn register_and_leave() {
    let path = std::path::Path::new(morpheus_common::DEFAULT_SOCKET_PATH);
    assert!(
        wait_for(ATTACH_TIMEOUT, || client::connect(path).is_ok()),
        "the loader does not serve {}",
        path.display()
    );
    let session = client::Session::open(path);
    let (slot, generation) = session.register(0).expect("registration accepted");
    assert_eq!(
        session.unregister(slot, generation),
        morpheus_common::Status::Ok
    );
}

/// The shipped systemd unit (`scx_morpheus/dist/`) works as written: its
/// ExecStart with the environment file's flags, run with only the unit's
/// capabilities (a root process keeps only its bounding set across exec),
/// NoNewPrivileges and LimitNOFILE, attaches, serves registrations,
/// restarts itself when a CPU goes offline and comes back, and runs
/// `--partial` too. (Its file-system and namespace sandboxing needs
/// systemd itself and is not exercised here.)
#[test]
fn the_shipped_unit_runs_the_loader_with_its_bounded_capabilities() {
    require_sched_ext();
    let _slot = exclusive();
    let unit = unit::shipped();
    assert!(
        unit.no_new_privs,
        "the unit must set NoNewPrivileges: {unit:?}"
    );
    let mut loader = Loader::start_as_unit(&unit);
    let caps = effective_caps(loader.pid());
    assert_eq!(
        caps, unit.caps,
        "the loader's effective capabilities {caps:#x} are not the unit's {:#x}",
        unit.caps
    );
    register_and_leave();

    let cpu = test_cpu();
    assert!(cpu >= 1, "needs a CPU that can go offline (the VM has 2)");
    let seq = enable_seq();
    let offline = OfflineCpu::new(cpu);
    assert!(
        reattached(seq, 1),
        "not reattached with the unit's capabilities after CPU {cpu} went offline"
    );
    drop(offline);
    assert!(
        reattached(seq, 2),
        "not reattached with the unit's capabilities after CPU {cpu} came back"
    );
    assert!(
        loader.is_running(),
        "the loader exited instead of restarting"
    );
    register_and_leave();
    let exit = loader.stop();
    assert!(exit.status.success(), "loader exit: {}", exit.stderr);

    let mut partial = unit.clone();
    partial.exec.push("--partial".into());
    let loader = Loader::start_as_unit(&partial);
    register_and_leave();
    let exit = loader.stop();
    assert!(exit.status.success(), "loader exit: {}", exit.stderr);

    // Another user's worker: the identity checks on a process the loader
    // does not own need no capability beyond the unit's.
    let mut open = unit.clone();
    open.exec.extend(["--socket-mode".into(), "666".into()]);
    let loader = Loader::start_as_unit(&open);
    let code = as_user(NOBODY, || {
        register_and_leave();
        0
    });
    let exit = loader.stop();
    assert_eq!(code, 0, "user nobody could not register: {}", exit.stderr);
    assert!(exit.status.success(), "loader exit: {}", exit.stderr);
}

/// The `--debug` event lines of `out` (`event KIND pid P tid T slot S seq Q
/// value V`) of slot `slot`: (kind, value) each.
fn debug_events(out: &str, slot: u32) -> Vec<(String, u64)> {
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() != 12 || f[0] != "event" || f[6] != "slot" || f[7] != slot.to_string() {
                return None;
            }
            Some((f[1].to_string(), f[11].parse().ok()?))
        })
        .collect()
}

#[test]
fn debug_prints_every_event_of_a_worker() {
    require_sched_ext();
    let _slot = exclusive();
    let h = Harness::start("debug-events", 19503, &["--debug"]);
    let r = h.contended(0, Behaviour::Checkpoint, 1000);
    assert!(r.hints >= 1, "{r:?}");
    // The loader drains BPF's events every 100 ms: let it print the last.
    std::thread::sleep(Duration::from_millis(500));
    let (sent, answered) = (h.metric("hints_sent"), h.metric("hints_answered"));
    assert_eq!(h.metric("ring_drops"), 0, "events were lost");
    let exit = h.stop();

    let events = debug_events(&exit.stdout, r.slot);
    let count = |kind: &str| events.iter().filter(|(k, _)| k == kind).count() as u64;
    println!(
        "--debug: {} lines for slot {}: hint {} answered {}; instance sent {sent} answered {answered}",
        events.len(),
        r.slot,
        count("hint"),
        count("answered")
    );
    // One line per hint and per answer (the worker was the only one), and
    // its start as a state change (it unregisters before its thread ends).
    assert_eq!(count("hint"), sent);
    assert_eq!(count("answered"), answered);
    let states: Vec<u64> = events
        .iter()
        .filter(|(k, _)| k == "worker_state")
        .map(|&(_, v)| v)
        .collect();
    assert_eq!(
        states,
        [morpheus_common::WorkerState::Running as u64],
        "worker_state lines"
    );
}
