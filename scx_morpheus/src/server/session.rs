// SPDX-License-Identifier: GPL-2.0-only
//! One connection's conversation: HELLO opens the process's session,
//! REGISTER and UNREGISTER act on its workers, anything else is answered
//! with an error (and too much of it closes the connection). Dropping a
//! session that was opened closes the connection's hold on its process:
//! after the process's last connection, its workers are released.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use log::debug;
use morpheus_common::protocol::Message;
use morpheus_common::seqpacket::{self, Received};
use morpheus_common::{MAX_WORKERS_PER_PROCESS, RuntimeKind, SCB_SIZE, Status};

use super::lock;
use super::state::State;
use crate::peer::Peer;

/// Invalid messages tolerated on one connection before it is closed.
const MAX_BAD_MESSAGES: u32 = 16;
/// A connection that has not said HELLO after this long is closed.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection of one process (its peer, identified by the kernel when it
/// connected) and what it has opened.
pub(super) struct Session<'a> {
    sock: BorrowedFd<'a>,
    peer: &'a Peer,
    /// The peer's process identity (pidfd inode): tells it from a later
    /// process with the same pid.
    identity: u64,
    state: &'a Mutex<State>,
    grace_ns: u64,
    /// HELLO was answered OK: the process's session is open.
    open: bool,
    /// Invalid messages so far.
    bad: u32,
}

impl<'a> Session<'a> {
    pub(super) fn new(
        sock: BorrowedFd<'a>,
        peer: &'a Peer,
        state: &'a Mutex<State>,
        grace_ns: u64,
    ) -> Result<Session<'a>> {
        let identity = peer
            .identity()
            .context("cannot identify the peer (fstat of its pidfd)")?;
        // A connection holds one of the user's connection slots: it must
        // say HELLO soon or give the slot back. An open session may stay
        // quiet.
        seqpacket::set_recv_timeout(sock, Some(HELLO_TIMEOUT))
            .context("cannot set the connection's receive timeout")?;
        Ok(Session {
            sock,
            peer,
            identity,
            state,
            grace_ns,
            open: false,
            bad: 0,
        })
    }

    /// Answers messages until the client closes the connection (`Ok`) or
    /// must be cut off (`Err`, saying why).
    pub(super) fn serve(&mut self) -> Result<()> {
        let tgid = self.peer.pid;
        loop {
            let received = match seqpacket::recv(self.sock) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && !self.open => {
                    bail!("pid {tgid}: no HELLO within {HELLO_TIMEOUT:?}: connection closed")
                }
                r => r?,
            };
            match received {
                Received::Closed => return Ok(()),
                Received::Packet(Ok(msg), fd) => self.on_message(msg, fd)?,
                Received::Packet(Err(e), _) => {
                    debug!("pid {tgid}: invalid message: {e}");
                    self.on_bad(e.status())?;
                }
            }
        }
    }

    /// Acts on one well-formed message.
    fn on_message(&mut self, msg: Message, fd: Option<OwnedFd>) -> Result<()> {
        let tgid = self.peer.pid;
        // The connection speaks for the process that connected, and for no
        // one once it has exited (its pid may be another's by now).
        // Checked under the lock: while it is held and the peer lives, no
        // other process can hold its pid here.
        let mut st = lock(self.state);
        if !self.peer.alive() {
            st.counters.refusals += 1;
            drop(st);
            self.reply(
                Message::Error {
                    status: Status::NotPermitted,
                },
                None,
            )?;
            bail!("pid {tgid} has exited: its connection speaks for no one");
        }
        match (msg, fd) {
            (Message::Hello { runtime_kind }, None) if !self.open => {
                self.on_hello(st, runtime_kind)
            }
            (
                Message::Register {
                    flags,
                    runtime_kind,
                },
                Some(pidfd),
            ) if self.open => self.on_register(st, pidfd, flags, runtime_kind),
            (Message::Unregister { slot, generation }, None) if self.open => {
                self.on_unregister(st, slot, generation)
            }
            (msg, _) => {
                // Out of order, wrong direction, or a stray fd (closed on drop).
                drop(st);
                debug!(
                    "pid {tgid}: unexpected {msg:?} (session open: {})",
                    self.open
                );
                // A request before HELLO has no session to act on; anything
                // else (a reply type, a stray or missing fd) is malformed.
                let request = matches!(msg, Message::Register { .. } | Message::Unregister { .. });
                self.on_bad(if request && !self.open {
                    Status::NotFound
                } else {
                    Status::BadMessage
                })
            }
        }
    }

    /// HELLO: opens the process's session and hands it its SCB array.
    fn on_hello(
        &mut self,
        mut st: std::sync::MutexGuard<'_, State>,
        kind: RuntimeKind,
    ) -> Result<()> {
        let tgid = self.peer.pid;
        if let Err(status) = st.open_process(tgid, self.identity, self.peer.uid) {
            st.counters.refusals += 1;
            drop(st);
            let refused = Message::HelloReply {
                status,
                max_workers: 0,
                scb_size: SCB_SIZE as u32,
                flags: 0,
                grace_ns: self.grace_ns,
            };
            return self.reply(refused, None);
        }
        self.open = true;
        seqpacket::set_recv_timeout(self.sock, None).context("cannot lift the receive timeout")?;
        debug!(
            "pid {tgid} (uid {}) opened a session ({kind})",
            self.peer.uid
        );
        let ok = Message::HelloReply {
            status: Status::Ok,
            max_workers: MAX_WORKERS_PER_PROCESS,
            scb_size: SCB_SIZE as u32,
            flags: st.scb_flags(),
            grace_ns: self.grace_ns,
        };
        let array = st.array(tgid).expect("created by open_process");
        self.reply(ok, Some(array.fd()))
    }

    /// REGISTER: the thread behind `pidfd`, if it is one of the peer's,
    /// becomes a worker of its process in a free slot.
    fn on_register(
        &mut self,
        mut st: std::sync::MutexGuard<'_, State>,
        pidfd: OwnedFd,
        flags: u32,
        kind: RuntimeKind,
    ) -> Result<()> {
        let result = st.register_worker(self.peer, pidfd, flags, kind.as_u32());
        drop(st);
        let (status, slot, generation) = match result {
            Ok((slot, generation)) => (Status::Ok, slot, generation),
            Err(status) => (status, 0, 0),
        };
        self.reply(
            Message::RegisterReply {
                status,
                slot,
                generation,
            },
            None,
        )
    }

    /// UNREGISTER: the worker in `slot` (of this `generation`) of the
    /// peer's process stops being one.
    fn on_unregister(
        &mut self,
        mut st: std::sync::MutexGuard<'_, State>,
        slot: u32,
        generation: u64,
    ) -> Result<()> {
        let status = st
            .unregister_worker(self.peer.pid, slot, generation)
            .err()
            .unwrap_or(Status::Ok);
        drop(st);
        self.reply(Message::UnregisterReply { status }, None)
    }

    /// Counts and answers an invalid message; too many close the connection.
    fn on_bad(&mut self, status: Status) -> Result<()> {
        lock(self.state).counters.bad_messages += 1;
        self.bad += 1;
        self.reply(Message::Error { status }, None)?;
        if self.bad >= MAX_BAD_MESSAGES {
            bail!("pid {}: too many invalid messages", self.peer.pid);
        }
        Ok(())
    }

    /// Sends a reply without waiting: a client that leaves its replies
    /// unread until they fill the socket is cut off, so no client keeps the
    /// thread serving it blocked (HELLO's reply is even sent under the
    /// state lock).
    fn reply(&self, msg: Message, fd: Option<BorrowedFd<'_>>) -> Result<()> {
        match seqpacket::try_send(self.sock, &msg, fd) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                bail!("the client does not read its replies: connection closed")
            }
            r => r.context("cannot reply"),
        }
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        let tgid = self.peer.pid;
        if let Some(n) = lock(self.state).close_process(tgid, self.identity) {
            debug!("pid {tgid}: last connection closed, {n} worker(s) released");
        }
    }
}
