// SPDX-License-Identifier: GPL-2.0-only
//! Registration: unprivileged, verified by the kernel's word, isolated,
//! with slots reclaimed and explicit limits.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use morpheus_common::protocol::Message;
use morpheus_common::{MAX_WORKERS_PER_PROCESS, Status, WorkerState};

use crate::support::client::{Session, metric, request};
use crate::support::process::{NOBODY, as_user, become_user};
use crate::support::*;

#[test]
fn an_unprivileged_worker_registers_and_another_user_cannot_touch_its_scb() {
    require_sched_ext();
    let _slot = exclusive();
    let (sock, _) = endpoints("isolation", 19301);
    let loader = Loader::start(&["--socket", &sock, "--socket-mode", "666"]);

    // The victim: uid 65534 (nobody), registers a thread, then waits.
    let mut pipe = [0; 2];
    // SAFETY: pipe(2).
    assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
    // SAFETY: fresh fds.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(pipe[0]), OwnedFd::from_raw_fd(pipe[1])) };
    let sock_path = sock.clone();
    // SAFETY: fork; the child registers, reports, and sleeps until killed.
    let victim = unsafe { libc::fork() };
    if victim == 0 {
        become_user(NOBODY);
        let session = Session::open(sock_path.as_ref());
        let (slot, _) = session
            .register(0)
            .expect("an unprivileged worker registers");
        session.scb(slot).ack(0xfeed);
        // SAFETY: gettid; write our tid to the parent.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) } as u32;
        let msg = [tid.to_ne_bytes(), slot.to_ne_bytes()].concat();
        // SAFETY: writing to the pipe.
        unsafe { libc::write(wr.as_raw_fd(), msg.as_ptr().cast(), msg.len()) };
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    drop(wr);
    let mut buf = [0u8; 8];
    // SAFETY: reading from the pipe.
    let n = unsafe { libc::read(rd.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
    assert_eq!(n, 8, "the unprivileged victim did not register");
    let victim_tid = u32::from_ne_bytes(buf[..4].try_into().unwrap());

    // The attacker: another user (uid 65533).
    let code = as_user(65533, || {
        // 1. No BPF map is reachable by id without privilege.
        for id in 1..4096u32 {
            // SAFETY: bpf(BPF_MAP_GET_FD_BY_ID) with a zeroed attr holding only the id.
            let fd = unsafe {
                let mut attr = [0u8; 128];
                attr[..4].copy_from_slice(&id.to_ne_bytes());
                libc::syscall(
                    libc::SYS_bpf,
                    14, /* BPF_MAP_GET_FD_BY_ID */
                    attr.as_ptr(),
                    128,
                )
            };
            if fd >= 0 {
                return 1;
            }
        }
        // 2. The victim's descriptors are not reachable through /proc.
        if let Ok(dir) = std::fs::read_dir(format!("/proc/{victim}/fd")) {
            for e in dir.flatten() {
                if std::fs::File::open(e.path()).is_ok() {
                    return 2;
                }
            }
        }
        // 3. Registering the victim's thread from our own session is refused.
        let session = Session::open(sock_path.as_ref());
        // Another user's thread: the kernel lets anyone open its pidfd.
        let Ok(pidfd) = morpheus_common::pidfd::open_thread(victim_tid as i32) else {
            return 3;
        };
        let (reply, _) = request(
            session.socket(),
            &Message::Register {
                flags: 0,
                runtime_kind: morpheus_common::RuntimeKind::Generic,
            },
            Some(&pidfd),
        );
        if reply
            != (Message::RegisterReply {
                status: Status::NotPermitted,
                slot: 0,
                generation: 0,
            })
        {
            return 4;
        }
        // 4. Our own SCB array is a different one: the victim's ack is not there.
        if (0..session.max_workers).any(|s| session.scb(s).magic() != 0) {
            return 5;
        }
        0
    });
    // SAFETY: ending the victim.
    unsafe {
        libc::kill(victim, libc::SIGKILL);
        libc::waitpid(victim, std::ptr::null_mut(), 0);
    }
    assert_eq!(code, 0, "isolation broken (attacker step {code})");
    assert!(loader.stop().status.success());
}

#[test]
fn exited_threads_are_reclaimed_and_slots_never_reuse_a_generation() {
    require_sched_ext();
    let _slot = exclusive();
    let h = Harness::start("reclaim", 19302, &[]);
    let session = h.session.clone();

    let s = session.clone();
    let (slot, generation) = std::thread::spawn(move || s.register(0).unwrap())
        .join()
        .unwrap();
    // The thread exited without unregistering: exit_task marks it dead, the
    // loader reclaims the slot.
    assert!(
        wait_for(Duration::from_secs(10), || h.metric("workers_reaped") >= 1),
        "the exited worker was not reclaimed"
    );
    assert_eq!(session.scb(slot).state(), WorkerState::Dead as u16);
    let s = session.clone();
    let (slot2, generation2) = std::thread::spawn(move || s.register(0).unwrap())
        .join()
        .unwrap();
    assert_eq!(slot2, slot, "the slot is reused");
    assert!(generation2 > generation, "with a new generation");
    assert_eq!(
        session.scb(slot2).generation(),
        generation2,
        "the SCB carries it"
    );
    assert_eq!(h.metric("registrations"), 2);
    drop(session);
    h.stop();
}

#[test]
fn a_full_worker_table_is_a_clear_error() {
    require_sched_ext();
    let _slot = exclusive();
    let h = Harness::start("full", 19303, &[]);
    let barrier = Arc::new(std::sync::Barrier::new(
        MAX_WORKERS_PER_PROCESS as usize + 2,
    ));
    let mut threads = Vec::new();
    for _ in 0..=MAX_WORKERS_PER_PROCESS {
        let (s, b) = (h.session.clone(), barrier.clone());
        threads.push(std::thread::spawn(move || {
            let r = s.register(0);
            b.wait(); // everyone stays alive until all have tried
            b.wait();
            r
        }));
    }
    barrier.wait();
    let refused = h.metric("registrations_refused");
    barrier.wait();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let full = results
        .iter()
        .filter(|r| **r == Err(Status::TableFull))
        .count();
    assert_eq!((ok, full), (MAX_WORKERS_PER_PROCESS as usize, 1));
    assert_eq!(refused, 1);
    h.stop();
}

#[test]
fn garbage_in_a_workers_own_scb_harms_nobody() {
    require_sched_ext();
    let _slot = exclusive();
    let h = Harness::start("garbage", 19304, &["--enforce", "--grace-ms", "20"]);
    let cpu = test_cpu();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hogs = hogs(2, cpu, stop.clone());
    let s = h.session.clone();
    std::thread::spawn(move || {
        pin_to(cpu);
        let (slot, _) = s.register(morpheus_common::WORKER_ESCAPABLE).unwrap();
        for byte in [0xff, 0x00, 0x7f, 0xff] {
            s.scb(slot).scribble_user_line(byte);
            spin_us(300_000);
        }
    })
    .join()
    .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let progress: Vec<u64> = hogs.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(
        progress.iter().all(|&p| p > 0),
        "a hog starved: {progress:?}"
    );
    assert_eq!(sched_ext_state(), "enabled", "the scheduler survived");
    // Its garbage cannot keep the CPU: it either reads as answers to its
    // hints (ack_seq past every hint: it gives way at once) or is cut off
    // at a cap.
    assert!(
        h.metric("hints_answered")
            + h.metric("critical_cap_violations")
            + h.metric("overrun_cap_violations")
            >= 1
    );
    h.stop();
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe(2) into a two-int array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: fresh fds we own.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn put(fd: &OwnedFd, v: u32) {
    // SAFETY: writing 4 bytes to a pipe.
    assert_eq!(
        unsafe { libc::write(fd.as_raw_fd(), v.to_ne_bytes().as_ptr().cast(), 4) },
        4
    );
}

/// Reads 4 bytes, or None at end of file or after 60 s without any (a
/// party that died never hangs the test).
fn get(fd: &OwnedFd) -> Option<u32> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    if unsafe { libc::poll(&mut pfd, 1, 60_000) } != 1 {
        return None;
    }
    let mut b = [0u8; 4];
    // SAFETY: reading 4 bytes from a pipe.
    (unsafe { libc::read(fd.as_raw_fd(), b.as_mut_ptr().cast(), 4) } == 4)
        .then(|| u32::from_ne_bytes(b))
}

/// Forks a child that gets `pid`, by setting the kernel's last pid just
/// below it (root); retries while other tasks take it first. The child runs
/// `f` and exits with its code; returns the child's pid.
fn fork_with_pid(pid: i32, f: impl Fn() -> i32) -> i32 {
    for _ in 0..200 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string())
            .expect("write ns_last_pid (needs root)");
        // SAFETY: fork; the child checks its pid and runs `f` only if it is `pid`.
        let child = unsafe { libc::fork() };
        assert!(child >= 0);
        if child == 0 {
            // SAFETY: leaving the forked child.
            unsafe { libc::_exit(if libc::getpid() == pid { f() } else { 77 }) }
        }
        if child == pid {
            return child;
        }
        // SAFETY: reaping the child that got another pid.
        unsafe { libc::waitpid(child, std::ptr::null_mut(), 0) };
    }
    panic!("could not get pid {pid} back after 200 forks");
}

/// A connection outlives the process that opened it (here its child holds
/// it), and a new process gets that process's pid and registers with the
/// loader: the old connections must not register the new process's threads
/// (as escapable, for --enforce to kick), open a session that receives its
/// SCB array, nor close its session.
#[test]
fn a_connection_never_speaks_for_a_new_process_with_its_peers_pid() {
    require_sched_ext();
    let _slot = exclusive();
    let (sock, addr) = endpoints("pid-reuse", 19308);
    let loader = Loader::start(&["--socket", &sock, "--metrics-addr", &addr]);
    let path = sock.clone();
    let (go_rd, go_wr) = pipe();
    let (res_rd, res_wr) = pipe();

    // A says HELLO, hands its connection to its child G and exits.
    // SAFETY: fork; A opens a session, forks G and exits; G waits on a pipe.
    let a = unsafe { libc::fork() };
    if a == 0 {
        let session = Session::open(path.as_ref());
        let quiet = crate::support::client::connect(path.as_ref()).unwrap();
        // SAFETY: fork in the child A.
        if unsafe { libc::fork() } == 0 {
            // G: told the victim's pid, it tries to register the victim's
            // main thread over A's connection, reports, and exits (closing
            // the connection, A's last).
            let code = match get(&go_rd) {
                Some(victim) => {
                    let pidfd = morpheus_common::pidfd::open_thread(victim as i32)
                        .expect("pidfd of the victim's main thread");
                    let (reply, _) = request(
                        session.socket(),
                        &Message::Register {
                            flags: morpheus_common::WORKER_ESCAPABLE,
                            runtime_kind: morpheus_common::RuntimeKind::Generic,
                        },
                        Some(&pidfd),
                    );
                    match reply {
                        Message::RegisterReply {
                            status: Status::Ok, ..
                        } => 1,
                        Message::RegisterReply { status, .. } | Message::Error { status } => {
                            100 + status as u32
                        }
                        _ => 2,
                    }
                }
                None => 3,
            };
            put(&res_wr, code);
            // A's second connection never said HELLO: saying it now must
            // not hand out the SCB array of the process with A's pid.
            let (reply, array) = request(
                &quiet,
                &Message::Hello {
                    runtime_kind: morpheus_common::RuntimeKind::Generic,
                },
                None,
            );
            let hello = match reply {
                Message::HelloReply {
                    status: Status::Ok, ..
                } => 1 + u32::from(array.is_some()),
                Message::HelloReply { status, .. } | Message::Error { status } => {
                    100 + status as u32
                }
                _ => 3,
            };
            put(&res_wr, hello);
            // SAFETY: leaving G.
            unsafe { libc::_exit(0) };
        }
        // SAFETY: leaving A.
        unsafe { libc::_exit(0) };
    }
    // SAFETY: reaping A: its pid is free from here on.
    unsafe { libc::waitpid(a, std::ptr::null_mut(), 0) };

    // V gets A's pid, opens its own session and registers its main thread,
    // then (when told) checks its session is still its own.
    let (v_go_rd, v_go_wr) = pipe();
    let (v_ready_rd, v_ready_wr) = pipe();
    let v = fork_with_pid(a, || {
        let session = Session::open(path.as_ref());
        let Ok((slot, generation)) = session.register(0) else {
            return 10;
        };
        put(&v_ready_wr, 1);
        if get(&v_go_rd).is_none() {
            return 11;
        }
        if session.unregister(slot, generation) != Status::Ok {
            return 12; // its registration was released by A's connection
        }
        if session.register(0).is_err() {
            return 13;
        }
        0
    });
    assert_eq!(
        get(&v_ready_rd),
        Some(1),
        "the process with the reused pid registered"
    );

    put(&go_wr, v as u32);
    let g = get(&res_rd).expect("G reports");
    assert_eq!(
        g,
        100 + Status::NotPermitted as u32,
        "the exited process's connection registered a thread of the new process \
         with its pid (1 = accepted)"
    );
    assert_eq!(
        get(&res_rd).expect("G reports its HELLO"),
        100 + Status::NotPermitted as u32,
        "the exited process's other connection got a session (2: with the new process's \
         SCB array)"
    );
    // G exits right after reporting, closing A's last connection; the
    // loader has ample time to act on that close (it once released V's
    // session). V's session must stand.
    std::thread::sleep(Duration::from_secs(2));
    put(&v_go_wr, 1);
    let mut status = 0;
    // SAFETY: reaping V.
    unsafe { libc::waitpid(v, &mut status, 0) };
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "the new process's session was disturbed (12: its worker was released)"
    );
    assert_eq!(
        metric(&addr, "registrations"),
        2,
        "only V's own registrations"
    );
    assert!(loader.stop().status.success());
}

/// Says HELLO on a new connection: Some(true) accepted, Some(false)
/// refused or closed, None when no connection could be made.
fn try_hello(path: &std::path::Path) -> Option<(bool, OwnedFd)> {
    use morpheus_common::seqpacket::{self, Received};
    use std::os::fd::AsFd;
    let sock = crate::support::client::connect(path).ok()?;
    seqpacket::set_recv_timeout(sock.as_fd(), Some(Duration::from_secs(10))).unwrap();
    let hello = Message::Hello {
        runtime_kind: morpheus_common::RuntimeKind::Generic,
    };
    if seqpacket::send(sock.as_fd(), &hello, None).is_err() {
        return Some((false, sock));
    }
    let ok = matches!(
        seqpacket::recv(sock.as_fd()),
        Ok(Received::Packet(
            Ok(Message::HelloReply {
                status: Status::Ok,
                ..
            }),
            _
        ))
    );
    Some((ok, sock))
}

/// One user asking for a thousand registrations (a pidfd each in the
/// loader) and every connection it may open locks no one else out: the
/// loader holds it to its worker quota (USER_QUOTA past it), raises its
/// open-file limit, caps the connections per user, and backs off instead of
/// spinning when accept(2) fails.
#[test]
fn one_user_with_a_thousand_registrations_locks_no_one_out() {
    require_sched_ext();
    let _slot = exclusive();
    let (sock, addr) = endpoints("exhaust", 19309);
    let loader = Loader::start(&[
        "--socket",
        &sock,
        "--socket-mode",
        "666",
        "--metrics-addr",
        &addr,
        "--max-workers-per-user",
        &QUOTA.to_string(),
    ]);
    let path = std::path::PathBuf::from(&sock);
    const PROCESSES: u32 = 4;
    const THREADS: usize = 250;
    const QUOTA: u32 = 900;
    const TRIES: u32 = 400;
    // What the greedy user's processes report on the pipe: a registrant
    // its registered and over-quota threads, the opener its accepted HELLOs.
    const OVER_QUOTA: u32 = 1 << 12;
    const OPENER: u32 = 1 << 30;
    let (ready_rd, ready_wr) = pipe();
    let (stop_rd, stop_wr) = pipe();

    // The greedy user (nobody): 4 processes of 250 threads that register,
    // then as many more connections as it can get, all held.
    // SAFETY: fork; the child forks the registrants, then connects.
    let greedy = unsafe { libc::fork() };
    if greedy == 0 {
        become_user(NOBODY);
        for _ in 0..PROCESSES {
            // SAFETY: fork in the greedy child.
            if unsafe { libc::fork() } == 0 {
                let session = Arc::new(Session::open(&path));
                let all = Arc::new(std::sync::Barrier::new(THREADS + 1));
                let ok = Arc::new(std::sync::atomic::AtomicU32::new(0));
                for _ in 0..THREADS {
                    let (session, all, ok) = (session.clone(), all.clone(), ok.clone());
                    std::thread::spawn(move || {
                        match session.register(0) {
                            Ok(_) => ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                            Err(Status::UserQuota) => {
                                ok.fetch_add(OVER_QUOTA, std::sync::atomic::Ordering::Relaxed)
                            }
                            Err(_) => 0,
                        };
                        all.wait();
                        loop {
                            std::thread::park();
                        }
                    });
                }
                all.wait();
                put(&ready_wr, ok.load(std::sync::atomic::Ordering::Relaxed));
                get(&stop_rd);
                // SAFETY: leaving the registrant.
                unsafe { libc::_exit(0) };
            }
        }
        let mut held = Vec::new();
        let mut accepted = 0;
        for _ in 0..TRIES {
            match try_hello(&path) {
                Some((ok, sock)) => {
                    accepted += u32::from(ok);
                    held.push(sock);
                }
                None => break,
            }
        }
        put(&ready_wr, OPENER + accepted);
        get(&stop_rd);
        // SAFETY: leaving the greedy child.
        unsafe { libc::_exit(0) };
    }
    let (mut accepted, mut registered, mut over_quota) = (None, 0, 0);
    for _ in 0..=PROCESSES {
        match get(&ready_rd).expect("the greedy user reports within 60 s") {
            n if n >= OPENER => accepted = Some(n - OPENER),
            n => {
                registered += n % OVER_QUOTA;
                over_quota += n / OVER_QUOTA;
            }
        }
    }
    let accepted = accepted.expect("the greedy user's connection count");
    println!(
        "greedy user: {registered} workers registered ({} by the loader's count), \
         {over_quota} refused as over its quota of {QUOTA}, {accepted} of {TRIES} more \
         HELLOs accepted",
        metric(&addr, "workers")
    );
    assert_eq!(
        (registered, over_quota),
        (QUOTA, PROCESSES * THREADS as u32 - QUOTA),
        "the greedy user was not held to its quota, or its own registrations failed \
         (the loader ran out of descriptors)"
    );
    assert!(
        accepted < TRIES,
        "one user got every connection it asked for ({accepted})"
    );

    // Another user still registers, within a deadline.
    let other = path.clone();
    let code = as_user(65533, move || {
        std::thread::spawn(|| {
            std::thread::sleep(Duration::from_secs(30));
            // SAFETY: leaving the child: the loader did not answer.
            unsafe { libc::_exit(14) };
        });
        let session = Session::open(&other);
        i32::from(session.register(0).is_err())
    });
    assert_eq!(
        code, 0,
        "another user could not register (14: no answer in 30 s)"
    );

    // And the loader is not spinning.
    let cpu = |pid: i32| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    };
    let before = cpu(loader.pid());
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    let used_ms = (cpu(loader.pid()) - before) * 1000 / hz;
    println!("loader CPU over 2 s with the greedy user connected: {used_ms} ms");
    assert!(
        used_ms < 1000,
        "the loader spins: {used_ms} ms of CPU in 2 s"
    );

    for _ in 0..=PROCESSES {
        put(&stop_wr, 1);
    }
    drop(stop_wr);
    // SAFETY: reaping the greedy child (its registrants are reparented).
    unsafe { libc::waitpid(greedy, std::ptr::null_mut(), 0) };
    assert!(
        wait_for(Duration::from_secs(30), || metric(&addr, "workers") == 0),
        "the greedy user's registrations were not all released"
    );
    assert!(loader.stop().status.success());
}

/// Something a hostile worker writes into its own SCB.
type Forge = fn(&crate::support::client::ScbRef<'_>);

/// What a worker that never checkpoints and keeps forging its SCB's
/// kernel line (writable like the rest of the mapping) got from the
/// scheduler in `ms`: metric deltas.
fn forger_run(h: &Harness, forge: Forge, ms: u64) -> [u64; 3] {
    let cpu = test_cpu();
    let before = |n: &str| h.metric(n);
    let (sent, ended, capped) = (
        before("hints_sent"),
        before("hints_answered") + before("hints_expired") + before("hints_dropped"),
        before("overrun_cap_violations"),
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hogs = hogs(2, cpu, stop.clone());
    let s = h.session.clone();
    std::thread::spawn(move || {
        pin_to(cpu);
        let (slot, generation) = s.register(0).unwrap();
        let until = std::time::Instant::now() + Duration::from_millis(ms);
        while std::time::Instant::now() < until {
            forge(&s.scb(slot));
            spin_us(200);
        }
        assert_eq!(s.unregister(slot, generation), Status::Ok);
    })
    .join()
    .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for h in hogs {
        h.join().unwrap();
    }
    [
        h.metric("hints_sent") - sent,
        h.metric("hints_answered") + h.metric("hints_expired") + h.metric("hints_dropped") - ended,
        h.metric("overrun_cap_violations") - capped,
    ]
}

/// The kernel line of a worker's SCB is mapped writable: whatever the
/// worker writes there, the scheduler keeps hinting it, keeps it within
/// the overrun cap, and sends one hint at a time (each one answered,
/// expired or dropped, never lost).
#[test]
fn a_worker_that_forges_its_kernel_line_is_still_hinted_and_capped() {
    require_sched_ext();
    let _slot = exclusive();
    let h = Harness::start(
        "forged",
        19307,
        &["--grace-ms", "10", "--max-overrun-ms", "20"],
    );
    let runs: [(&str, Forge); 2] = [
        // A stale generation and DEAD once made BPF treat it as gone.
        ("generation and state", |scb| scb.forge_identity()),
        // A sequence about to wrap once made hints sequence 0: never
        // outstanding, so each decision issued another.
        ("hint_seq", |scb| scb.forge_hint_seq(u64::MAX)),
    ];
    for (what, forge) in runs {
        let [sent, ended, capped] = forger_run(&h, forge, 1500);
        eprintln!("forged {what}: {sent} hints sent, {ended} ended, {capped} overrun caps");
        assert!(sent >= 1, "forged {what}: the worker was never hinted");
        assert!(
            capped >= 2,
            "forged {what}: the overrun cap stopped acting ({capped})"
        );
        assert_eq!(sent, ended, "forged {what}: hints that never ended");
    }
    assert_eq!(sched_ext_state(), "enabled", "the scheduler survived");
    h.stop();
}

#[test]
fn the_default_socket_admits_only_root_and_its_group() {
    require_sched_ext();
    let _slot = exclusive();
    let (sock, _) = endpoints("default-mode", 0);
    let loader = Loader::start(&["--socket", &sock]);
    let path = sock.clone();
    let code = as_user(NOBODY, move || {
        match crate::support::client::connect(path.as_ref()) {
            Err(e) if e.raw_os_error() == Some(libc::EACCES) => 0,
            Err(_) => 1,
            Ok(_) => 2,
        }
    });
    assert_eq!(
        code, 0,
        "an unprivileged user could connect to a 0660 root socket"
    );
    assert!(loader.stop().status.success());
}

#[test]
fn a_process_inside_a_pid_namespace_registers_its_own_threads() {
    require_sched_ext();
    let _slot = exclusive();
    let (sock, addr) = endpoints("pidns", 19305);
    let loader = Loader::start(&["--socket", &sock, "--metrics-addr", &addr]);
    let path = sock.clone();
    // SAFETY: fork; the child enters a new PID namespace and forks its pid 1.
    let child = unsafe { libc::fork() };
    if child == 0 {
        // SAFETY: unshare + fork + waitpid in the child only.
        let code = unsafe {
            if libc::unshare(libc::CLONE_NEWPID) != 0 {
                libc::_exit(10);
            }
            let init = libc::fork();
            if init == 0 {
                let ok = std::panic::catch_unwind(|| {
                    assert_eq!(libc::getpid(), 1, "not in a new PID namespace");
                    let session = Session::open(path.as_ref());
                    let (slot, _) = session
                        .register(0)
                        .expect("registration from a PID namespace");
                    assert_eq!(session.scb(slot).magic(), morpheus_common::ABI_MAGIC);
                })
                .is_ok();
                libc::_exit(if ok { 0 } else { 11 });
            }
            let mut status = 0;
            libc::waitpid(init, &mut status, 0);
            libc::WEXITSTATUS(status)
        };
        // SAFETY: leaving the forked child.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: reaping our child.
    unsafe { libc::waitpid(child, &mut status, 0) };
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "registration from a PID namespace failed"
    );
    assert_eq!(metric(&addr, "registrations"), 1);
    assert!(loader.stop().status.success());
}
