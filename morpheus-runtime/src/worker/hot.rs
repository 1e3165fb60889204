// SPDX-License-Identifier: GPL-2.0-only
//! The fast path: the thread-local words a checkpoint and a critical
//! section touch (see the [module docs](super) for the mechanism).
//!
//! `HOT` is const-initialised and has no destructor, so every access is a
//! plain `%fs`-relative load or store: no lazy initialisation, no
//! registration. Only the owner thread writes `scb` and `depth`; the
//! monitor thread also sets [`POISON`] in `expected`, through a pointer to
//! the owner's `HOT` that stays valid while the worker is listed.

use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, compiler_fence};

use morpheus_common::Scb;

use crate::scb::{LocalScb, ScbRef};

/// Bit of `expected` that an in-process source sets to make the next
/// checkpoint take the slow path (kernel sequence numbers never reach it).
pub(crate) const POISON: u64 = 1 << 63;

/// The words of a thread the fast path reads.
#[repr(C)]
pub(crate) struct Hot {
    /// The SCB polled by checkpoints. Owner-written.
    pub(super) scb: AtomicPtr<Scb>,
    /// `hint_seq` value meaning "no signal"; [`POISON`] = in-process signal.
    /// Written by the owner, and by the monitor (which only sets `POISON`).
    pub(super) expected: AtomicU64,
    /// The thread's critical-section depth: the source of truth, mirrored
    /// into the SCB in use (`u.critical_depth`) for the kernel. Written by
    /// the owner only; an atomic so the monitor may read it.
    pub(super) depth: AtomicU32,
}

/// The SCB of threads that are not workers (never written).
static DETACHED_SCB: LocalScb = LocalScb::new();

/// [`DETACHED_SCB`]'s address (usable in a static initialiser).
#[inline(always)]
pub(super) const fn detached_scb() -> *mut Scb {
    (&raw const DETACHED_SCB).cast::<Scb>().cast_mut()
}

thread_local! {
    /// The words the fast path reads. Detached state: always signalling, so
    /// that the first checkpoint attaches the thread.
    pub(super) static HOT: Hot = const {
        Hot {
            scb: AtomicPtr::new(detached_scb()),
            expected: AtomicU64::new(POISON),
            depth: AtomicU32::new(0),
        }
    };
}

impl Hot {
    /// The SCB in use.
    #[inline(always)]
    pub(super) fn scb(&self) -> ScbRef {
        // SAFETY: `scb` always points at a live SCB: the static detached
        // one, the worker's local one (the worker outlives its attachment)
        // or a slot of a mapping that is never unmapped.
        unsafe { ScbRef::new(self.scb.load(Relaxed)) }
    }

    /// The critical-section depth.
    #[inline(always)]
    pub(super) fn depth(&self) -> u32 {
        self.depth.load(Relaxed)
    }

    /// Whether an in-process signal is raised (the monitor's poison).
    pub(super) fn poisoned(&self) -> bool {
        self.expected.load(Relaxed) & POISON != 0
    }

    /// Back to the detached state: the next checkpoint attaches again.
    pub(super) fn detach(&self) {
        self.scb.store(detached_scb(), Relaxed);
        self.expected.store(POISON, Relaxed);
    }
}

/// The checkpoint fast path: is a signal pending for this thread?
///
/// A TLS load of the SCB pointer, a relaxed load of its `hint_seq`, a
/// compare with the TLS `expected` word and a branch at the call site.
#[inline(always)]
pub(crate) fn signal_pending() -> bool {
    HOT.with(|hot| hot.scb().hint_seq().load(Relaxed) != hot.expected.load(Relaxed))
}

/// Opens a critical-section level on the calling thread (the fast path of
/// `critical_section()`): the TLS counter, and its mirror in the SCB in use
/// for the kernel. A thread that is not a worker attaches first (once).
#[inline(always)]
pub(crate) fn critical_enter() {
    HOT.with(|hot| {
        let d = hot.depth.load(Relaxed).saturating_add(1);
        hot.depth.store(d, Relaxed);
        let scb = hot.scb.load(Relaxed);
        if scb == detached_scb() {
            critical_enter_detached();
        } else {
            // SAFETY: `scb` points at a live SCB (see `Hot::scb`).
            unsafe { ScbRef::new(scb) }
                .critical_depth()
                .store(d, Relaxed);
        }
        // The ABI's ordering contract: the depth is stored before the
        // section's first instruction.
        compiler_fence(SeqCst);
    })
}

/// A section opened on a thread that is not a worker: attach it (its new
/// SCB takes the depth from the TLS counter). A thread that cannot attach
/// (exiting) keeps the count in TLS only.
#[cold]
#[inline(never)]
fn critical_enter_detached() {
    let _ = super::attach_lazily();
}

/// Closes a critical-section level; `false` if none is open (misuse).
#[inline(always)]
pub(crate) fn critical_exit() -> bool {
    HOT.with(|hot| {
        let d = hot.depth.load(Relaxed);
        if d == 0 {
            return false;
        }
        compiler_fence(SeqCst);
        hot.depth.store(d - 1, Relaxed);
        let scb = hot.scb.load(Relaxed);
        if scb != detached_scb() {
            // SAFETY: `scb` points at a live SCB (see `Hot::scb`).
            unsafe { ScbRef::new(scb) }
                .critical_depth()
                .store(d - 1, Relaxed);
        }
        true
    })
}

/// The calling thread's critical-section depth.
#[inline]
pub(crate) fn critical_depth() -> u32 {
    HOT.with(Hot::depth)
}
