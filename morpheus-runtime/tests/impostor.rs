// SPDX-License-Identifier: GPL-2.0-only
//! A server at the socket path that runs as another user (not root, not
//! ours) is not scx_morpheus: the runtime sends it nothing it could abuse
//! (no HELLO, no pidfd of a thread), maps nothing it sends, and says why.
//! The same fake loader run by root is used at once. Needs root (to run the
//! impostor as another user): CI runs as root; as another user it is
//! skipped, saying so.

mod common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use common::{Behaviour, Server, wait_until};
use morpheus_runtime::metrics::snapshot;
use morpheus_runtime::{Config, RegistrationState, bindings, current_worker};

const WAIT: Duration = Duration::from_secs(5);
const NOBODY: u32 = 65534;

#[test]
fn a_server_of_another_user_is_not_trusted() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: running an impostor as another user needs root (CI runs as root)");
        return;
    }
    let path = common::socket_path("impostor");
    let mut fds = [0; 2];
    // SAFETY: pipe(2).
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: fresh fds we own.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };

    // The impostor: the fake loader, run as nobody, until the pipe closes.
    // SAFETY: fork; the child drops privileges, serves, and _exits.
    let child = unsafe { libc::fork() };
    assert!(child >= 0);
    if child == 0 {
        drop(wr);
        // SAFETY: dropping privileges in the child.
        let ok = unsafe {
            libc::setgroups(0, std::ptr::null()) == 0
                && libc::setgid(NOBODY) == 0
                && libc::setuid(NOBODY) == 0
        };
        if ok {
            let server = Server::start(&path, Behaviour::Ok);
            let mut b = [0u8; 1];
            // SAFETY: blocks until the parent closes its end.
            unsafe { libc::read(rd.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
            let saw_hello = !server.seen().is_empty();
            server.stop();
            // SAFETY: leaving the child.
            unsafe { libc::_exit(if saw_hello { 2 } else { 0 }) };
        }
        // SAFETY: leaving the child.
        unsafe { libc::_exit(1) };
    }
    drop(rd);
    assert!(
        wait_until(WAIT, || path.exists()),
        "the impostor did not bind"
    );

    morpheus_runtime::configure(Config {
        socket_path: path.clone(),
        reconnect_interval: Duration::from_millis(100),
        budget: Duration::from_secs(5),
        ..Config::default()
    })
    .unwrap();
    assert_eq!(bindings::checkpoint(), None); // attaches this thread
    let s = snapshot();
    assert_eq!(s.registration, RegistrationState::Unavailable);
    let reason = s.registration_reason.unwrap_or_default();
    assert!(
        reason.contains(&format!("runs as uid {NOBODY}")),
        "the reason says who: {reason}"
    );
    assert_eq!(current_worker().unwrap().slot, None);

    drop(wr);
    let mut status = 0;
    // SAFETY: reaping our child.
    unsafe { libc::waitpid(child, &mut status, 0) };
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "the impostor ran (1: could not drop privileges) and got nothing (2: it saw a HELLO)"
    );

    // The same fake loader run by root (this process) is the loader.
    let server = Server::start(&path, Behaviour::Ok);
    assert!(
        wait_until(WAIT, || {
            bindings::checkpoint();
            snapshot().registration == RegistrationState::Connected
        }),
        "a root loader at the same path is used: {:?}",
        snapshot().registration_reason
    );
    server.stop();
}
