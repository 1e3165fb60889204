// SPDX-License-Identifier: GPL-2.0-only
//! Who is on the other end: identities taken from the kernel, never from
//! message fields and never from a numeric pid alone. A client is the
//! process that connected, held by a pidfd the kernel gives for the socket
//! (SO_PEERPIDFD), so a pid reused after it exits never speaks for it; a
//! thread is a pidfd the client passes, whose process the kernel reports
//! for that very task (PIDFD_GET_INFO), not by looking its number up. All
//! pids are in the loader's PID namespace, so clients inside containers
//! work unchanged.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// The process at the other end of a connection.
#[derive(Debug)]
pub struct Peer {
    pidfd: OwnedFd,
    /// The process that connected (its pid in our namespace).
    pub pid: u32,
    /// Its effective user when it connected.
    pub uid: u32,
}

/// Why a thread was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The process that connected has exited: its pid may now be another's.
    PeerExited,
    /// The pidfd is not a pidfd of a live thread.
    NotALiveThread,
    /// The thread belongs to another process (it has this tgid).
    OtherProcess(u32),
    /// The thread runs as another user (this euid).
    OtherUser(u32),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::PeerExited => write!(f, "the process that connected has exited"),
            Refusal::NotALiveThread => write!(f, "not a pidfd of a live thread"),
            Refusal::OtherProcess(t) => write!(f, "a thread of another process (pid {t})"),
            Refusal::OtherUser(u) => write!(f, "a thread running as another user (uid {u})"),
        }
    }
}

impl Peer {
    /// The peer of a connected Unix socket: SO_PEERCRED for its user, and
    /// SO_PEERPIDFD (Linux 6.5, older than any kernel with sched_ext) for
    /// the process itself, recorded by the kernel at connect(2).
    pub fn of(sock: BorrowedFd<'_>) -> io::Result<Peer> {
        let cred: libc::ucred = getsockopt(sock, libc::SO_PEERCRED)?;
        let fd: libc::c_int = getsockopt(sock, libc::SO_PEERPIDFD)?;
        // SAFETY: the kernel installed a new pidfd (close-on-exec) for us.
        let pidfd = unsafe { OwnedFd::from_raw_fd(fd) };
        if cred.pid <= 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the peer has no pid in our PID namespace",
            ));
        }
        Ok(Peer {
            pidfd,
            pid: cred.pid as u32,
            uid: cred.uid,
        })
    }

    /// Whether the process that connected is still alive. While it is, its
    /// pid is its own: check this after reading anything keyed by the pid.
    pub fn alive(&self) -> bool {
        !pidfd_exited(self.pidfd.as_fd())
    }

    /// An identity of the process that no later process shares: the
    /// inode number of its pidfd (pidfs numbers every process once per
    /// boot), which tells a reused pid apart.
    pub fn identity(&self) -> io::Result<u64> {
        // SAFETY: stat is plain data; all-zero is a valid value.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat writes one stat into `st`.
        if unsafe { libc::fstat(self.pidfd.as_raw_fd(), &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(st.st_ino)
    }

    /// The tid of the thread behind `thread` (a pidfd the peer passed),
    /// if it is a live thread of the peer's process running as the peer's
    /// user, and the peer is still the process that connected.
    pub fn owns_thread(&self, thread: BorrowedFd<'_>) -> Result<u32, Refusal> {
        let info = pidfd_info(thread).map_err(|_| Refusal::NotALiveThread)?;
        if info.tgid != self.pid {
            return Err(Refusal::OtherProcess(info.tgid));
        }
        if info.euid != self.uid {
            return Err(Refusal::OtherUser(info.euid));
        }
        // The tgid matched a number; the peer alive now means that number
        // was the peer's when the kernel reported it.
        if !self.alive() {
            return Err(Refusal::PeerExited);
        }
        Ok(info.pid)
    }
}

fn getsockopt<T>(sock: BorrowedFd<'_>, opt: libc::c_int) -> io::Result<T> {
    // SAFETY: T is a plain C type (ucred or int) the kernel fills.
    let mut value: T = unsafe { std::mem::zeroed() };
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `value`.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&mut value as *mut T).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// What the kernel says about the task behind a pidfd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PidfdInfo {
    /// The task's pid (a thread's tid for a thread pidfd), our namespace.
    pub pid: u32,
    /// Its process.
    pub tgid: u32,
    /// Its effective user.
    pub euid: u32,
}

/// `struct pidfd_info` of linux/pidfd.h, the first (64-byte) version.
#[repr(C)]
#[derive(Default)]
struct RawPidfdInfo {
    mask: u64,
    cgroupid: u64,
    pid: u32,
    tgid: u32,
    ppid: u32,
    ruid: u32,
    rgid: u32,
    euid: u32,
    egid: u32,
    suid: u32,
    sgid: u32,
    fsuid: u32,
    fsgid: u32,
    exit_code: i32,
}

const PIDFD_INFO_PID: u64 = 1 << 0;
const PIDFD_INFO_CREDS: u64 = 1 << 1;
/// `_IOWR(PIDFS_IOCTL_MAGIC, 11, struct pidfd_info)` (Linux 6.13).
const PIDFD_GET_INFO: libc::c_ulong =
    (3 << 30) | ((size_of::<RawPidfdInfo>() as libc::c_ulong) << 16) | (0xFF << 8) | 11;

/// The task behind a pidfd, as the kernel reports it for that very task
/// (no lookup by number). Fails for anything that is not a pidfd of a live
/// task (ESRCH once it has exited).
pub fn pidfd_info(pidfd: BorrowedFd<'_>) -> io::Result<PidfdInfo> {
    let mut raw = RawPidfdInfo {
        mask: PIDFD_INFO_PID | PIDFD_INFO_CREDS,
        ..Default::default()
    };
    // SAFETY: PIDFD_GET_INFO fills at most size_of::<RawPidfdInfo>() bytes.
    if unsafe { libc::ioctl(pidfd.as_raw_fd(), PIDFD_GET_INFO, &mut raw) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if raw.mask & (PIDFD_INFO_PID | PIDFD_INFO_CREDS) != PIDFD_INFO_PID | PIDFD_INFO_CREDS
        || raw.pid == 0
    {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "the task has no pid in our PID namespace",
        ));
    }
    Ok(PidfdInfo {
        pid: raw.pid,
        tgid: raw.tgid,
        euid: raw.euid,
    })
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

    fn own_thread_pidfd() -> OwnedFd {
        morpheus_common::pidfd::own_thread().expect("pidfd_open of this thread")
    }

    #[test]
    fn the_pidfd_info_layout_is_the_kernels() {
        assert_eq!(size_of::<RawPidfdInfo>(), 64);
        assert_eq!(PIDFD_GET_INFO, 0xC040_FF0B);
    }

    #[test]
    fn a_peer_is_this_process_and_owns_only_its_threads() {
        let me = std::process::id();
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let peer = Peer::of(a.as_fd()).unwrap();
        assert_eq!(peer.pid, me);
        // SAFETY: geteuid has no preconditions.
        assert_eq!(peer.uid, unsafe { libc::geteuid() });
        assert!(peer.alive());
        assert!(peer.identity().unwrap() > 0);

        // A thread of ours: its tid.
        let thread = std::thread::spawn(|| {
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::syscall(libc::SYS_gettid) } as u32;
            (own_thread_pidfd(), tid)
        });
        let (pidfd, tid) = thread.join().unwrap();
        // That thread has exited now: refused, whatever its number.
        assert_eq!(
            peer.owns_thread(pidfd.as_fd()),
            Err(Refusal::NotALiveThread)
        );
        let mine = own_thread_pidfd();
        // SAFETY: gettid has no preconditions.
        let my_tid = unsafe { libc::syscall(libc::SYS_gettid) } as u32;
        assert_eq!(peer.owns_thread(mine.as_fd()), Ok(my_tid));
        assert_ne!(tid, 0);

        // A socket is not a pidfd.
        assert_eq!(peer.owns_thread(a.as_fd()), Err(Refusal::NotALiveThread));
    }

    #[test]
    fn a_child_is_another_process_and_its_exit_is_seen() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        // SAFETY: the child only sleeps on a read and exits.
        let child = unsafe { libc::fork() };
        assert!(child >= 0);
        if child == 0 {
            drop(a);
            let mut buf = [0u8; 1];
            // SAFETY: reading one byte from our socket end, then leaving.
            unsafe {
                libc::read(b.as_raw_fd(), buf.as_mut_ptr().cast(), 1);
                libc::_exit(0);
            }
        }
        drop(b);
        // The socket's peer is the child (it holds the other end since the
        // pair was made in this process, so the credentials are ours):
        // check the child through its own pidfd instead.
        let child_fd = morpheus_common::pidfd::open_process(child).expect("pidfd of our child");
        let peer = Peer::of(a.as_fd()).unwrap();
        assert_eq!(
            peer.owns_thread(child_fd.as_fd()),
            Err(Refusal::OtherProcess(child as u32))
        );
        assert!(!pidfd_exited(child_fd.as_fd()));
        drop(a); // the child's read returns; it exits
        let mut status = 0;
        // SAFETY: reaping our child.
        unsafe { libc::waitpid(child, &mut status, 0) };
        assert!(pidfd_exited(child_fd.as_fd()));
        assert!(pidfd_info(child_fd.as_fd()).is_err());
    }
}
