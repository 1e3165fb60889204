// SPDX-License-Identifier: GPL-2.0-only
//! The checkpoint slow path: a signal is pending. First the decision
//! ([`decide_slow`]: yield now, and why?), then, once the caller commits to
//! the yield, the record ([`commit`]: ledger, acknowledgement, budget
//! restart). The decision makes no system call and reads no clock.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::fence;

use morpheus_common::clock::monotonic_ns;
use morpheus_common::{RuntimeMode, YieldCause};

use super::hot::POISON;
use super::{Worker, attach_lazily, current};
use crate::scb::{catch_up_between, hint_part};

/// What the slow path decided: yield for `cause`, answering kernel hint
/// sequence `answer` if any; `word` is the signal word it decided on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Due {
    pub(crate) cause: YieldCause,
    pub(crate) answer: Option<u64>,
    pub(crate) word: u64,
}

impl Worker {
    /// Decides whether the caller must yield now and why, without yielding
    /// or acknowledging: that is [`Worker::took_yield`], once the caller
    /// commits to the yield. With `leaving` the caller is about to close
    /// its outermost critical section, so the section does not defer.
    pub(crate) fn decide(&self, leaving: bool) -> Option<Due> {
        fence(Acquire);
        self.ledger.slow_checkpoint();
        self.adopt_offered();
        let scb = self.scb();
        let checkpoints = scb.checkpoints();
        checkpoints.store(checkpoints.load(Relaxed).wrapping_add(1), Relaxed);
        let word = scb.hint_seq().load(Acquire);
        let seq = hint_part(word);
        let expected = self.hot().expected.load(Acquire);
        let epoch = self.own.epoch();
        let kernel = seq != hint_part(expected);
        let catch_up = catch_up_between(expected & !POISON, word);
        let local = if expected & POISON != 0 {
            self.signal.cause_in(epoch)
        } else {
            None
        };
        if kernel {
            self.ledger.hints_seen(self.own.hints_up_to(seq));
        }
        if !kernel && !catch_up && local.is_none() {
            // A stale poison (the worker yielded since) or an adoption wake.
            self.hot().expected.store(word, Relaxed);
            return None;
        }
        if !leaving && self.hot().depth() > 0 {
            // Inside a critical section: never yield here. The signal stays
            // pending (so is not acknowledged) and the first checkpoint
            // after the section answers it.
            self.ledger.checkpoint_deferred();
            return None;
        }
        let mode = self.mode();
        scb.mode().store(mode.as_u32(), Relaxed);
        let honour = kernel && mode != RuntimeMode::Deterministic;
        if kernel && !honour {
            self.ledger.hint_ignored();
        }
        // A catch-up is a kernel signal too: a worker that ignores hints
        // (deterministic mode) ignores it.
        let cause = if honour {
            YieldCause::Hint
        } else if let Some(c) = local {
            c
        } else if catch_up && mode != RuntimeMode::Deterministic {
            YieldCause::CatchUp
        } else {
            self.hot().expected.store(word, Relaxed);
            return None;
        };
        Some(Due {
            cause,
            answer: honour.then_some(seq),
            word,
        })
    }

    /// Records a yield (about to happen) and, if `answer` is a kernel
    /// sequence, acknowledges it and records the response time. `word` is
    /// the signal word decided on: later signals stay pending.
    pub(crate) fn took_yield(&self, cause: YieldCause, answer: Option<u64>, word: u64) {
        let scb = self.scb();
        self.ledger.yielded(cause, 1);
        let yields = scb.yields();
        yields.store(yields.load(Relaxed).wrapping_add(1), Relaxed);
        if let Some(seq) = answer {
            let grace = self.own.grace_ns();
            let issued = scb.hint_issued_ns().load(Relaxed);
            let response = monotonic_ns().saturating_sub(issued);
            scb.ack_seq().store(seq, Release);
            self.ledger.hint_answered(response, grace);
        }
        self.own.yielded(self.cpu_now(), monotonic_ns());
        // Clears any budget poison: the budget restarts now. A signal that
        // arrived after `word` was read still differs and is seen next time.
        self.hot().expected.store(word, Relaxed);
    }

    /// A voluntary yield by the application: recorded, and it answers a
    /// pending kernel hint (the worker is yielding anyway).
    pub(crate) fn voluntary(&self) {
        self.adopt_offered();
        if self.hot().depth() > 0 {
            self.ledger.checkpoint_deferred();
        }
        let scb = self.scb();
        let word = scb.hint_seq().load(Acquire);
        let seq = hint_part(word);
        let expected = hint_part(self.hot().expected.load(Relaxed));
        let answer = (seq != expected && self.mode() != RuntimeMode::Deterministic).then_some(seq);
        if answer.is_some() {
            self.ledger.hints_seen(self.own.hints_up_to(seq));
        }
        self.took_yield(YieldCause::Voluntary, answer, word);
    }
}

/// The slow path's decision: attaches a new thread (no yield then), or
/// decides about the pending signal without acting on it.
#[cold]
#[inline(never)]
pub(crate) fn decide_slow() -> Option<Due> {
    match current() {
        Some(w) => w.decide(false),
        None => {
            // First checkpoint on this thread: become a worker. No yield now;
            // the budget starts counting from here.
            let _ = attach_lazily();
            None
        }
    }
}

/// Records and acknowledges a decided yield (no-op if the thread stopped
/// being a worker in between).
pub(crate) fn commit(due: Due) {
    if let Some(w) = current() {
        w.took_yield(due.cause, due.answer, due.word);
    }
}

/// Which worker the calling thread is and how many yields it has taken. A
/// yield decided under one mark is still the caller's to take only while
/// the mark stays the same: an async task may have moved to another worker
/// thread, or another task on this thread may have yielded meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct YieldMark {
    worker: u64,
    epoch: u64,
}

/// The calling thread's [`YieldMark`], if it is a worker.
pub(crate) fn yield_mark() -> Option<YieldMark> {
    current().map(|w| YieldMark {
        worker: w.id,
        epoch: w.own.epoch(),
    })
}

/// [`commit`], if the calling thread's mark is still `mark`; returns
/// whether it committed.
pub(crate) fn commit_if_unchanged(due: Due, mark: Option<YieldMark>) -> bool {
    if mark.is_none() || yield_mark() != mark {
        return false;
    }
    commit(due);
    true
}
