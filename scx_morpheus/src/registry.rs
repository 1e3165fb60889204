// SPDX-License-Identifier: GPL-2.0-only
//! The worker registry: which process holds which SCB slot, with explicit
//! limits (machine-wide, per process, and per user, so that one user cannot
//! take every slot). Pure bookkeeping (no kernel access), so every rule is unit-tested
//! on the host; `server.rs` applies the results to the BPF maps.
//!
//! `H` is what the loader keeps per worker (the thread's pidfd); tests use
//! plain values.

use std::collections::HashMap;

use morpheus_common::{MAX_PROCESSES, MAX_WORKERS, MAX_WORKERS_PER_PROCESS, Status};

/// Where a registered worker lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assignment {
    /// Index in the process's SCB array.
    pub slot: u32,
    /// Generation of the slot at assignment (never reused within a process).
    pub generation: u64,
}

/// A live registration.
#[derive(Debug)]
pub struct Worker<H> {
    /// Thread id in the loader's PID namespace.
    pub tid: u32,
    /// The slot's generation at assignment.
    pub generation: u64,
    /// The loader's handle for the thread (its pidfd).
    pub handle: H,
}

/// One registered process.
#[derive(Debug)]
pub struct Process<H> {
    /// What the kernel says makes the process unique (the loader uses its
    /// pidfd's inode number), to tell a reused pid apart.
    pub identity: u64,
    /// The user it runs as (SO_PEERCRED at its first connection): its
    /// workers count against that user's quota.
    pub uid: u32,
    /// Open connections from this process.
    pub connections: u32,
    /// Live workers by slot.
    pub slots: Vec<Option<Worker<H>>>,
    /// Last generation handed out in this process.
    last_generation: u64,
}

impl<H> Process<H> {
    fn new(identity: u64, uid: u32, slots: u32) -> Self {
        Process {
            identity,
            uid,
            connections: 1,
            slots: (0..slots).map(|_| None).collect(),
            last_generation: 0,
        }
    }
}

/// Result of opening a session for a process.
#[derive(Debug)]
pub enum Opened<H> {
    /// First connection of a new process: create its SCB array.
    New,
    /// Another connection of a known process: reuse its SCB array.
    Existing,
    /// The pid was reused by a new process: the old one's workers must be
    /// torn down (returned) before its SCB array is replaced.
    Replaced(Vec<(u32, Worker<H>)>),
}

/// Limits, defaulting to the ABI's.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Processes registered at once.
    pub max_processes: u32,
    /// Workers machine-wide.
    pub max_workers: u32,
    /// Workers per process (slots in one SCB array).
    pub max_workers_per_process: u32,
    /// Workers of one user other than root, over all its processes.
    pub max_workers_per_user: u32,
}

/// The default per-user quota: a quarter of the table, as for connections,
/// so it takes four users to fill it.
pub const DEFAULT_MAX_WORKERS_PER_USER: u32 = MAX_WORKERS / 4;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_processes: MAX_PROCESSES,
            max_workers: MAX_WORKERS,
            max_workers_per_process: MAX_WORKERS_PER_PROCESS,
            max_workers_per_user: DEFAULT_MAX_WORKERS_PER_USER,
        }
    }
}

/// Every registered process and worker.
#[derive(Debug)]
pub struct Registry<H> {
    limits: Limits,
    processes: HashMap<u32, Process<H>>,
    workers: usize,
    /// Live workers by user (users with none are absent).
    by_user: HashMap<u32, u32>,
}

impl<H> Registry<H> {
    /// An empty registry.
    pub fn new(limits: Limits) -> Self {
        Registry {
            limits,
            processes: HashMap::new(),
            workers: 0,
            by_user: HashMap::new(),
        }
    }

    /// Live workers machine-wide.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Registered processes.
    pub fn processes(&self) -> usize {
        self.processes.len()
    }

    /// The process `tgid`, if registered.
    pub fn process(&self, tgid: u32) -> Option<&Process<H>> {
        self.processes.get(&tgid)
    }

    /// All processes, for sweeps.
    pub fn iter(&self) -> impl Iterator<Item = (&u32, &Process<H>)> {
        self.processes.iter()
    }

    /// Live workers of user `uid`.
    pub fn workers_of_user(&self, uid: u32) -> u32 {
        self.by_user.get(&uid).copied().unwrap_or(0)
    }

    /// A connection from process `tgid` with `identity`, running as `uid`,
    /// said HELLO.
    pub fn open(&mut self, tgid: u32, identity: u64, uid: u32) -> Result<Opened<H>, Status> {
        let slots = self.limits.max_workers_per_process;
        if let Some(p) = self.processes.get_mut(&tgid) {
            if p.identity == identity {
                p.connections += 1;
                return Ok(Opened::Existing);
            }
            let old = self.processes.remove(&tgid).expect("present");
            let workers = self.forget(old);
            self.processes
                .insert(tgid, Process::new(identity, uid, slots));
            return Ok(Opened::Replaced(workers));
        }
        if self.processes.len() >= self.limits.max_processes as usize {
            return Err(Status::TableFull);
        }
        self.processes
            .insert(tgid, Process::new(identity, uid, slots));
        Ok(Opened::New)
    }

    /// Drops the counts of a removed process and returns its live workers.
    fn forget(&mut self, p: Process<H>) -> Vec<(u32, Worker<H>)> {
        let uid = p.uid;
        let workers: Vec<_> = p
            .slots
            .into_iter()
            .enumerate()
            .filter_map(|(i, w)| w.map(|w| (i as u32, w)))
            .collect();
        for _ in &workers {
            self.count_out(uid);
        }
        workers
    }

    /// One worker of `uid` is gone.
    fn count_out(&mut self, uid: u32) {
        self.workers -= 1;
        if let Some(n) = self.by_user.get_mut(&uid) {
            *n -= 1;
            if *n == 0 {
                self.by_user.remove(&uid);
            }
        }
    }

    /// A connection from process `tgid` with `identity` closed. When it was
    /// the last one, the process is forgotten and its live workers are
    /// returned for teardown. A connection of a process that was replaced
    /// (its pid now another's) closes nothing.
    pub fn close(&mut self, tgid: u32, identity: u64) -> Option<Vec<(u32, Worker<H>)>> {
        let p = self
            .processes
            .get_mut(&tgid)
            .filter(|p| p.identity == identity)?;
        p.connections = p.connections.saturating_sub(1);
        if p.connections > 0 {
            return None;
        }
        let p = self.processes.remove(&tgid).expect("present");
        Some(self.forget(p))
    }

    /// Registers thread `tid` of `tgid`. Registering a live thread again
    /// returns its existing assignment (and drops the new handle). A full
    /// table is `TableFull`; a user other than root holding its quota is
    /// `UserQuota`.
    pub fn register(&mut self, tgid: u32, tid: u32, handle: H) -> Result<Assignment, Status> {
        let limits = self.limits;
        let total = self.workers;
        let p = self.processes.get_mut(&tgid).ok_or(Status::NotFound)?;
        let uid = p.uid;
        let of_user = self.by_user.get(&uid).copied().unwrap_or(0);
        if let Some((slot, w)) = p
            .slots
            .iter()
            .enumerate()
            .find_map(|(i, s)| s.as_ref().filter(|w| w.tid == tid).map(|w| (i, w)))
        {
            return Ok(Assignment {
                slot: slot as u32,
                generation: w.generation,
            });
        }
        if total >= limits.max_workers as usize {
            return Err(Status::TableFull);
        }
        if uid != 0 && of_user >= limits.max_workers_per_user {
            return Err(Status::UserQuota);
        }
        let slot = p
            .slots
            .iter()
            .position(Option::is_none)
            .ok_or(Status::TableFull)?;
        p.last_generation += 1;
        let generation = p.last_generation;
        p.slots[slot] = Some(Worker {
            tid,
            generation,
            handle,
        });
        self.workers += 1;
        *self.by_user.entry(uid).or_default() += 1;
        Ok(Assignment {
            slot: slot as u32,
            generation,
        })
    }

    /// Releases `slot` of `tgid` if it still holds `generation`.
    pub fn unregister(
        &mut self,
        tgid: u32,
        slot: u32,
        generation: u64,
    ) -> Result<Worker<H>, Status> {
        let p = self.processes.get_mut(&tgid).ok_or(Status::NotFound)?;
        let uid = p.uid;
        let entry = p.slots.get_mut(slot as usize).ok_or(Status::NotFound)?;
        match entry {
            Some(w) if w.generation == generation => {
                let w = entry.take().expect("checked");
                self.count_out(uid);
                Ok(w)
            }
            _ => Err(Status::NotFound),
        }
    }

    /// Releases the slot of a thread that exited (`tid` guards against a
    /// stale notification for a slot already reassigned).
    pub fn reap(&mut self, tgid: u32, slot: u32, tid: u32) -> Option<Worker<H>> {
        let p = self.processes.get_mut(&tgid)?;
        let uid = p.uid;
        let entry = p.slots.get_mut(slot as usize)?;
        if entry.as_ref().is_some_and(|w| w.tid == tid) {
            let w = entry.take();
            self.count_out(uid);
            return w;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Registry<&'static str> {
        Registry::new(Limits {
            max_processes: 2,
            max_workers: 3,
            max_workers_per_process: 2,
            max_workers_per_user: 3,
        })
    }

    #[test]
    fn register_unregister_and_generations_never_repeat() {
        let mut r = small();
        assert!(matches!(r.open(10, 1, 1000), Ok(Opened::New)));
        let a = r.register(10, 100, "t100").unwrap();
        assert_eq!(
            a,
            Assignment {
                slot: 0,
                generation: 1
            }
        );
        let b = r.register(10, 101, "t101").unwrap();
        assert_eq!(
            b,
            Assignment {
                slot: 1,
                generation: 2
            }
        );
        assert_eq!(r.workers(), 2);

        // Idempotent re-registration of a live thread.
        assert_eq!(r.register(10, 100, "again").unwrap(), a);

        // Stale generation or foreign slot: not found, nothing changes.
        assert_eq!(r.unregister(10, 0, 99).unwrap_err(), Status::NotFound);
        assert_eq!(r.unregister(10, 7, 1).unwrap_err(), Status::NotFound);
        assert_eq!(r.unregister(11, 0, 1).unwrap_err(), Status::NotFound);
        assert_eq!(r.workers(), 2);

        let w = r.unregister(10, 0, 1).unwrap();
        assert_eq!((w.tid, w.handle), (100, "t100"));
        // The slot is reused with a new generation: a reused tid never
        // inherits the old registration.
        let c = r.register(10, 100, "t100b").unwrap();
        assert_eq!(
            c,
            Assignment {
                slot: 0,
                generation: 3
            }
        );
    }

    #[test]
    fn limits_give_table_full_not_corruption() {
        let mut r = small();
        r.open(1, 1, 1000).unwrap();
        r.open(2, 1, 1000).unwrap();
        assert_eq!(r.open(3, 1, 1000).unwrap_err(), Status::TableFull);
        r.register(1, 10, "a").unwrap();
        r.register(1, 11, "b").unwrap();
        assert_eq!(r.register(1, 12, "c").unwrap_err(), Status::TableFull); // per process
        r.register(2, 20, "d").unwrap();
        assert_eq!(r.register(2, 21, "e").unwrap_err(), Status::TableFull); // global
        assert_eq!(r.workers(), 3);
        assert_eq!(r.register(9, 90, "x").unwrap_err(), Status::NotFound); // no HELLO
    }

    #[test]
    fn last_connection_close_returns_every_worker() {
        let mut r = small();
        r.open(1, 5, 1000).unwrap();
        assert!(matches!(r.open(1, 5, 1000), Ok(Opened::Existing)));
        r.register(1, 10, "a").unwrap();
        r.register(1, 11, "b").unwrap();
        assert!(r.close(1, 5).is_none());
        let gone = r.close(1, 5).unwrap();
        assert_eq!(gone.len(), 2);
        assert_eq!(r.workers(), 0);
        assert_eq!(r.processes(), 0);
        assert!(r.close(1, 5).is_none());
    }

    #[test]
    fn a_reused_pid_replaces_the_old_process() {
        let mut r = small();
        r.open(1, 5, 1000).unwrap();
        r.register(1, 10, "old").unwrap();
        match r.open(1, 6, 1000).unwrap() {
            Opened::Replaced(old) => assert_eq!(old[0].1.handle, "old"),
            other => panic!("{other:?}"),
        }
        assert_eq!(r.workers(), 0);
        assert_eq!(r.register(1, 10, "new").unwrap().generation, 1);
        // The old process's connection closing leaves the new one alone.
        assert!(r.close(1, 5).is_none());
        assert_eq!((r.processes(), r.workers()), (1, 1));
        assert_eq!(r.close(1, 6).unwrap().len(), 1);
    }

    #[test]
    fn reap_checks_the_thread() {
        let mut r = small();
        r.open(1, 5, 1000).unwrap();
        let a = r.register(1, 10, "a").unwrap();
        assert!(r.reap(1, a.slot, 11).is_none());
        assert_eq!(r.reap(1, a.slot, 10).unwrap().handle, "a");
        assert!(r.reap(1, a.slot, 10).is_none());
        assert_eq!(r.workers(), 0);
    }

    #[test]
    fn one_user_holds_at_most_its_quota_and_root_none() {
        let mut r = Registry::new(Limits {
            max_processes: 8,
            max_workers: 8,
            max_workers_per_process: 4,
            max_workers_per_user: 3,
        });
        // User 1000 over two processes: the fourth worker is over quota,
        // whichever process asks.
        r.open(1, 1, 1000).unwrap();
        r.open(2, 2, 1000).unwrap();
        r.register(1, 10, "a").unwrap();
        r.register(1, 11, "b").unwrap();
        r.register(2, 20, "c").unwrap();
        assert_eq!(r.register(2, 21, "d").unwrap_err(), Status::UserQuota);
        assert_eq!(r.register(1, 12, "d").unwrap_err(), Status::UserQuota);
        // Re-registering a live thread is not a new worker.
        assert!(r.register(1, 10, "a2").is_ok());
        assert_eq!(r.workers_of_user(1000), 3);
        // Another user and root are not held back by it.
        r.open(3, 3, 1001).unwrap();
        r.register(3, 30, "e").unwrap();
        r.open(4, 4, 0).unwrap();
        for tid in 40..44 {
            r.register(4, tid, "root").unwrap();
        }
        assert_eq!(r.workers(), 8);
        // Every way out gives the quota back: unregister, reap, close.
        let a = r.register(1, 10, "a3").unwrap();
        r.unregister(1, a.slot, a.generation).unwrap();
        assert_eq!(r.workers_of_user(1000), 2);
        let c = r.register(2, 20, "c2").unwrap();
        assert!(r.reap(2, c.slot, 20).is_some());
        assert_eq!(r.workers_of_user(1000), 1);
        assert_eq!(r.close(1, 1).unwrap().len(), 1);
        assert_eq!(r.workers_of_user(1000), 0);
        // A reused pid taken by another user: the old user's workers go
        // with the old process, and the new one counts against its own.
        r.open(5, 5, 1000).unwrap();
        r.register(5, 50, "f").unwrap();
        assert!(matches!(r.open(5, 6, 1002), Ok(Opened::Replaced(_))));
        assert_eq!(r.workers_of_user(1000), 0);
        r.register(5, 51, "g").unwrap();
        assert_eq!((r.workers_of_user(1002), r.workers()), (1, 6));
    }
}
