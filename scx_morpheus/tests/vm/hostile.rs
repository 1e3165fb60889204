// SPDX-License-Identifier: GPL-2.0-only
//! Hostile and malformed registration traffic: every bad message gets a
//! clear error or a closed connection, others keep being served, and the
//! loader leaks no fds, slots or memory.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use morpheus_common::protocol::Message;
use morpheus_common::seqpacket::{self, Received};
use morpheus_common::{ABI_MAGIC, RuntimeKind, Status};

use crate::support::client::{Session, connect, metric, own_thread_pidfd};
use crate::support::*;

/// Sends `bytes` as one packet. A failure is the loader having closed the
/// connection, which the reply (or its absence) tells the caller.
fn send_raw(sock: &OwnedFd, bytes: &[u8]) {
    let _ = seqpacket::send_bytes(sock.as_fd(), bytes, None);
}

/// The status of an Error reply, or None if the loader closed the connection.
fn error_reply(sock: &OwnedFd) -> Option<Status> {
    match seqpacket::recv(sock.as_fd()) {
        Ok(Received::Packet(Ok(Message::Error { status }), _)) => Some(status),
        Ok(Received::Packet(Ok(Message::HelloReply { status, .. }), _)) => Some(status),
        Ok(Received::Closed) | Err(_) => None,
        other => panic!("unexpected reply {other:?}"),
    }
}

fn rss_kb(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A loader serving socket and metrics endpoints named `name` (`port`),
/// warmed up (one session opened and closed: its threads started) and
/// idle again; returns it with the socket path and the metrics address.
fn warm_loader(name: &str, port: u16) -> (Loader, String, String) {
    let (sock, addr) = endpoints(name, port);
    let loader = Loader::start(&["--socket", &sock, "--metrics-addr", &addr]);
    drop(Session::open(std::path::Path::new(&sock)));
    assert!(
        wait_for(Duration::from_secs(10), || metric(&addr, "processes") == 0),
        "the warm-up session was not closed"
    );
    (loader, sock, addr)
}

#[test]
fn hostile_clients_get_clear_errors_and_the_loader_leaks_nothing() {
    require_sched_ext();
    let _slot = exclusive();
    // Warm up (threads, allocations), then take the baseline.
    let (loader, sock, addr) = warm_loader("hostile", 19501);
    let path = std::path::Path::new(&sock);
    let (fds0, rss0) = (fd_count(loader.pid()), rss_kb(loader.pid()));

    let good_hello = Message::Hello {
        runtime_kind: RuntimeKind::Tokio,
    }
    .encode();
    let mut tried = 0;
    for round in 0..40 {
        // Truncated.
        let s = connect(path).unwrap();
        send_raw(&s, &good_hello[..5]);
        assert_eq!(
            error_reply(&s),
            Some(Status::BadMessage),
            "truncated, round {round}"
        );
        // Oversized.
        send_raw(&s, &[0x5a; 200]);
        assert_eq!(error_reply(&s), Some(Status::BadMessage), "oversized");
        // Wrong version.
        let mut v = good_hello.clone();
        v[4] = 77;
        send_raw(&s, &v);
        assert_eq!(error_reply(&s), Some(Status::BadVersion), "wrong version");
        // Out of order: REGISTER before HELLO.
        let pidfd = own_thread_pidfd();
        seqpacket::send(
            s.as_fd(),
            &Message::Register {
                flags: 0,
                runtime_kind: RuntimeKind::Tokio,
            },
            Some(pidfd.as_fd()),
        )
        .unwrap();
        assert_eq!(
            error_reply(&s),
            Some(Status::NotFound),
            "register before hello"
        );
        // A reply type sent by a client.
        seqpacket::send(
            s.as_fd(),
            &Message::UnregisterReply { status: Status::Ok },
            None,
        )
        .unwrap();
        assert_eq!(error_reply(&s), Some(Status::BadMessage), "wrong direction");
        // Garbage with the right magic.
        let mut g = vec![0u8; 24];
        g[..4].copy_from_slice(&ABI_MAGIC.to_ne_bytes());
        g[6] = (round % 250) as u8 + 8;
        send_raw(&s, &g);
        assert!(error_reply(&s).is_some(), "garbage");
        // HELLO twice, and REGISTER with someone else's fd type (a socket).
        seqpacket::send(
            s.as_fd(),
            &Message::Hello {
                runtime_kind: RuntimeKind::Tokio,
            },
            None,
        )
        .unwrap();
        assert!(matches!(
            seqpacket::recv(s.as_fd()).unwrap(),
            Received::Packet(
                Ok(Message::HelloReply {
                    status: Status::Ok,
                    ..
                }),
                Some(_)
            )
        ));
        seqpacket::send(
            s.as_fd(),
            &Message::Hello {
                runtime_kind: RuntimeKind::Tokio,
            },
            None,
        )
        .unwrap();
        assert_eq!(error_reply(&s), Some(Status::BadMessage), "second hello");
        let other = connect(path).unwrap();
        seqpacket::send(
            s.as_fd(),
            &Message::Register {
                flags: 0,
                runtime_kind: RuntimeKind::Tokio,
            },
            Some(other.as_fd()),
        )
        .unwrap();
        match seqpacket::recv(s.as_fd()).unwrap() {
            Received::Packet(Ok(Message::RegisterReply { status, .. }), _) => {
                assert_eq!(status, Status::NotPermitted)
            }
            r => panic!("socket instead of pidfd: {r:?}"),
        }
        drop(other);
        // Disconnect mid-exchange: HELLO sent, reply never read.
        let s2 = connect(path).unwrap();
        send_raw(&s2, &good_hello);
        drop(s2);
        tried += 9;
    }

    // Hundreds of connections at once, then all gone.
    let many: Vec<OwnedFd> = (0..300).filter_map(|_| connect(path).ok()).collect();
    assert!(
        many.len() >= 250,
        "only {} connections accepted",
        many.len()
    );
    drop(many);

    // A well-behaved client is still served.
    let session = Session::open(path);
    session.register(0).expect("served after the abuse");
    drop(session);

    assert!(
        wait_for(Duration::from_secs(20), || metric(&addr, "processes") == 0),
        "sessions leaked"
    );
    // The registry's own count, not a sum over the processes just seen
    // to be gone.
    assert_eq!(metric(&addr, "workers"), 0, "slots leaked");
    assert!(
        wait_for(Duration::from_secs(20), || fd_count(loader.pid()) <= fds0),
        "fds leaked: {} -> {}",
        fds0,
        fd_count(loader.pid())
    );
    let rss1 = rss_kb(loader.pid());
    let bad = metric(&addr, "bad_messages");
    println!(
        "hostile input: {tried} bad exchanges, {bad} bad messages counted, fds {fds0} -> {}, RSS {rss0} -> {rss1} kB",
        fd_count(loader.pid())
    );
    assert!(bad >= 200);
    assert!(
        rss1 < rss0 + 16 * 1024,
        "loader memory grew from {rss0} to {rss1} kB"
    );
    assert!(loader.stop().status.success());
}

/// A client that stalls holds nothing for long: a connection that never
/// says HELLO is closed after the loader's HELLO timeout (10 s), and one
/// that sends requests without reading the replies is cut off once its
/// replies fill the socket, instead of keeping a loader thread blocked for
/// as long as it likes; everyone else is served.
#[test]
fn a_client_that_stalls_holds_nothing_for_long() {
    require_sched_ext();
    let _slot = exclusive();
    let (sock, addr) = endpoints("stall", 19504);
    let loader = Loader::start(&["--socket", &sock, "--metrics-addr", &addr]);
    let path = std::path::Path::new(&sock);

    let silent = connect(path).unwrap();
    // HELLO, then REGISTER (of this thread, again and again: each gets a
    // reply) as fast as the socket takes them, never reading a reply.
    let flood = connect(path).unwrap();
    seqpacket::send(
        flood.as_fd(),
        &Message::Hello {
            runtime_kind: RuntimeKind::Tokio,
        },
        None,
    )
    .unwrap();
    assert_eq!(error_reply(&flood), Some(Status::Ok), "hello");
    let register = Message::Register {
        flags: 0,
        runtime_kind: RuntimeKind::Tokio,
    };
    // Send until the loader cuts the connection off, waiting a little
    // whenever the socket is full (the loader then has requests to read),
    // for at most 60 s. Before, the loader's thread blocked on a reply once
    // the replies filled the socket, read no more requests, and the
    // connection stayed open for ever.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut sent = 0u64;
    let cut_off = loop {
        let pidfd = own_thread_pidfd();
        match seqpacket::try_send(flood.as_fd(), &register, Some(pidfd.as_fd())) {
            Ok(()) => sent += 1,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if std::time::Instant::now() > deadline {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => break Some(e),
        }
    };
    println!("{sent} requests sent without reading, then {cut_off:?}");
    assert!(
        cut_off.is_some(),
        "a connection that does not read its replies was left open ({sent} requests in 60 s)"
    );

    // Everyone else is served.
    let other = path.to_path_buf();
    let served = std::thread::spawn(move || {
        let session = Session::open(&other);
        session.register(0).is_ok()
    });
    assert!(
        wait_for(Duration::from_secs(10), || served.is_finished()),
        "a client that does not read its replies stalled the loader"
    );
    assert!(served.join().unwrap(), "a well-behaved client was refused");

    // The silent one is closed once the HELLO timeout has passed.
    seqpacket::set_recv_timeout(silent.as_fd(), Some(Duration::from_secs(20))).unwrap();
    let start = std::time::Instant::now();
    let end = seqpacket::recv(silent.as_fd());
    println!("silent connection: {end:?} after {:?}", start.elapsed());
    assert!(
        matches!(end, Ok(Received::Closed)),
        "a connection that never said HELLO was left open ({end:?})"
    );
    assert!(
        wait_for(Duration::from_secs(20), || metric(&addr, "processes") == 0),
        "sessions leaked"
    );
    assert!(loader.stop().status.success());
}

/// The CPU time process `pid` has used so far (all its threads), in
/// clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command (which may hold spaces) end with ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5): 12 and 13 here.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// The lowest descriptor number process `pid` does not use: with its
/// open-file limit there, it can open nothing more.
fn lowest_free_fd(pid: i32) -> u64 {
    let used: std::collections::BTreeSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    (0..).find(|n| !used.contains(n)).unwrap()
}

/// A loader that cannot accept (EMFILE: its open-file limit is lowered to
/// the lowest descriptor number it does not use, so every number it may
/// use is taken) waits and retries instead of spinning on the listening
/// socket, which stays readable while connections are pending; once its
/// limit is back it serves again.
#[test]
fn a_loader_out_of_descriptors_waits_instead_of_spinning() {
    require_sched_ext();
    let _slot = exclusive();
    let (loader, sock, _addr) = warm_loader("emfile", 19505);
    let pid = loader.pid();
    let path = std::path::Path::new(&sock);

    // No scraping from here until the limit is back: the metrics endpoint
    // needs descriptors too.
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid rlimit pointer to read into.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    let limit = libc::rlimit {
        rlim_cur: lowest_free_fd(pid),
        rlim_max: old.rlim_max,
    };
    // SAFETY: a valid rlimit (root may set another process's limit).
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &limit, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    let held: Vec<OwnedFd> = (0..4).map(|_| connect(path).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(500));

    // Pending connections keep the listener readable: a loop that retried
    // at once would use a whole CPU; one that waits between tries, little.
    let window = Duration::from_secs(3);
    let before = cpu_ticks(pid);
    std::thread::sleep(window);
    let used = cpu_ticks(pid) - before;
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    let used_ms = used * 1000 / hz;
    println!("loader CPU time over {window:?} without descriptors: {used_ms} ms");

    // Its limit back: served again.
    // SAFETY: a valid rlimit; no old-limit output.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &old, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    drop(held);
    let other = path.to_path_buf();
    let served = std::thread::spawn(move || Session::open(&other).register(0).is_ok());
    assert!(
        wait_for(Duration::from_secs(20), || served.is_finished()),
        "the loader did not serve again once its descriptors were back"
    );
    assert!(
        served.join().unwrap(),
        "a client was refused after the descriptors came back"
    );
    let exit = loader.stop();
    assert!(exit.status.success());
    assert!(
        exit.stderr.contains("cannot accept connections"),
        "accept never failed, so the test proved nothing: {}",
        exit.stderr
    );
    assert!(
        used_ms < window.as_millis() as u64 / 4,
        "the loader spun on its listener without descriptors: {used_ms} ms of CPU in {window:?}"
    );
}
