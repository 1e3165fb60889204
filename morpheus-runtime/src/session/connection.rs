// SPDX-License-Identifier: GPL-2.0-only
//! The connection to scx_morpheus's loader: one `SOCK_SEQPACKET` socket,
//! speaking `morpheus_common::protocol`.
//!
//! `Hello` maps the process's SCB array (fd received with `SCM_RIGHTS`);
//! `Register` passes a pidfd of the worker thread and returns its slot;
//! `Unregister` releases it. Requests are serialized by the caller (the
//! [`Session`](super::Session) holds the connection under a mutex). Mappings are never unmapped:
//! a worker may still point into one after the scheduler went away, and a
//! handful of 32 KiB arrays over many scheduler restarts is cheaper than
//! tracking every reader.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::Duration;

use morpheus_common::pidfd;
use morpheus_common::protocol::{Message, ProtocolError};
use morpheus_common::seqpacket::{self, Received};
use morpheus_common::shm::SharedMapping;
use morpheus_common::{
    ABI_MAGIC, ABI_VERSION, MAX_WORKERS_PER_PROCESS, RuntimeKind, SCB_SIZE, Scb, Status,
};

use crate::scb::ScbRef;

/// Why a registration request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ClientError {
    /// No scheduler is listening (socket missing or refusing connections).
    NoScheduler(String),
    /// The connection broke (the scheduler stopped or restarted).
    Lost(String),
    /// The loader answered with a non-OK status.
    Refused(Status),
    /// The loader speaks another ABI version.
    Version(String),
    /// The loader's reply did not make sense.
    BadReply(String),
    /// A local system call failed (e.g. pidfd_open on an old kernel).
    System(String),
}

impl ClientError {
    /// Whether the connection must be dropped and re-established.
    pub(crate) fn drops_connection(&self) -> bool {
        matches!(
            self,
            ClientError::NoScheduler(_)
                | ClientError::Lost(_)
                | ClientError::Version(_)
                | ClientError::BadReply(_)
        )
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::NoScheduler(e) => write!(
                f,
                "scx_morpheus is not running ({e}); using the local budget only until it starts"
            ),
            ClientError::Lost(e) => write!(
                f,
                "lost the connection to scx_morpheus ({e}); using the local budget only until it is back"
            ),
            ClientError::Refused(s) => write!(
                f,
                "scx_morpheus refused the request: {} ({})",
                s.as_str(),
                s.explain()
            ),
            ClientError::Version(e) => write!(
                f,
                "scx_morpheus speaks another ABI version ({e}); upgrade the runtime and the scheduler together"
            ),
            ClientError::BadReply(e) => write!(f, "scx_morpheus sent an unusable reply: {e}"),
            ClientError::System(e) => write!(f, "{e}"),
        }
    }
}

fn errno_text(what: &str) -> String {
    format!("{what}: {}", io::Error::last_os_error())
}

/// A mapped SCB array (never unmapped; see the module docs).
#[derive(Debug)]
pub(crate) struct Mapping {
    base: *mut u8,
    len: usize,
}

// SAFETY: the mapping is shared memory accessed only through atomics.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

/// An open session with the loader.
#[derive(Debug)]
pub(crate) struct Connection {
    fd: OwnedFd,
    map: Mapping,
    /// Slots in the SCB array.
    pub(crate) max_workers: u32,
    /// The scheduler's grace period.
    pub(crate) grace_ns: u64,
    /// `MORPHEUS_SCBK_*` flags for every worker.
    #[allow(dead_code)]
    pub(crate) flags: u32,
}

fn send(fd: RawFd, msg: &Message, pass_fd: Option<RawFd>) -> Result<(), ClientError> {
    // SAFETY: both fds are open for the duration of the call.
    let (sock, pass) = unsafe {
        (
            BorrowedFd::borrow_raw(fd),
            pass_fd.map(|p| BorrowedFd::borrow_raw(p)),
        )
    };
    seqpacket::send(sock, msg, pass).map_err(|e| ClientError::Lost(format!("send: {e}")))
}

fn recv(fd: RawFd) -> Result<(Message, Option<OwnedFd>), ClientError> {
    // SAFETY: the fd is open for the duration of the call.
    let sock = unsafe { BorrowedFd::borrow_raw(fd) };
    match seqpacket::recv(sock).map_err(|e| ClientError::Lost(format!("receive: {e}")))? {
        Received::Closed => Err(ClientError::Lost(
            "the scheduler closed the connection".into(),
        )),
        Received::Packet(Ok(msg), fd) => Ok((msg, fd)),
        Received::Packet(Err(ProtocolError::BadVersion { version }), _) => {
            Err(ClientError::Version(format!(
                "it sent version {version}, this runtime speaks {ABI_VERSION}"
            )))
        }
        Received::Packet(Err(e), _) => Err(ClientError::BadReply(e.to_string())),
    }
}

/// The server behind the socket must be the real loader: a process of
/// root (the loader needs CAP_BPF and CAP_SYS_ADMIN) or of our own user (who
/// can already do anything to us). Anyone else may have bound the path (a
/// socket directory others can write, a stale path), and nothing it sends
/// is used: no SCB array is mapped, no thread is passed to it.
fn check_server(sock: BorrowedFd<'_>, path: &Path) -> Result<(), ClientError> {
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
            (&raw mut cred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(ClientError::System(errno_text("SO_PEERCRED of the loader")));
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if cred.uid == 0 || cred.uid == me {
        return Ok(());
    }
    Err(ClientError::NoScheduler(format!(
        "the server at {} runs as uid {}, neither root nor this process's user: \
         not scx_morpheus, ignored (check who can write the socket's directory)",
        path.display(),
        cred.uid
    )))
}

fn status_error(status: Status) -> ClientError {
    if status == Status::BadVersion {
        ClientError::Version(format!("the loader refused ABI version {ABI_VERSION}"))
    } else {
        ClientError::Refused(status)
    }
}

impl Connection {
    /// Connects to the loader at `path` and opens a session (`Hello`).
    pub(crate) fn open(
        path: &Path,
        kind: RuntimeKind,
        timeout: Duration,
    ) -> Result<Connection, ClientError> {
        let fd = seqpacket::connect(path, Some(timeout)).map_err(|e| {
            let text = format!("{}: {e}", path.display());
            match e.raw_os_error() {
                Some(libc::ENOENT | libc::ECONNREFUSED | libc::ENOTDIR) => {
                    ClientError::NoScheduler(text)
                }
                _ => ClientError::System(format!("connect to {text}")),
            }
        })?;
        let raw = fd.as_raw_fd();
        check_server(fd.as_fd(), path)?;
        send(raw, &Message::Hello { runtime_kind: kind }, None)?;
        let (reply, map_fd) = recv(raw)?;
        let (max_workers, scb_size, flags, grace_ns) = match reply {
            Message::HelloReply {
                status: Status::Ok,
                max_workers,
                scb_size,
                flags,
                grace_ns,
            } => (max_workers, scb_size, flags, grace_ns),
            Message::HelloReply { status, .. } | Message::Error { status } => {
                return Err(status_error(status));
            }
            other => {
                return Err(ClientError::BadReply(format!(
                    "expected a hello reply, got {other:?}"
                )));
            }
        };
        if scb_size as usize != SCB_SIZE {
            return Err(ClientError::Version(format!(
                "SCB size {scb_size}, expected {SCB_SIZE}"
            )));
        }
        if max_workers == 0 || max_workers > MAX_WORKERS_PER_PROCESS {
            return Err(ClientError::BadReply(format!(
                "max_workers {max_workers} out of range"
            )));
        }
        let map_fd = map_fd
            .ok_or_else(|| ClientError::BadReply("no SCB array fd with the hello reply".into()))?;
        let mapping = SharedMapping::new(map_fd.as_fd(), max_workers as usize * SCB_SIZE)
            .map_err(|e| ClientError::System(format!("mmap of the SCB array: {e}")))?;
        // Kept for good (see the module docs).
        let (base, len) = mapping.leak();
        Ok(Connection {
            fd,
            map: Mapping { base, len },
            max_workers,
            grace_ns,
            flags,
        })
    }

    /// The SCB of `slot` (checked against `max_workers` by the caller).
    pub(crate) fn scb(&self, slot: u32) -> *mut Scb {
        debug_assert!((slot as usize + 1) * SCB_SIZE <= self.map.len);
        // SAFETY: in bounds of the mapping.
        unsafe { self.map.base.add(slot as usize * SCB_SIZE).cast() }
    }

    /// Registers thread `tid` of this process; returns `(slot, generation)`.
    pub(crate) fn register(
        &self,
        tid: i32,
        flags: u32,
        kind: RuntimeKind,
    ) -> Result<(u32, u64), ClientError> {
        let pidfd = pidfd::open_thread(tid).map_err(|e| {
            ClientError::System(if e.raw_os_error() == Some(libc::EINVAL) {
                format!(
                    "pidfd_open(PIDFD_THREAD) failed ({e}): kernel registration needs Linux 6.9 or later"
                )
            } else {
                format!("pidfd_open of thread {tid}: {e}")
            })
        })?;
        send(
            self.fd.as_raw_fd(),
            &Message::Register {
                flags,
                runtime_kind: kind,
            },
            Some(pidfd.as_raw_fd()),
        )?;
        match recv(self.fd.as_raw_fd())?.0 {
            Message::RegisterReply {
                status: Status::Ok,
                slot,
                generation,
            } => {
                if slot >= self.max_workers {
                    return Err(ClientError::BadReply(format!(
                        "slot {slot} >= max_workers {}",
                        self.max_workers
                    )));
                }
                // SAFETY: in bounds of a mapping that is never unmapped.
                let scb = unsafe { ScbRef::new(self.scb(slot)) };
                let magic = scb.magic().load(std::sync::atomic::Ordering::Acquire);
                if magic != ABI_MAGIC || u32::from(scb.abi_version()) != ABI_VERSION {
                    return Err(ClientError::Version(format!(
                        "slot {slot} has magic {magic:#x} version {}",
                        scb.abi_version()
                    )));
                }
                Ok((slot, generation))
            }
            Message::RegisterReply { status, .. } | Message::Error { status } => {
                Err(status_error(status))
            }
            other => Err(ClientError::BadReply(format!(
                "expected a register reply, got {other:?}"
            ))),
        }
    }

    /// Releases a slot.
    pub(crate) fn unregister(&self, slot: u32, generation: u64) -> Result<(), ClientError> {
        send(
            self.fd.as_raw_fd(),
            &Message::Unregister { slot, generation },
            None,
        )?;
        match recv(self.fd.as_raw_fd())?.0 {
            Message::UnregisterReply { status: Status::Ok } => Ok(()),
            Message::UnregisterReply { status } | Message::Error { status } => {
                Err(status_error(status))
            }
            other => Err(ClientError::BadReply(format!(
                "expected an unregister reply, got {other:?}"
            ))),
        }
    }

    /// The session socket's descriptor.
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Whether the peer is still there (no hang-up, nothing unsolicited).
    pub(crate) fn is_alive(&self) -> bool {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN | libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        n == 0
    }
}
