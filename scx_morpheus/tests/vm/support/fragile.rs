// SPDX-License-Identifier: GPL-2.0-only
//! Registration clients that expect the loader to die at any moment: a
//! session whose every failure is a `None`, and threads that churn
//! registrations through such sessions.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::{addr_of, addr_of_mut};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use morpheus_common::protocol::Message;
use morpheus_common::seqpacket::{self, Received};
use morpheus_common::{RuntimeKind, Scb, Status};

use super::client::own_thread_pidfd;
use super::spin_us;

/// One request/reply exchange; `None` if the loader went away meanwhile.
pub fn exchange(
    sock: &OwnedFd,
    msg: &Message,
    fd: Option<BorrowedFd<'_>>,
) -> Option<(Message, Option<OwnedFd>)> {
    seqpacket::send(sock.as_fd(), msg, fd).ok()?;
    match seqpacket::recv(sock.as_fd()).ok()? {
        Received::Packet(Ok(m), fd) => Some((m, fd)),
        _ => None,
    }
}

/// A registration session that expects the loader to die at any moment:
/// every failure is a `None`, never a panic. (The support client panics on
/// a lost connection, which is right for tests where the loader lives.)
pub struct Fragile {
    pub sock: OwnedFd,
    /// One exchange at a time when threads share the session.
    pub exchange: Mutex<()>,
    pub mem: morpheus_common::shm::SharedMapping,
    pub max_workers: u32,
}
unsafe impl Sync for Fragile {}

impl Fragile {
    /// Connects, says HELLO and maps the SCB array.
    pub fn open(path: &str) -> Option<Fragile> {
        let sock = crate::support::client::connect(path.as_ref()).ok()?;
        let hello = Message::Hello {
            runtime_kind: RuntimeKind::Generic,
        };
        let (reply, fd) = exchange(&sock, &hello, None)?;
        let Message::HelloReply {
            status: Status::Ok,
            max_workers,
            ..
        } = reply
        else {
            return None;
        };
        let fd = fd?;
        let mem = crate::support::client::map_scb_array(&fd, max_workers).ok()?;
        Some(Fragile {
            sock,
            exchange: Mutex::new(()),
            mem,
            max_workers,
        })
    }

    /// Registers the calling thread: (slot, generation).
    pub fn register(&self, flags: u32) -> Option<(u32, u64)> {
        let pidfd = own_thread_pidfd();
        let msg = Message::Register {
            flags,
            runtime_kind: RuntimeKind::Generic,
        };
        let _one = self.exchange.lock().unwrap_or_else(|e| e.into_inner());
        match exchange(&self.sock, &msg, Some(pidfd.as_fd()))?.0 {
            Message::RegisterReply {
                status: Status::Ok,
                slot,
                generation,
            } if slot < self.max_workers => Some((slot, generation)),
            _ => None,
        }
    }

    pub fn unregister(&self, slot: u32, generation: u64) -> bool {
        let msg = Message::Unregister { slot, generation };
        let _one = self.exchange.lock().unwrap_or_else(|e| e.into_inner());
        matches!(
            exchange(&self.sock, &msg, None),
            Some((Message::UnregisterReply { status: Status::Ok }, _))
        )
    }

    /// Whether the loader closed the connection (does not block).
    pub fn closed(&self) -> bool {
        let mut b = 0u8;
        // SAFETY: a one-byte peek into a local buffer.
        let n = unsafe {
            libc::recv(
                std::os::fd::AsRawFd::as_raw_fd(&self.sock),
                (&mut b as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        n == 0
            || (n < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::WouldBlock)
    }

    pub fn scb(&self, slot: u32) -> *mut Scb {
        assert!(slot < self.max_workers);
        // SAFETY: in bounds of the mapping.
        unsafe { self.mem.as_ptr().cast::<Scb>().add(slot as usize) }
    }

    /// The hint sequence of `slot` (the signal word's hint bits).
    pub fn hint_seq(&self, slot: u32) -> u64 {
        // SAFETY: an aligned field of a mapped SCB.
        let word = unsafe { std::ptr::read_volatile(addr_of!((*self.scb(slot)).k.hint_seq)) };
        word & morpheus_common::abi::MORPHEUS_HINT_SEQ_MASK
    }

    /// The catch-ups counted in `slot`'s signal word (abi.h).
    pub fn catch_ups(&self, slot: u32) -> u64 {
        use morpheus_common::abi::{MORPHEUS_CATCH_UP_MASK, MORPHEUS_CATCH_UP_SHIFT};
        // SAFETY: as above.
        let word = unsafe { std::ptr::read_volatile(addr_of!((*self.scb(slot)).k.hint_seq)) };
        (word >> MORPHEUS_CATCH_UP_SHIFT) & u64::from(MORPHEUS_CATCH_UP_MASK)
    }

    pub fn escalations(&self, slot: u32) -> u32 {
        // SAFETY: as above.
        unsafe { std::ptr::read_volatile(addr_of!((*self.scb(slot)).k.escalations)) }
    }

    pub fn kernel_flags(&self, slot: u32) -> u32 {
        // SAFETY: as above.
        unsafe { std::ptr::read_volatile(addr_of!((*self.scb(slot)).k.flags)) }
    }

    pub fn state(&self, slot: u32) -> u16 {
        // SAFETY: as above.
        unsafe { std::ptr::read_volatile(addr_of!((*self.scb(slot)).k.state)) }
    }

    /// Answers the hints up to `seq`, as the runtime does at a checkpoint.
    pub fn ack(&self, slot: u32, seq: u64) {
        // SAFETY: the user line of our own slot is ours to write.
        unsafe { std::ptr::write_volatile(addr_of_mut!((*self.scb(slot)).u.ack_seq), seq) };
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
    }

    /// A checkpoint of a well-behaved worker: if `slot` has a hint newer
    /// than `acked`, acknowledges it (and records it in `acked`) and gives
    /// the CPU away; whether it did.
    pub fn answer_hint(&self, slot: u32, acked: &mut u64) -> bool {
        let seq = self.hint_seq(slot);
        if seq == *acked {
            return false;
        }
        *acked = seq;
        self.ack(slot, seq);
        // SAFETY: sched_yield has no preconditions.
        unsafe { libc::sched_yield() };
        true
    }

    /// Enters (1) or leaves (0) a critical section, as the runtime does.
    pub fn set_critical_depth(&self, slot: u32, depth: u32) {
        // SAFETY: the user line of our own slot is ours to write.
        unsafe {
            std::ptr::write_volatile(addr_of_mut!((*self.scb(slot)).u.critical_depth), depth)
        };
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
    }
}

/// Threads that register and unregister themselves in a loop on raw
/// sessions, reconnecting whenever the loader goes away.
pub struct Churn {
    pub stop: Arc<AtomicBool>,
    pub sessions: Arc<AtomicU64>,
    pub registrations: Arc<AtomicU64>,
    pub threads: Vec<std::thread::JoinHandle<()>>,
}

impl Churn {
    pub fn start(n: usize, path: &str) -> Churn {
        let stop = Arc::new(AtomicBool::new(false));
        let sessions = Arc::new(AtomicU64::new(0));
        let registrations = Arc::new(AtomicU64::new(0));
        let threads = (0..n)
            .map(|_| {
                let (stop, sessions, registrations) =
                    (stop.clone(), sessions.clone(), registrations.clone());
                let path = path.to_string();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let Some(s) = Fragile::open(&path) else {
                            std::thread::sleep(Duration::from_millis(20));
                            continue;
                        };
                        sessions.fetch_add(1, Ordering::Relaxed);
                        while !stop.load(Ordering::Relaxed) {
                            let Some((slot, generation)) = s.register(0) else {
                                break;
                            };
                            registrations.fetch_add(1, Ordering::Relaxed);
                            spin_us(300);
                            if !s.unregister(slot, generation) {
                                break;
                            }
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    }
                })
            })
            .collect();
        Churn {
            stop,
            sessions,
            registrations,
            threads,
        }
    }

    pub fn sessions(&self) -> u64 {
        self.sessions.load(Ordering::Relaxed)
    }

    pub fn registrations(&self) -> u64 {
        self.registrations.load(Ordering::Relaxed)
    }
}

impl Drop for Churn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.threads.drain(..).for_each(|t| drop(t.join()));
    }
}
