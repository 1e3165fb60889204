// SPDX-License-Identifier: GPL-2.0-only
//! Which SCB a worker polls: its local one until it is registered, then
//! its slot in scx_morpheus's array.
//!
//! Only the owner thread changes `HOT.scb` (a remote write could land
//! between its load and its use on the fast path). A worker registered on
//! its own thread switches at once ([`Worker::adopt`]); one registered by
//! the monitor is offered the slot ([`Worker::offer_scb`]), and the offer
//! wakes it so that its next checkpoint switches.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::compiler_fence;

use morpheus_common::{SCBK_PARTIAL, SCHED_EXT, Scb, YieldCause};

use super::Worker;
use super::hot::POISON;
use super::state::{EPOCH_WAKE, Reg};
use crate::scb::ScbRef;

impl Worker {
    /// Switches the owner thread to its local SCB with no signal pending
    /// (owner thread only, at attach).
    pub(super) fn activate(&self) {
        // SAFETY: the worker's own local SCB.
        let local = unsafe { ScbRef::new(self.local.get()) };
        local.critical_depth().store(self.hot().depth(), Relaxed);
        compiler_fence(SeqCst);
        self.hot().scb.store(self.local.get(), Relaxed);
        self.hot().expected.store(0, Relaxed);
    }

    /// The worker got a slot (`reg`, whose grace period is `grace_ns`):
    /// registered on its own thread it switches to the slot now, else at
    /// its next checkpoint. Called under the session lock.
    pub(crate) fn registered(&self, reg: Reg, grace_ns: u64, own_thread: bool) {
        // SAFETY: a slot of a never-unmapped mapping.
        let escalations = unsafe { ScbRef::new(reg.scb) }.escalations();
        self.signal.reset_escalations(escalations.load(Relaxed));
        if own_thread {
            self.adopt(reg.scb, grace_ns);
        } else {
            self.offer_scb(reg.scb, grace_ns);
        }
        self.registration.set(reg);
    }

    /// Hands this worker a newly registered SCB; it switches to it at its
    /// next checkpoint.
    fn offer_scb(&self, scb: *mut Scb, grace_ns: u64) {
        // SAFETY: a slot of a never-unmapped mapping.
        let new = unsafe { ScbRef::new(scb) };
        // Pre-fill the user line so the kernel sees the right state during
        // the short window before adoption.
        new.critical_depth().store(self.hot().depth(), Relaxed);
        new.user_flags().store(self.user_flags(), Relaxed);
        self.registration.offer(scb, grace_ns);
        self.poison(EPOCH_WAKE, YieldCause::Budget);
    }

    /// Switches to an offered SCB (owner thread only).
    pub(crate) fn adopt_offered(&self) {
        if let Some((scb, grace_ns)) = self.registration.take_offer() {
            self.adopt(scb, grace_ns);
        }
    }

    /// Switches to `scb` now (owner thread only). Hints issued on the slot
    /// before adoption are acknowledged without a yield: they were meant
    /// for the previous owner, or were sent in the instant before the
    /// worker could see its slot.
    fn adopt(&self, scb: *mut Scb, grace_ns: u64) {
        // SAFETY: a slot of a never-unmapped mapping.
        let new = unsafe { ScbRef::new(scb) };
        new.critical_depth().store(self.hot().depth(), Relaxed);
        compiler_fence(SeqCst);
        new.user_flags().store(self.user_flags(), Relaxed);
        new.mode().store(self.mode().as_u32(), Relaxed);
        let word = new.hint_seq().load(Acquire);
        let seq = crate::scb::hint_part(word);
        new.ack_seq().store(seq, Release);
        self.signal
            .reset_escalations(new.escalations().load(Relaxed));
        self.own.adopted(grace_ns, seq);
        self.hot().scb.store(scb, Relaxed);
        if new.kernel_flags().load(Relaxed) & SCBK_PARTIAL != 0 {
            self.switch_to_sched_ext();
        }
        // Keep a pending budget signal (the monitor re-checks anyway).
        let keep = self.hot().expected.load(Relaxed) & POISON;
        self.hot().expected.store(word | keep, Relaxed);
    }

    /// Under a `--partial` scheduler (which schedules only `SCHED_EXT`
    /// threads), the worker thread switches itself to `SCHED_EXT`: the
    /// loader never changes a thread's policy by its id, which a new thread
    /// may have taken over. Owner thread only; once per thread (the policy
    /// outlives the scheduler instance).
    fn switch_to_sched_ext(&self) {
        if !self.own.first_switch_to_sched_ext() {
            return;
        }
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sets the calling thread's own policy; `param` is valid.
        if unsafe { libc::sched_setscheduler(0, SCHED_EXT, &param) } != 0 {
            let err = std::io::Error::last_os_error();
            self.process.say_once(
                log::Level::Warn,
                &format!(
                    "morpheus: cannot switch worker thread {} to SCHED_EXT ({err}): \
                     scx_morpheus runs --partial and will not schedule or hint it",
                    self.tid
                ),
            );
        }
    }
}
