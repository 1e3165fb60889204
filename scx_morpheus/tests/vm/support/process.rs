// SPDX-License-Identifier: GPL-2.0-only
//! Other processes in a test: forked children that die with the test,
//! counters shared with them, and a cgroup of their own.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use super::wait_for;

/// Counters shared with forked children (zeroed shared anonymous memory).
#[derive(Default)]
#[repr(C)]
pub struct Board {
    pub go: AtomicU64,
    pub stop: AtomicU64,
    pub work: AtomicU64,
    pub sessions: AtomicU64,
    pub registered: AtomicU64,
    pub hinted: AtomicU64,
    pub escalations: AtomicU64,
    pub scb_flags: AtomicU64,
    pub state: AtomicU64,
}

/// A [`Board`] in memory that survives fork as shared.
pub struct SharedBoard(pub *mut Board);

impl SharedBoard {
    pub fn new() -> SharedBoard {
        // SAFETY: fresh anonymous shared mapping; all-zero is a valid Board.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap shared board");
        SharedBoard(p.cast())
    }
}

impl std::ops::Deref for SharedBoard {
    type Target = Board;
    fn deref(&self) -> &Board {
        // SAFETY: mapped in new(), unmapped only on drop.
        unsafe { &*self.0 }
    }
}

impl Drop for SharedBoard {
    fn drop(&mut self) {
        // SAFETY: unmapping what new() mapped.
        unsafe { libc::munmap(self.0.cast(), 4096) };
    }
}

/// A forked child process running `f`; it dies with us (PDEATHSIG) and is
/// killed and reaped when dropped.
pub struct Child {
    pub pid: i32,
    pub reaped: bool,
}

impl Child {
    pub fn fork(f: impl FnOnce() -> i32) -> Child {
        // SAFETY: fork; the child runs `f` and leaves with _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: prctl on ourselves.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            let code = std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or(99);
            // SAFETY: leaving the forked child without running the parent's destructors.
            unsafe { libc::_exit(code) };
        }
        assert!(pid > 0, "fork: {}", std::io::Error::last_os_error());
        Child { pid, reaped: false }
    }

    /// SIGKILLs and reaps the child.
    pub fn kill(&mut self) {
        if !self.reaped {
            // SAFETY: kill + waitpid of our own child.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
            self.reaped = true;
        }
    }

    /// Waits up to `timeout` for the child to exit by itself; its status.
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let mut status = 0;
        let exited = wait_for(timeout, || {
            // SAFETY: non-blocking waitpid of our own child.
            unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) == self.pid }
        });
        if exited {
            self.reaped = true;
            Some(libc::WEXITSTATUS(status))
        } else {
            self.kill();
            None
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A cgroup v2 group of our own, removed on drop (once empty).
pub struct Cgroup(std::path::PathBuf);

impl Cgroup {
    pub fn new(name: &str) -> Cgroup {
        let path = std::path::PathBuf::from(format!(
            "/sys/fs/cgroup/morpheus-{name}-{}",
            std::process::id()
        ));
        std::fs::create_dir(&path).unwrap_or_else(|e| {
            panic!(
                "cannot create {} ({e}): these tests need a writable cgroup v2 hierarchy",
                path.display()
            )
        });
        Cgroup(path)
    }

    pub fn add(&self, pid: i32) {
        std::fs::write(self.0.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|e| panic!("cannot move {pid} into {}: {e}", self.0.display()));
    }

    /// Moves this whole process into the group until the guard drops
    /// (also when a test fails), then back to where it was.
    pub fn enter(&self) -> Membership {
        let home = std::fs::read_to_string("/proc/self/cgroup")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("0::").map(|p| p.trim().to_string()))
            })
            .expect("this process's cgroup v2 path (/proc/self/cgroup)");
        self.add(std::process::id() as i32);
        Membership(std::path::PathBuf::from(format!("/sys/fs/cgroup{home}")))
    }
}

/// This process's stay in a [`Cgroup`] (see [`Cgroup::enter`]).
pub struct Membership(std::path::PathBuf);

impl Drop for Membership {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0.join("cgroup.procs"), std::process::id().to_string());
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        wait_for(Duration::from_secs(5), || {
            std::fs::remove_dir(&self.0).is_ok()
        });
    }
}

/// The user id (and group id) of `nobody`.
pub const NOBODY: u32 = 65534;

/// Runs `f` in a forked child as `uid`/`gid`; returns its exit code.
pub fn as_user(uid: u32, f: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child only runs `f` and _exits; glibc keeps malloc usable after fork.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0);
        if pid == 0 {
            become_user(uid);
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(99);
            libc::_exit(code);
        }
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        libc::WEXITSTATUS(status)
    }
}

/// Drops to `uid`/`gid` in a forked child (or exits it with 98).
pub fn become_user(uid: u32) {
    // SAFETY: setgroups/setgid/setuid in a forked child.
    let ok = unsafe {
        libc::setgroups(0, std::ptr::null()) == 0
            && libc::setgid(uid) == 0
            && libc::setuid(uid) == 0
    };
    if !ok {
        // SAFETY: leaving the forked child.
        unsafe { libc::_exit(98) };
    }
}
