// SPDX-License-Identifier: GPL-2.0-only
//! fork(): the child never uses its parent's registration, SCB or session;
//! it starts over (a session and registration of its own) with the same
//! configuration. A real fork, against the fake loader (tests/common).

mod common;

use std::time::Duration;

use common::{Behaviour, Seen, Server};
use morpheus_runtime::metrics::snapshot;
use morpheus_runtime::{
    Config, WorkerOptions, bindings, critical_depth, critical_section, current_worker, is_worker,
};

/// The child's checks; returns 0 or the number of the first that failed
/// (the child must not panic: it would run the test harness on).
fn child(guard: morpheus_runtime::CriticalSection, server: &Server) -> i32 {
    let me = unsafe { libc::getpid() };
    // Not the parent's worker any more, but inside the parent's section
    // (the guard is on this thread's stack).
    if is_worker() || current_worker().is_ok() {
        return 1;
    }
    if critical_depth() != 1 {
        return 2;
    }
    // None of the parent's workers.
    if !snapshot().workers.is_empty() {
        return 3;
    }
    // The first checkpoint attaches afresh: its own session and slot.
    if bindings::checkpoint().is_some() || !is_worker() {
        return 4;
    }
    let w = match current_worker() {
        Ok(w) => w,
        Err(_) => return 5,
    };
    let slot = match w.slot {
        Some(s) if s != 0 => s,
        _ => return 6,
    };
    if w.tid != me || snapshot().workers.len() != 1 {
        return 7;
    }
    // The open section reached the child's slot, not the parent's.
    if server.critical_depth(slot) != 1 || server.critical_depth(0) != 1 {
        return 8;
    }
    drop(guard);
    if server.critical_depth(slot) != 0 || server.critical_depth(0) != 1 {
        return 9;
    }
    // A section of the child's own: its slot only.
    let g = critical_section();
    if server.critical_depth(slot) != 1 || server.critical_depth(0) != 1 {
        return 10;
    }
    drop(g);
    0
}

#[test]
fn a_forked_child_starts_over_and_leaves_the_parent_alone() {
    let path = common::socket_path("fork");
    let server = Server::start(&path, Behaviour::Ok);
    morpheus_runtime::configure(Config {
        socket_path: path.clone(),
        budget: Duration::from_secs(5),
        sources: morpheus_runtime::Sources {
            pressure: false,
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    morpheus_runtime::attach_worker(WorkerOptions::default()).unwrap();
    assert_eq!(current_worker().unwrap().slot, Some(0));
    let guard = critical_section();
    assert_eq!(server.critical_depth(0), 1);

    // SAFETY: the child only runs `child` and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| child(guard, &server)))
            .unwrap_or(100);
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: our child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child failed check {} (status {status:#x}); see `child`",
        libc::WEXITSTATUS(status)
    );

    // The parent is as it was: its worker, slot and open section.
    assert!(is_worker());
    assert_eq!(current_worker().unwrap().slot, Some(0));
    assert_eq!(server.critical_depth(0), 1);
    drop(guard);
    assert_eq!(server.critical_depth(0), 0);
    // The child opened a session of its own and registered its own thread.
    let seen = server.seen();
    assert_eq!(
        seen.iter().filter(|s| **s == Seen::Hello).count(),
        2,
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|s| matches!(s, Seen::Register { pidfd_tid: Some(t), .. } if *t == pid)),
        "{seen:?}"
    );
    // And the parent's session still works.
    assert!(
        morpheus_runtime::metrics::snapshot().registration
            == morpheus_runtime::RegistrationState::Connected
    );
}
