// SPDX-License-Identifier: GPL-2.0-only
//! A worker's shared state, grouped by the one who writes it:
//!
//! | group            | written by                               | read by          |
//! |------------------|------------------------------------------|------------------|
//! | `Hot` (TLS)      | the worker's thread (the monitor sets `POISON`) | checkpoints |
//! | [`Own`]          | the worker's thread                      | it, the monitor  |
//! | [`Signal`]       | the monitor thread                       | the worker       |
//! | [`Registration`] | whoever registers it, under the session lock | everyone     |
//! | the SCB's kernel line | BPF (through [`ScbRef`](crate::scb::ScbRef)) | the worker, the monitor |
//!
//! Each field is an atomic (a worker is shared between threads), but only
//! its group's writer stores to it; the methods say which side calls them.

use std::sync::Mutex;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64};

use morpheus_common::{Scb, YieldCause};

use crate::process::lock;

/// `Signal` epoch meaning "not a budget signal, just look" (used to make a
/// worker adopt a new SCB).
pub(super) const EPOCH_WAKE: u64 = u64::MAX;

/// Written by the worker's own thread: where its budget started (its last
/// yield, or its last unpark), whether it is parked (both read by the
/// monitor, which measures the budget from them) and the kernel slot in
/// use.
#[derive(Debug)]
pub(super) struct Own {
    /// Bumped at each yield (release); a signal raised in an older epoch
    /// is stale.
    epoch: AtomicU64,
    /// Thread CPU time when the budget started.
    cpu_at_yield_ns: AtomicU64,
    /// Monotonic time when the budget started.
    wall_at_yield_ns: AtomicU64,
    /// The thread is parked in its runtime (told by the runtime's park
    /// hooks; always false for threads whose runtime has none).
    parked: AtomicBool,
    /// The grace period of the SCB in use.
    grace_ns: AtomicU64,
    /// Last kernel sequence accounted for in `hints_seen`.
    last_seq: AtomicU64,
    /// The thread switched itself to `SCHED_EXT`.
    on_sched_ext: AtomicBool,
}

impl Own {
    pub(super) fn new(wall_ns: u64, cpu_ns: u64) -> Own {
        Own {
            epoch: AtomicU64::new(0),
            cpu_at_yield_ns: AtomicU64::new(cpu_ns),
            wall_at_yield_ns: AtomicU64::new(wall_ns),
            parked: AtomicBool::new(false),
            grace_ns: AtomicU64::new(0),
            last_seq: AtomicU64::new(0),
            on_sched_ext: AtomicBool::new(false),
        }
    }

    /// Stamps a yield: both clocks, then a new epoch (release, so the
    /// monitor that sees the epoch sees the stamps).
    pub(super) fn yielded(&self, cpu_ns: u64, wall_ns: u64) {
        self.cpu_at_yield_ns.store(cpu_ns, Relaxed);
        self.wall_at_yield_ns.store(wall_ns, Relaxed);
        self.epoch.fetch_add(1, Release);
    }

    /// The thread is about to park: its runtime has no task left to run.
    pub(super) fn park(&self) {
        self.parked.store(true, SeqCst);
    }

    /// The thread unparked: the budget restarts from these clocks (every
    /// task had yielded or finished before it parked). Not a yield: the
    /// epoch stays, so a yield decided before the park is still the
    /// deciding task's to take. Sequentially consistent, against the
    /// monitor's check that every worker is parked
    /// ([`Process::monitor_may_idle`](crate::process::Process::monitor_may_idle)).
    pub(super) fn unpark(&self, cpu_ns: u64, wall_ns: u64) {
        self.cpu_at_yield_ns.store(cpu_ns, Relaxed);
        self.wall_at_yield_ns.store(wall_ns, Relaxed);
        self.parked.store(false, SeqCst);
    }

    /// Whether the thread is parked.
    pub(super) fn parked(&self) -> bool {
        self.parked.load(SeqCst)
    }

    /// The epoch, as the worker's own thread sees it.
    pub(super) fn epoch(&self) -> u64 {
        self.epoch.load(Relaxed)
    }

    /// The epoch, as the monitor reads it before the stamps (acquire).
    pub(super) fn epoch_acquire(&self) -> u64 {
        self.epoch.load(Acquire)
    }

    /// Thread CPU time when the budget started.
    pub(super) fn cpu_at_yield_ns(&self) -> u64 {
        self.cpu_at_yield_ns.load(Relaxed)
    }

    /// Monotonic time when the budget started.
    pub(super) fn wall_at_yield_ns(&self) -> u64 {
        self.wall_at_yield_ns.load(Relaxed)
    }

    /// The grace period of the SCB in use.
    pub(super) fn grace_ns(&self) -> u64 {
        self.grace_ns.load(Relaxed)
    }

    /// Starts accounting a new SCB: its grace period and current sequence.
    pub(super) fn adopted(&self, grace_ns: u64, seq: u64) {
        self.last_seq.store(seq, Relaxed);
        self.grace_ns.store(grace_ns, Relaxed);
    }

    /// How many kernel hints `seq` is past the last one accounted for, and
    /// accounts them.
    pub(super) fn hints_up_to(&self, seq: u64) -> u64 {
        seq.wrapping_sub(self.last_seq.swap(seq, Relaxed))
    }

    /// `true` the first time it is called (the thread switches to
    /// `SCHED_EXT` once).
    pub(super) fn first_switch_to_sched_ext(&self) -> bool {
        !self.on_sched_ext.swap(true, Relaxed)
    }
}

/// Written by the monitor thread: the in-process signal it raised (read
/// by the worker at its slow path) and the escalations it accounted for.
#[derive(Debug)]
pub(super) struct Signal {
    /// The worker's epoch when the monitor raised the signal.
    epoch: AtomicU64,
    /// The cause it attached.
    cause: AtomicU32,
    /// Escalation counter value already accounted (reset when the worker
    /// changes SCB).
    escalations_seen: AtomicU32,
}

impl Signal {
    pub(super) fn new() -> Signal {
        Signal {
            epoch: AtomicU64::new(EPOCH_WAKE),
            cause: AtomicU32::new(YieldCause::Budget.as_u32()),
            escalations_seen: AtomicU32::new(0),
        }
    }

    /// Raises the signal for the worker's epoch `epoch` (the caller then
    /// poisons the worker's `expected` word).
    pub(super) fn raise(&self, epoch: u64, cause: YieldCause) {
        self.cause.store(cause.as_u32(), Relaxed);
        self.epoch.store(epoch, Relaxed);
    }

    /// The cause of a signal raised in epoch `epoch`, if that is the one
    /// raised (a signal of an older epoch is stale: the worker yielded since).
    pub(super) fn cause_in(&self, epoch: u64) -> Option<YieldCause> {
        (self.epoch.load(Relaxed) == epoch)
            .then(|| YieldCause::try_from(self.cause.load(Relaxed)).unwrap_or(YieldCause::Budget))
    }

    /// Restarts the escalation count from `count` (a new SCB).
    pub(super) fn reset_escalations(&self, count: u32) {
        self.escalations_seen.store(count, Relaxed);
    }

    /// Records `count` as accounted for; returns the previous value.
    pub(super) fn swap_escalations(&self, count: u32) -> u32 {
        self.escalations_seen.swap(count, Relaxed)
    }
}

/// A live registration with the kernel.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reg {
    /// The worker's slot in the process's SCB array.
    pub(crate) slot: u32,
    /// The slot's generation (names it in `UNREGISTER`).
    pub(crate) generation: u64,
    /// The session it was made in.
    pub(crate) session: u64,
    /// The slot's SCB.
    pub(crate) scb: *mut Scb,
}

// SAFETY: the SCB pointer targets a never-unmapped shared mapping.
unsafe impl Send for Reg {}

/// Written under the session lock, by the thread that registers the
/// worker (its own, or the monitor's): its registration with the kernel.
#[derive(Debug)]
pub(super) struct Registration {
    reg: Mutex<Option<Reg>>,
    /// An SCB registered on the worker's behalf by another thread, to
    /// adopt at its next slow path (with its grace period).
    offered: AtomicPtr<Scb>,
    offered_grace_ns: AtomicU64,
    /// Whether the kernel source should (still) try to register it.
    want_kernel: AtomicBool,
}

impl Registration {
    pub(super) fn new(want_kernel: bool) -> Registration {
        Registration {
            reg: Mutex::new(None),
            offered: AtomicPtr::new(std::ptr::null_mut()),
            offered_grace_ns: AtomicU64::new(0),
            want_kernel: AtomicBool::new(want_kernel),
        }
    }

    /// The live registration, if any.
    pub(super) fn get(&self) -> Option<Reg> {
        *lock(&self.reg)
    }

    /// Records a new registration.
    pub(super) fn set(&self, reg: Reg) {
        *lock(&self.reg) = Some(reg);
    }

    /// Removes and returns the registration.
    pub(super) fn take(&self) -> Option<Reg> {
        lock(&self.reg).take()
    }

    /// Offers the worker `scb` (release: the worker that takes it sees
    /// what was written into it before).
    pub(super) fn offer(&self, scb: *mut Scb, grace_ns: u64) {
        self.offered_grace_ns.store(grace_ns, Relaxed);
        self.offered.store(scb, Release);
    }

    /// Takes the offered SCB and its grace period, if any (the worker).
    pub(super) fn take_offer(&self) -> Option<(*mut Scb, u64)> {
        let scb = self.offered.swap(std::ptr::null_mut(), Acquire);
        (!scb.is_null()).then(|| (scb, self.offered_grace_ns.load(Relaxed)))
    }

    /// Whether the kernel source should try to register the worker.
    pub(super) fn wants_kernel(&self) -> bool {
        self.want_kernel.load(Relaxed)
    }

    /// Stops trying (registration cannot work for this worker).
    pub(super) fn give_up_kernel(&self) {
        self.want_kernel.store(false, Relaxed);
    }
}
