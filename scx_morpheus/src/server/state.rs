// SPDX-License-Identifier: GPL-2.0-only
//! What the connections share: the registry of processes and workers
//! (`registry.rs`, the pure core) applied to the kernel (SCB arrays in BPF
//! maps, workers attached to their threads), and the loader's counters.
//! Every change goes through one of these methods, under the server's lock.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use log::{debug, warn};
use morpheus_common::{Status, WorkerState};

use crate::leases::Lease;
use crate::peer::{self, Peer};
use crate::registry::{Limits, Opened, Registry, Worker};
use crate::scb_maps::{Kernel, ScbArray};

/// Counters the loader keeps (the BPF program keeps the rest).
#[derive(Debug, Default, Clone, Copy)]
pub struct ServerCounters {
    /// Registrations accepted.
    pub registrations: u64,
    /// Registrations refused (any status but OK).
    pub refusals: u64,
    /// Invalid messages received.
    pub bad_messages: u64,
    /// Workers released after their thread exited.
    pub reaped: u64,
    /// Hints outstanding when their worker left (counted as dropped).
    pub hints_dropped: u64,
}

/// Workers by SCB state, for metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct WorkerCounts {
    /// Processes with a session.
    pub processes: u64,
    /// Live registrations, by the registry's own count (not by SCB state,
    /// which clients can write).
    pub workers: u64,
    /// Registered, not yet run.
    pub registered: u64,
    /// Have run under the scheduler.
    pub running: u64,
    /// Exited, not yet reaped.
    pub dead: u64,
}

/// Everything the connection threads share.
pub struct State {
    registry: Registry<OwnedFd>,
    arrays: HashMap<u32, ScbArray>,
    kernel: Kernel,
    /// The lease of each attached worker, by process and slot.
    leases: HashMap<(u32, u32), Lease>,
    /// Loader-side counters.
    pub counters: ServerCounters,
}

impl State {
    pub(super) fn new(limits: Limits, kernel: Kernel) -> State {
        State {
            registry: Registry::new(limits),
            arrays: HashMap::new(),
            kernel,
            leases: HashMap::new(),
            counters: ServerCounters::default(),
        }
    }

    /// The flags every new SCB starts with (announced at HELLO).
    pub(super) fn scb_flags(&self) -> u32 {
        self.kernel.scb_flags
    }

    /// The SCB array of process `tgid`, if it has a session.
    pub(super) fn array(&self, tgid: u32) -> Option<&ScbArray> {
        self.arrays.get(&tgid)
    }

    /// Opens (or joins) the session of process `tgid` with `identity`,
    /// running as `uid`: the process gets an SCB array (a process that
    /// reused the pid of one that died replaces it and its workers).
    pub(super) fn open_process(
        &mut self,
        tgid: u32,
        identity: u64,
        uid: u32,
    ) -> Result<(), Status> {
        match self.registry.open(tgid, identity, uid)? {
            Opened::Existing if self.arrays.contains_key(&tgid) => return Ok(()),
            Opened::Existing | Opened::New => {}
            Opened::Replaced(old) => {
                self.release_all(tgid, old);
                self.drop_process(tgid);
            }
        }
        match self.kernel.create_array(tgid) {
            Ok(array) => {
                self.arrays.insert(tgid, array);
                Ok(())
            }
            Err(e) => {
                warn!("pid {tgid}: {e:#}");
                let _ = self.registry.close(tgid, identity);
                Err(Status::Internal)
            }
        }
    }

    /// Closes one connection's hold on process `tgid`; after its last
    /// connection, releases its workers and forgets it. Returns how many
    /// workers were released then.
    pub(super) fn close_process(&mut self, tgid: u32, identity: u64) -> Option<usize> {
        let workers = self.registry.close(tgid, identity)?;
        let n = workers.len();
        self.release_all(tgid, workers);
        self.drop_process(tgid);
        Some(n)
    }

    /// Registers the thread behind `pidfd`, which must be a live thread of
    /// `peer` running as its user; returns its slot and generation.
    pub(super) fn register_worker(
        &mut self,
        peer: &Peer,
        pidfd: OwnedFd,
        flags: u32,
        kind: u32,
    ) -> Result<(u32, u64), Status> {
        let result = self.attach_worker(peer, pidfd, flags, kind);
        match result {
            Ok(_) => self.counters.registrations += 1,
            Err(_) => self.counters.refusals += 1,
        }
        result
    }

    fn attach_worker(
        &mut self,
        peer: &Peer,
        pidfd: OwnedFd,
        flags: u32,
        kind: u32,
    ) -> Result<(u32, u64), Status> {
        let tgid = peer.pid;
        let tid = peer.owns_thread(pidfd.as_fd()).map_err(|why| {
            warn!(
                "pid {tgid} (uid {}) may not register that thread: {why}",
                peer.uid
            );
            Status::NotPermitted
        })?;
        let raw = pidfd.as_raw_fd();
        let a = self.registry.register(tgid, tid, pidfd).inspect_err(|s| {
            if *s == Status::UserQuota {
                debug!(
                    "pid {tgid} thread {tid}: uid {} holds its quota of {} workers (--max-workers-per-user)",
                    peer.uid,
                    self.registry.workers_of_user(peer.uid)
                );
            }
        })?;
        let array = self.arrays.get(&tgid).ok_or(Status::NotFound)?;
        let existing = self
            .registry
            .process(tgid)
            .and_then(|p| p.slots[a.slot as usize].as_ref())
            .is_some_and(|w| w.handle.as_raw_fd() != raw);
        if existing {
            // Re-registration of a live thread: nothing to set up again.
            return Ok((a.slot, a.generation));
        }
        array.init_slot(a.slot, a.generation, self.kernel.scb_flags);
        // SAFETY: borrowing the fd owned by the registry entry just created.
        let fd = unsafe { BorrowedFd::borrow_raw(raw) };
        match self.kernel.attach_worker(fd, tgid, a.slot, flags, kind) {
            Ok(lease) => {
                self.leases.insert((tgid, a.slot), lease);
            }
            Err(e) => {
                warn!("pid {tgid} thread {tid}: {e:#}");
                if let Ok(w) = self.registry.unregister(tgid, a.slot, a.generation) {
                    self.release(tgid, a.slot, w);
                }
                return Err(Status::Internal);
            }
        }
        debug!(
            "pid {tgid} thread {tid} registered in slot {} gen {} ({} workers in all)",
            a.slot,
            a.generation,
            self.registry.workers()
        );
        Ok((a.slot, a.generation))
    }

    /// Unregisters the worker of process `tgid` in `slot`, if `generation`
    /// is still the one living there.
    pub(super) fn unregister_worker(
        &mut self,
        tgid: u32,
        slot: u32,
        generation: u64,
    ) -> Result<(), Status> {
        let w = self.registry.unregister(tgid, slot, generation)?;
        self.release(tgid, slot, w);
        Ok(())
    }

    /// Tears down one worker: detach from the thread (BPF stops acting on
    /// it at once), mark the slot dead. The pidfd closes when `w` drops.
    fn release(&mut self, tgid: u32, slot: u32, w: Worker<OwnedFd>) {
        if let Some(lease) = self.leases.remove(&(tgid, slot))
            && self.kernel.detach_worker(&w.handle, lease)
        {
            self.counters.hints_dropped += 1;
        }
        if let Some(array) = self.arrays.get(&tgid) {
            array.set_state(slot, WorkerState::Dead);
        }
    }

    fn release_all(&mut self, tgid: u32, workers: Vec<(u32, Worker<OwnedFd>)>) {
        for (slot, w) in workers {
            self.release(tgid, slot, w);
        }
    }

    /// Forgets a process entirely (its SCB array leaves BPF and our mapping).
    fn drop_process(&mut self, tgid: u32) {
        self.kernel.remove_array(tgid);
        self.arrays.remove(&tgid);
    }

    /// Releases workers whose thread exited, as their pidfds say (a
    /// backstop for exit events lost to a full ring; the SCB's state is
    /// not asked: the client can write it). Returns how many were reaped.
    pub fn sweep(&mut self) -> usize {
        let mut gone = Vec::new();
        for (&tgid, p) in self.registry.iter() {
            for (slot, w) in p.slots.iter().enumerate() {
                let Some(w) = w else { continue };
                if peer::pidfd_exited(w.handle.as_fd()) {
                    gone.push((tgid, slot as u32, w.tid));
                }
            }
        }
        let n = gone.len();
        for (tgid, slot, tid) in gone {
            self.reap(tgid, slot, tid);
        }
        n
    }

    /// Releases the slot of thread `tid` that exited.
    pub fn reap(&mut self, tgid: u32, slot: u32, tid: u32) {
        if let Some(w) = self.registry.reap(tgid, slot, tid) {
            debug!("worker {tgid}/{tid} exited; slot {slot} reclaimed");
            self.counters.reaped += 1;
            self.release(tgid, slot, w);
        }
    }

    /// Workers by state.
    pub fn counts(&self) -> WorkerCounts {
        let mut c = WorkerCounts {
            processes: self.registry.processes() as u64,
            workers: self.registry.workers() as u64,
            ..Default::default()
        };
        for (tgid, p) in self.registry.iter() {
            let Some(array) = self.arrays.get(tgid) else {
                continue;
            };
            for (slot, w) in p.slots.iter().enumerate() {
                if w.is_none() {
                    continue;
                }
                match array.state(slot as u32) {
                    Some(WorkerState::Registered) => c.registered += 1,
                    Some(WorkerState::Running) => c.running += 1,
                    Some(WorkerState::Dead) => c.dead += 1,
                    _ => {}
                }
            }
        }
        c
    }
}
