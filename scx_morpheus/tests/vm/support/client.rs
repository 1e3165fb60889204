// SPDX-License-Identifier: GPL-2.0-only
//! A minimal registration client speaking the real protocol to the real
//! loader, with exact control over acknowledgements and critical sections.
//! (morpheus-runtime has the production client; these tests pin down the
//! scheduler's side of the contract.)

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::ptr::{addr_of, addr_of_mut};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use morpheus_common::openmetrics::Scrape;
use morpheus_common::protocol::Message;
use morpheus_common::seqpacket::{self, Received};
use morpheus_common::shm::SharedMapping;
use morpheus_common::{RuntimeKind, SCB_SIZE, Scb, Status};

/// A session with the loader: the connection and the mapped SCB array.
pub struct Session {
    sock: OwnedFd,
    /// One request/reply exchange at a time (threads share the session).
    exchange: std::sync::Mutex<()>,
    mem: SharedMapping,
    pub max_workers: u32,
    pub grace_ns: u64,
    pub flags: u32,
}

/// Connects a SOCK_SEQPACKET socket to `path`.
pub fn connect(path: &Path) -> std::io::Result<OwnedFd> {
    seqpacket::connect(path, None)
}

/// Sends `msg` (with `fd`) and returns the reply and any fd with it.
pub fn request(sock: &OwnedFd, msg: &Message, fd: Option<&OwnedFd>) -> (Message, Option<OwnedFd>) {
    seqpacket::send(sock.as_fd(), msg, fd.map(|f| f.as_fd())).expect("send");
    match seqpacket::recv(sock.as_fd()).expect("recv") {
        Received::Packet(Ok(m), fd) => (m, fd),
        other => panic!("unexpected reply {other:?}"),
    }
}

/// A pidfd of the calling thread.
pub fn own_thread_pidfd() -> OwnedFd {
    morpheus_common::pidfd::own_thread().expect("pidfd_open of this thread")
}

impl Session {
    /// HELLO: opens a session and maps the SCB array.
    pub fn open(path: &Path) -> Session {
        let sock = connect(path).expect("connect to the loader socket");
        let (reply, fd) = request(
            &sock,
            &Message::Hello {
                runtime_kind: RuntimeKind::Generic,
            },
            None,
        );
        let Message::HelloReply {
            status: Status::Ok,
            max_workers,
            scb_size,
            flags,
            grace_ns,
        } = reply
        else {
            panic!("hello refused: {reply:?}");
        };
        assert_eq!(scb_size as usize, SCB_SIZE);
        let fd = fd.expect("the SCB array fd comes with the reply");
        let mem = map_scb_array(&fd, max_workers).unwrap_or_else(|e| panic!("mmap SCB array: {e}"));
        Session {
            sock,
            exchange: Default::default(),
            mem,
            max_workers,
            grace_ns,
            flags,
        }
    }

    /// REGISTER the calling thread; returns (slot, generation) or the status.
    pub fn register(&self, flags: u32) -> Result<(u32, u64), Status> {
        let pidfd = own_thread_pidfd();
        let _one_at_a_time = self.exchange.lock().unwrap_or_else(|e| e.into_inner());
        let (reply, _) = request(
            &self.sock,
            &Message::Register {
                flags,
                runtime_kind: RuntimeKind::Generic,
            },
            Some(&pidfd),
        );
        match reply {
            Message::RegisterReply {
                status: Status::Ok,
                slot,
                generation,
            } => Ok((slot, generation)),
            Message::RegisterReply { status, .. } | Message::Error { status } => Err(status),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// UNREGISTER a slot.
    pub fn unregister(&self, slot: u32, generation: u64) -> Status {
        let _one_at_a_time = self.exchange.lock().unwrap_or_else(|e| e.into_inner());
        match request(&self.sock, &Message::Unregister { slot, generation }, None).0 {
            Message::UnregisterReply { status } | Message::Error { status } => status,
            other => panic!("unexpected {other:?}"),
        }
    }

    /// The raw socket (for hostile-input tests).
    pub fn socket(&self) -> &OwnedFd {
        &self.sock
    }

    /// A handle on the SCB of `slot`.
    pub fn scb(&self, slot: u32) -> ScbRef<'_> {
        assert!(slot < self.max_workers);
        // SAFETY: in bounds of our mapping.
        ScbRef {
            scb: unsafe { &*self.mem.as_ptr().cast::<Scb>().add(slot as usize) },
        }
    }
}

/// Atomic views of one SCB's fields, as a runtime would use them.
pub struct ScbRef<'a> {
    scb: &'a Scb,
}

impl ScbRef<'_> {
    fn u64_at(&self, p: *const u64) -> &AtomicU64 {
        // SAFETY: an aligned u64 field of the shared SCB.
        unsafe { AtomicU64::from_ptr(p as *mut u64) }
    }
    fn u32_at(&self, p: *const u32) -> &AtomicU32 {
        // SAFETY: an aligned u32 field of the shared SCB.
        unsafe { AtomicU32::from_ptr(p as *mut u32) }
    }
    pub fn magic(&self) -> u32 {
        self.u32_at(addr_of!(self.scb.k.magic))
            .load(Ordering::Acquire)
    }
    pub fn state(&self) -> u16 {
        // SAFETY: aligned field of the shared SCB.
        unsafe { std::ptr::read_volatile(addr_of!(self.scb.k.state)) }
    }
    pub fn generation(&self) -> u64 {
        self.u64_at(addr_of!(self.scb.k.generation))
            .load(Ordering::Acquire)
    }
    /// The hint sequence: the signal word's hint bits (abi.h), what a
    /// worker acknowledges.
    pub fn hint_seq(&self) -> u64 {
        self.u64_at(addr_of!(self.scb.k.hint_seq))
            .load(Ordering::Relaxed)
            & morpheus_common::abi::MORPHEUS_HINT_SEQ_MASK
    }
    pub fn escalations(&self) -> u32 {
        self.u32_at(addr_of!(self.scb.k.escalations))
            .load(Ordering::Relaxed)
    }
    pub fn hints_answered(&self) -> u64 {
        self.u64_at(addr_of!(self.scb.k.hints_answered))
            .load(Ordering::Relaxed)
    }
    pub fn flags(&self) -> u32 {
        self.u32_at(addr_of!(self.scb.k.flags))
            .load(Ordering::Relaxed)
    }
    pub fn pressure(&self) -> u32 {
        self.u32_at(addr_of!(self.scb.k.pressure))
            .load(Ordering::Relaxed)
    }
    pub fn ack(&self, seq: u64) {
        self.u64_at(addr_of!(self.scb.u.ack_seq))
            .store(seq, Ordering::Release);
    }
    pub fn set_critical_depth(&self, depth: u32) {
        self.u32_at(addr_of!(self.scb.u.critical_depth))
            .store(depth, Ordering::Relaxed);
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
    }
    /// Overwrites the hint sequence in the kernel line (hostile worker):
    /// the mapping is writable as a whole.
    pub fn forge_hint_seq(&self, seq: u64) {
        self.u64_at(addr_of!(self.scb.k.hint_seq))
            .store(seq, Ordering::Relaxed);
    }
    /// Overwrites the kernel line's identity (hostile worker): a stale
    /// generation and the state DEAD.
    pub fn forge_identity(&self) {
        self.u64_at(addr_of!(self.scb.k.generation))
            .store(u64::MAX, Ordering::Relaxed);
        // SAFETY: aligned field of the shared SCB.
        unsafe {
            std::ptr::write_volatile(
                addr_of!(self.scb.k.state) as *mut u16,
                morpheus_common::WorkerState::Dead as u16,
            )
        }
    }
    /// Writes arbitrary bytes over the whole user line (hostile worker).
    pub fn scribble_user_line(&self, byte: u8) {
        // SAFETY: the user line is ours to write.
        unsafe {
            std::ptr::write_bytes(
                addr_of_mut!((*(self.scb as *const Scb as *mut Scb)).u),
                byte,
                1,
            )
        }
    }
}

/// The loader's OpenMetrics text, from `GET /metrics` on `addr`.
pub fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to --metrics-addr");
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

/// One consistent snapshot of the loader's figures from `addr`, by name
/// without the `scx_morpheus_` prefix (and counters without `_total`).
pub fn scraped(addr: &str) -> Scrape {
    Scrape::parse(&scrape(addr), "scx_morpheus_")
}

/// Every counter and gauge of one snapshot ([`scraped`]).
pub fn metrics(addr: &str) -> std::collections::HashMap<String, u64> {
    let s = scraped(addr);
    s.counters.into_iter().chain(s.gauges).collect()
}

/// Fetches the loader's OpenMetrics text and returns `name`'s value.
pub fn metric(addr: &str, name: &str) -> u64 {
    let body = scrape(addr);
    Scrape::parse(&body, "scx_morpheus_")
        .value(name)
        .unwrap_or_else(|| panic!("metric {name} not found in:\n{body}"))
}

/// Maps the SCB array `fd` the loader sent with HELLO_REPLY (`max_workers`
/// slots) read-write.
pub fn map_scb_array(fd: &OwnedFd, max_workers: u32) -> std::io::Result<SharedMapping> {
    SharedMapping::new(fd.as_fd(), max_workers as usize * SCB_SIZE)
}
