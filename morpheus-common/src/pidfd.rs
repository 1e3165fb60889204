// SPDX-License-Identifier: GPL-2.0-only
//! pidfds: the kernel's handle on a process or on one thread. Unlike a
//! numeric pid, a pidfd never names another task after its own exits, so
//! Morpheus identifies every task it registers or checks by one.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// `PIDFD_THREAD` (Linux 6.9 and later): a pidfd for one thread, not for
/// its process.
pub const PIDFD_THREAD: libc::c_int = libc::O_EXCL;

/// `pidfd_open(pid, flags)`.
fn open(pid: i32, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: a plain system call; it returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just created and is ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A pidfd of process `pid`.
pub fn open_process(pid: i32) -> io::Result<OwnedFd> {
    open(pid, 0)
}

/// A pidfd of thread `tid` (of any process). `EINVAL` on kernels older
/// than 6.9, which have no thread pidfds.
pub fn open_thread(tid: i32) -> io::Result<OwnedFd> {
    open(tid, PIDFD_THREAD)
}

/// A pidfd of the calling thread.
pub fn own_thread() -> io::Result<OwnedFd> {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as i32;
    open_thread(tid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// The pid a pidfd refers to, from /proc/self/fdinfo ("Pid:").
    fn pid_of(fd: &OwnedFd) -> i32 {
        let info =
            std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("Pid:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("Pid: line")
    }

    #[test]
    fn pidfds_name_the_task_asked_for() {
        // SAFETY: getpid and gettid have no preconditions.
        let (pid, tid) = unsafe { (libc::getpid(), libc::syscall(libc::SYS_gettid) as i32) };
        assert_eq!(pid_of(&open_process(pid).unwrap()), pid);
        let other = std::thread::spawn(|| {
            // SAFETY: as above.
            let tid = unsafe { libc::syscall(libc::SYS_gettid) } as i32;
            (tid, pid_of(&own_thread().unwrap()))
        })
        .join()
        .unwrap();
        assert_eq!(other.0, other.1);
        assert_ne!(other.0, tid);
        assert_eq!(pid_of(&open_thread(tid).unwrap()), tid);
    }

    #[test]
    fn a_task_that_does_not_exist_is_an_error() {
        assert!(open_process(-1).is_err());
        assert!(open_thread(i32::MAX).is_err());
    }
}
