// SPDX-License-Identifier: GPL-2.0-only
//! Access to shared control blocks (the layout is `morpheus_common::Scb`).
//!
//! An SCB is either a slot of the scheduler's mmapped array (kernel line
//! written by BPF) or a process-local one that no kernel writes, used while
//! the worker is not registered. Every field is accessed through an atomic
//! view, following the ordering contract in `abi.h`.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU32, AtomicU64};

use morpheus_common::Scb;

/// The hint sequence in a signal word (`k.hint_seq`, see `abi.h`): what a
/// runtime acknowledges in `u.ack_seq`.
#[inline]
pub(crate) fn hint_part(word: u64) -> u64 {
    word & morpheus_common::abi::MORPHEUS_HINT_SEQ_MASK
}

/// Whether the kernel sent a catch-up between signal words `old` and `new`.
#[inline]
pub(crate) fn catch_up_between(old: u64, new: u64) -> bool {
    use morpheus_common::abi::{MORPHEUS_CATCH_UP_MASK, MORPHEUS_CATCH_UP_SHIFT};
    ((old ^ new) >> MORPHEUS_CATCH_UP_SHIFT) & u64::from(MORPHEUS_CATCH_UP_MASK) != 0
}

/// A process-local SCB (cache-line aligned, zeroed).
pub(crate) struct LocalScb(UnsafeCell<Scb>);

// SAFETY: every access to the inner SCB goes through the atomic views below.
unsafe impl Sync for LocalScb {}
unsafe impl Send for LocalScb {}

impl LocalScb {
    /// A zeroed SCB (magic 0: "not live").
    pub(crate) const fn new() -> Self {
        // SAFETY: the SCB is plain integers; all-zero is a valid value.
        LocalScb(UnsafeCell::new(unsafe { std::mem::zeroed() }))
    }

    /// Pointer to the SCB.
    pub(crate) fn get(&self) -> *mut Scb {
        self.0.get()
    }
}

/// Atomic views of the fields of an SCB the runtime touches. Invariant:
/// points to a live SCB (see [`ScbRef::new`]).
#[derive(Clone, Copy)]
pub(crate) struct ScbRef(*mut Scb);

macro_rules! field {
    ($name:ident, $line:ident . $field:ident, $ty:ty) => {
        #[inline(always)]
        pub(crate) fn $name(self) -> &'static $ty {
            // SAFETY: see the type's contract; the field is naturally aligned.
            unsafe { <$ty>::from_ptr(&raw mut (*self.0).$line.$field) }
        }
    };
}

impl ScbRef {
    /// # Safety
    /// `scb` must point to a live SCB for as long as the views are used: a
    /// `LocalScb` that outlives them, or a slot of a mapping that is never
    /// unmapped.
    #[inline(always)]
    pub(crate) unsafe fn new(scb: *mut Scb) -> ScbRef {
        ScbRef(scb)
    }

    field!(hint_seq, k.hint_seq, AtomicU64);
    field!(hint_issued_ns, k.hint_issued_ns, AtomicU64);
    field!(escalations, k.escalations, AtomicU32);
    field!(pressure, k.pressure, AtomicU32);
    field!(kernel_flags, k.flags, AtomicU32);
    field!(magic, k.magic, AtomicU32);
    field!(ack_seq, u.ack_seq, AtomicU64);
    field!(critical_depth, u.critical_depth, AtomicU32);
    field!(user_flags, u.flags, AtomicU32);
    field!(mode, u.mode, AtomicU32);
    field!(checkpoints, u.checkpoints, AtomicU64);
    field!(yields, u.yields, AtomicU64);

    /// `k.abi_version` (a `u16`).
    pub(crate) fn abi_version(self) -> u16 {
        // SAFETY: see the type's contract.
        unsafe {
            std::sync::atomic::AtomicU16::from_ptr(&raw mut (*self.0).k.abi_version)
                .load(std::sync::atomic::Ordering::Relaxed)
        }
    }
}
