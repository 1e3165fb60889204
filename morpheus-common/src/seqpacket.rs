// SPDX-License-Identifier: GPL-2.0-only
//! The registration socket's plumbing, for both ends (the loader and the
//! runtimes' registration client): `SOCK_SEQPACKET` Unix sockets bound to,
//! or connected to, a path; protocol messages sent and received on them
//! with at most one file descriptor attached (`SCM_RIGHTS`); their timeouts.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use crate::protocol::{MAX_MESSAGE_SIZE, Message, ProtocolError};

/// What one `recvmsg` brought.
#[derive(Debug)]
pub enum Received {
    /// The peer closed the connection.
    Closed,
    /// One packet: the decoded message (or why it is invalid) and the file
    /// descriptor that came with it, if any (always closed when dropped).
    Packet(Result<Message, ProtocolError>, Option<OwnedFd>),
}

// Room for one fd; anything more is truncated by the kernel (MSG_CTRUNC).
const CMSG_SPACE_ONE_FD: usize = 64;

/// The longest socket path, in bytes (`sun_path` less its final NUL).
pub const MAX_PATH_LEN: usize = 107;

/// A new, unconnected `SOCK_SEQPACKET` Unix socket (close-on-exec).
pub fn socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The address of the socket at `path`; `InvalidInput` when no socket can
/// have that path (empty, longer than [`MAX_PATH_LEN`], or with a NUL).
fn address(path: &Path) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_PATH_LEN || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "socket path {} is empty, longer than {MAX_PATH_LEN} bytes or holds a NUL",
                path.display()
            ),
        ));
    }
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    let len = size_of::<libc::sa_family_t>() + bytes.len() + 1;
    Ok((addr, len as libc::socklen_t))
}

/// Connects to the socket at `path`. `timeout` bounds how long the connect
/// waits (a server whose backlog is full), and afterwards each [`send`] and
/// [`recv`] (`None`: for ever).
pub fn connect(path: &Path, timeout: Option<Duration>) -> io::Result<OwnedFd> {
    let (addr, len) = address(path)?;
    let sock = socket()?;
    set_recv_timeout(sock.as_fd(), timeout)?;
    set_send_timeout(sock.as_fd(), timeout)?;
    // SAFETY: a valid address of `len` bytes.
    let rc = unsafe { libc::connect(sock.as_raw_fd(), (&raw const addr).cast(), len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sock)
}

/// A new socket bound to `path`, which must not exist yet. It does not
/// listen: the caller sets the file's owner and mode first, then calls
/// [`listen`], so no client connects before they are right.
pub fn bind(path: &Path) -> io::Result<OwnedFd> {
    let (addr, len) = address(path)?;
    let sock = socket()?;
    // SAFETY: a valid address of `len` bytes.
    if unsafe { libc::bind(sock.as_raw_fd(), (&raw const addr).cast(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sock)
}

/// Lets a bound socket accept connections, `backlog` of them pending.
pub fn listen(sock: BorrowedFd<'_>, backlog: u32) -> io::Result<()> {
    let backlog = backlog.min(libc::c_int::MAX as u32) as libc::c_int;
    // SAFETY: listen(2) on a descriptor we borrow.
    if unsafe { libc::listen(sock.as_raw_fd(), backlog) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Accepts one pending connection (close-on-exec); waits for one unless
/// the listening socket is non-blocking.
pub fn accept(listener: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: accept4 on a listening socket, without the peer's address.
    let fd = unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sends `msg` as one packet, with `fd` attached when given. Waits while
/// the peer's receive queue is full (up to the socket's send timeout).
pub fn send(sock: BorrowedFd<'_>, msg: &Message, fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
    send_packet(sock, &msg.encode(), fd, libc::MSG_NOSIGNAL)
}

/// Sends `bytes` as one packet, as they are, with `fd` attached when given:
/// for tests of how a peer treats packets [`Message::encode`] never makes.
pub fn send_bytes(
    sock: BorrowedFd<'_>,
    bytes: &[u8],
    fd: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    send_packet(sock, bytes, fd, libc::MSG_NOSIGNAL)
}

/// Sends `msg` like [`send`], but never waits: when the peer's receive
/// queue is full (a peer that does not read what it is sent) it fails with
/// `WouldBlock`. A server replies this way, so that no client can stall it.
pub fn try_send(sock: BorrowedFd<'_>, msg: &Message, fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
    send_packet(
        sock,
        &msg.encode(),
        fd,
        libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
    )
}

/// How long [`recv`] waits for a packet before it fails with `WouldBlock`
/// (`None`: for ever).
pub fn set_recv_timeout(sock: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<()> {
    set_timeout(sock, libc::SO_RCVTIMEO, timeout)
}

/// How long [`send`] waits for room in the peer's receive queue before it
/// fails with `WouldBlock` (`None`: for ever).
pub fn set_send_timeout(sock: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<()> {
    set_timeout(sock, libc::SO_SNDTIMEO, timeout)
}

fn set_timeout(
    sock: BorrowedFd<'_>,
    opt: libc::c_int,
    timeout: Option<Duration>,
) -> io::Result<()> {
    // A zero timeval means no timeout; a timeout under a microsecond is
    // one microsecond.
    let t = timeout.map_or(Duration::ZERO, |t| t.max(Duration::from_micros(1)));
    let tv = libc::timeval {
        tv_sec: t.as_secs() as _,
        tv_usec: t.subsec_micros() as _,
    };
    // SAFETY: a valid timeval for a socket timeout option.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&raw const tv).cast(),
            size_of::<libc::timeval>() as u32,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn send_packet(
    sock: BorrowedFd<'_>,
    bytes: &[u8],
    fd: Option<BorrowedFd<'_>>,
    flags: libc::c_int,
) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let mut cmsg_buf = [0u64; CMSG_SPACE_ONE_FD / 8];
    // SAFETY: msghdr is plain data; every pointer set below outlives the call.
    let mut mh: libc::msghdr = unsafe { std::mem::zeroed() };
    mh.msg_iov = &mut iov;
    mh.msg_iovlen = 1;
    if let Some(fd) = fd {
        let raw: RawFd = fd.as_raw_fd();
        // SAFETY: the buffer is large and aligned enough for one SCM_RIGHTS
        // header plus one int; CMSG_* compute offsets inside it.
        unsafe {
            let space = libc::CMSG_SPACE(size_of::<RawFd>() as u32) as usize;
            mh.msg_control = cmsg_buf.as_mut_ptr().cast();
            mh.msg_controllen = space as _;
            let c = libc::CMSG_FIRSTHDR(&mh);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), raw);
        }
    }
    loop {
        // SAFETY: mh points at live buffers.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &mh, flags) };
        if n >= 0 {
            return if n as usize == bytes.len() {
                Ok(())
            } else {
                Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "short packet write",
                ))
            };
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Receives one packet. File descriptors beyond the first, and any fd
/// attached to an oversized or truncated packet, are closed and reported as
/// an invalid message.
pub fn recv(sock: BorrowedFd<'_>) -> io::Result<Received> {
    let mut buf = [0u8; MAX_MESSAGE_SIZE + 1];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut cmsg_buf = [0u64; CMSG_SPACE_ONE_FD / 8];
    // SAFETY: as in `send`.
    let mut mh: libc::msghdr = unsafe { std::mem::zeroed() };
    mh.msg_iov = &mut iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cmsg_buf.as_mut_ptr().cast();
    mh.msg_controllen = std::mem::size_of_val(&cmsg_buf) as _;

    let n = loop {
        // SAFETY: mh points at live buffers.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut mh, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    };

    // Take ownership of every fd received, so none can leak.
    let mut fds: Vec<OwnedFd> = Vec::new();
    // SAFETY: walking the control buffer the kernel filled in.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&mh);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<RawFd>();
                let count =
                    ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / size_of::<RawFd>();
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            c = libc::CMSG_NXTHDR(&mh, c);
        }
    }

    if n == 0 && fds.is_empty() {
        return Ok(Received::Closed);
    }
    if mh.msg_flags & libc::MSG_CTRUNC != 0 || fds.len() > 1 {
        return Ok(Received::Packet(
            Err(ProtocolError::TooManyFds { count: fds.len() }),
            None,
        ));
    }
    if mh.msg_flags & libc::MSG_TRUNC != 0 {
        return Ok(Received::Packet(
            Err(ProtocolError::TooLong { len: n }),
            None,
        ));
    }
    Ok(Received::Packet(Message::decode(&buf[..n]), fds.pop()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RuntimeKind, Status};
    use std::os::unix::net::UnixDatagram;

    fn seqpacket_pair() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: socketpair fills two fds on success.
        let rc = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        assert_eq!(rc, 0);
        // SAFETY: fresh fds we own.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    /// A fresh directory for sockets, removed with what is in it on drop.
    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let d = std::env::temp_dir()
                .join(format!("morpheus-seqpacket-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir(&d).unwrap();
            TempDir(d)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_client_connects_to_a_bound_path_and_both_ends_talk() {
        let dir = TempDir::new("talk");
        let path = dir.0.join("s.sock");
        let listener = bind(&path).unwrap();
        // Bound but not yet listening: connections are refused.
        let refused = connect(&path, None).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
        listen(listener.as_fd(), 4).unwrap();
        let client = connect(&path, Some(Duration::from_secs(5))).unwrap();
        let server = accept(listener.as_fd()).unwrap();
        send(client.as_fd(), &error_message(), None).unwrap();
        assert!(matches!(
            recv(server.as_fd()).unwrap(),
            Received::Packet(Ok(m), None) if m == error_message()
        ));
        send(server.as_fd(), &error_message(), None).unwrap();
        assert!(matches!(
            recv(client.as_fd()).unwrap(),
            Received::Packet(Ok(_), None)
        ));
        // The path is taken while the socket file exists.
        assert_eq!(bind(&path).unwrap_err().kind(), io::ErrorKind::AddrInUse);
        // The timeout given to connect bounds the client's receives.
        let start = std::time::Instant::now();
        let client = connect(&path, Some(Duration::from_millis(50))).unwrap();
        let err = recv(client.as_fd()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn paths_no_socket_can_have_are_refused_before_any_syscall() {
        let dir = TempDir::new("paths");
        let missing = dir.0.join("nobody-here.sock");
        assert_eq!(
            connect(&missing, None).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        let long = Path::new("/").join("x".repeat(MAX_PATH_LEN));
        let nul = Path::new(std::ffi::OsStr::from_bytes(b"/tmp/a\0b"));
        for bad in [Path::new(""), long.as_path(), nul] {
            for err in [connect(bad, None).unwrap_err(), bind(bad).unwrap_err()] {
                assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{}", bad.display());
                assert!(err.to_string().contains("socket path"), "{err}");
            }
        }
        // The longest path a socket can have is still an address, with
        // its NUL counted in the length.
        let longest = Path::new("/").join("x".repeat(MAX_PATH_LEN - 1));
        let (addr, len) = address(&longest).unwrap();
        assert_eq!(
            len as usize,
            size_of::<libc::sa_family_t>() + MAX_PATH_LEN + 1
        );
        assert_eq!(addr.sun_path[MAX_PATH_LEN], 0);
    }

    #[test]
    fn message_and_fd_travel_together() {
        let (a, b) = seqpacket_pair();
        let (probe, _keep) = UnixDatagram::pair().unwrap();
        let msg = Message::Hello {
            runtime_kind: RuntimeKind::Tokio,
        };
        send(a.as_fd(), &msg, Some(probe.as_fd())).unwrap();
        match recv(b.as_fd()).unwrap() {
            Received::Packet(Ok(m), Some(fd)) => {
                assert_eq!(m, msg);
                assert!(fd.as_raw_fd() >= 0);
            }
            other => panic!("unexpected {other:?}"),
        }
        send(a.as_fd(), &error_message(), None).unwrap();
        assert!(matches!(
            recv(b.as_fd()).unwrap(),
            Received::Packet(Ok(_), None)
        ));
        drop(a);
        assert!(matches!(recv(b.as_fd()).unwrap(), Received::Closed));
    }

    #[test]
    fn oversized_packets_are_rejected() {
        let (a, b) = seqpacket_pair();
        send_bytes(a.as_fd(), &[0u8; MAX_MESSAGE_SIZE + 40], None).unwrap();
        assert!(matches!(
            recv(b.as_fd()).unwrap(),
            Received::Packet(Err(ProtocolError::TooLong { .. }), None)
        ));
    }

    /// A small valid message.
    fn error_message() -> Message {
        Message::Error {
            status: Status::Internal,
        }
    }

    #[test]
    fn try_send_fails_instead_of_waiting_for_a_peer_that_does_not_read() {
        let (a, b) = seqpacket_pair();
        let msg = error_message();
        // The queue holds a bounded number of packets (net.unix.max_dgram_qlen);
        // past it, try_send fails at once where send would wait for ever.
        let sent = (0..10_000)
            .take_while(|_| try_send(a.as_fd(), &msg, None).is_ok())
            .count();
        assert!((1..10_000).contains(&sent), "{sent} packets queued");
        let err = try_send(a.as_fd(), &msg, None).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        // Once the peer reads, there is room again.
        assert!(matches!(
            recv(b.as_fd()).unwrap(),
            Received::Packet(Ok(_), None)
        ));
        try_send(a.as_fd(), &msg, None).unwrap();
    }

    #[test]
    fn timeouts_bound_the_waits_and_none_lifts_them() {
        let (a, b) = seqpacket_pair();
        set_recv_timeout(b.as_fd(), Some(Duration::from_millis(50))).unwrap();
        let start = std::time::Instant::now();
        let err = recv(b.as_fd()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(start.elapsed() >= Duration::from_millis(40));
        // Without a timeout, recv waits for the packet sent later.
        set_recv_timeout(b.as_fd(), None).unwrap();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            send(a.as_fd(), &error_message(), None).unwrap();
            a
        });
        assert!(matches!(
            recv(b.as_fd()).unwrap(),
            Received::Packet(Ok(_), None)
        ));
        let a = sender.join().unwrap();
        // A send timeout turns a wait for a full queue into an error.
        set_send_timeout(a.as_fd(), Some(Duration::from_millis(20))).unwrap();
        let err = (0..10_000)
            .find_map(|_| send(a.as_fd(), &error_message(), None).err())
            .expect("the queue fills");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }
}
