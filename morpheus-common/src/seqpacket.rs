// SPDX-License-Identifier: GPL-2.0-only
//! Sending and receiving protocol messages on a `SOCK_SEQPACKET` Unix
//! socket, with at most one file descriptor attached (`SCM_RIGHTS`). Used by
//! both ends: the loader and the runtimes' registration client.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

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

/// Sends `msg` as one packet, with `fd` attached when given.
pub fn send(sock: BorrowedFd<'_>, msg: &Message, fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
    let bytes = msg.encode();
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
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &mh, libc::MSG_NOSIGNAL) };
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
    use std::os::fd::AsFd;
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
        send(
            a.as_fd(),
            &Message::Error {
                status: Status::Internal,
            },
            None,
        )
        .unwrap();
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
        let big = [0u8; MAX_MESSAGE_SIZE + 40];
        // SAFETY: plain send on a socket we own.
        let n = unsafe { libc::send(a.as_raw_fd(), big.as_ptr().cast(), big.len(), 0) };
        assert_eq!(n as usize, big.len());
        assert!(matches!(
            recv(b.as_fd()).unwrap(),
            Received::Packet(Err(ProtocolError::TooLong { .. }), None)
        ));
    }
}
