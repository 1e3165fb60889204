// SPDX-License-Identifier: GPL-2.0-only
//! Who is on the other end: identities taken from the kernel (SO_PEERCRED,
//! pidfd fdinfo, /proc), never from message fields. All pids are in the
//! loader's PID namespace, so clients inside containers work unchanged.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// The credentials of a connected peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    /// The process that connected.
    pub pid: u32,
    /// Its user.
    pub uid: u32,
    /// Its group.
    pub gid: u32,
}

/// SO_PEERCRED of a connected Unix socket.
pub fn peer_cred(sock: BorrowedFd<'_>) -> io::Result<PeerCred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if cred.pid <= 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "peer has no pid in our namespace",
        ));
    }
    Ok(PeerCred {
        pid: cred.pid as u32,
        uid: cred.uid,
        gid: cred.gid,
    })
}

/// Reads `Key:\tvalue` from a /proc status-like text.
pub fn status_field(text: &str, key: &str) -> Option<i64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// The thread a pidfd refers to (its tid in our namespace), from fdinfo.
/// Fails for anything that is not a pidfd of a live task.
pub fn pidfd_tid(pidfd: BorrowedFd<'_>) -> io::Result<u32> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", pidfd.as_raw_fd()))?;
    match status_field(&info, "Pid") {
        Some(pid) if pid > 0 => Ok(pid as u32),
        Some(_) => Err(io::Error::new(
            io::ErrorKind::NotFound,
            "the thread has exited",
        )),
        None => Err(io::Error::new(io::ErrorKind::InvalidInput, "not a pidfd")),
    }
}

/// The process (thread group) a thread belongs to.
pub fn tgid_of(tid: u32) -> io::Result<u32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status"))?;
    status_field(&status, "Tgid")
        .map(|t| t as u32)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Tgid in /proc status"))
}

/// Start time of a process in clock ticks since boot (field 22 of
/// /proc/PID/stat), which tells a reused pid from the original.
pub fn start_time(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_start_time(&stat)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed /proc/PID/stat"))
}

fn parse_start_time(stat: &str) -> Option<u64> {
    // The command name may contain spaces and parentheses: skip past the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // Fields after the name start at field 3; starttime is field 22.
    rest.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// Whether the task behind a pidfd has exited (the pidfd polls readable).
pub fn pidfd_exited(pidfd: BorrowedFd<'_>) -> bool {
    let mut pfd = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n > 0 && pfd.revents & (libc::POLLIN | libc::POLLHUP) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_fields() {
        let text = "Name:\tcat\nTgid:\t42\nPid:\t43\nNSpid:\t43\t1\n";
        assert_eq!(status_field(text, "Tgid"), Some(42));
        assert_eq!(status_field(text, "Pid"), Some(43));
        assert_eq!(status_field(text, "Missing"), None);
        assert_eq!(status_field("Pid:\t-1\n", "Pid"), Some(-1));
    }

    #[test]
    fn parses_start_time_with_hostile_names() {
        // Field 3 is the state; fields 4..21 are numbers; field 22 is starttime.
        let middle: Vec<String> = (4..22).map(|i| i.to_string()).collect();
        let stat = format!("123 (evil) name) R {} 98765 23 24", middle.join(" "));
        assert_eq!(parse_start_time(&stat), Some(98765));
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn identities_of_this_process() {
        let me = std::process::id();
        assert_eq!(tgid_of(me).unwrap(), me);
        assert!(start_time(me).unwrap() > 0);
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        use std::os::fd::AsFd;
        let cred = peer_cred(a.as_fd()).unwrap();
        assert_eq!(cred.pid, me);
        // A socket is not a pidfd.
        assert!(pidfd_tid(a.as_fd()).is_err());
    }
}
