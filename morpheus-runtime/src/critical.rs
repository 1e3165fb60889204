// SPDX-License-Identifier: GPL-2.0-only
//! Critical sections: regions the kernel will not force-preempt.
//!
//! The depth is a thread-local counter (the source of truth), mirrored into
//! the SCB the thread uses (`u.critical_depth`) with a relaxed store and a
//! compiler fence, as the ABI's ordering contract says: the scheduler reads
//! it on the CPU the thread runs on, which observes the thread's own
//! program order. Entering and leaving is a TLS increment or decrement, one
//! store and a predictable branch (see `worker::hot::critical_enter`); a thread
//! that is not a worker yet attaches at its first section.
//!
//! A checkpoint inside a critical section never yields: the signal is
//! deferred (counted in the ledger) and stays pending, so the first
//! checkpoint after the section answers it. Yielding inside would defeat
//! the purpose (the section usually protects a lock or an invariant that
//! other tasks of the worker would then observe half-done), and the
//! scheduler already grants critical sections a bounded extension.
//!
//! Levels opened with `enter_critical()` (the guardless API) are counted
//! apart as well, so that `exit_critical()` cannot close a guard's level:
//! misuse is an error at the call that commits it.

use std::cell::Cell;
use std::marker::PhantomData;

use crate::error::Error;
use crate::worker::{self, decide, hot};

thread_local! {
    /// Debug builds: identity of the task that opened the outermost
    /// section on this thread, to catch a guard held across `.await`.
    static OWNER: Cell<u64> = const { Cell::new(0) };
    /// Levels opened by `enter_critical()` and not closed yet.
    static MANUAL: Cell<u32> = const { Cell::new(0) };
}

/// Identity of the running task for debug checks (0 outside a task).
fn task_identity() -> u64 {
    #[cfg(feature = "tokio")]
    return crate::tokio_support::task_identity();
    #[cfg(not(feature = "tokio"))]
    0
}

/// Debug builds: panics if a critical section opened by another task is
/// still open on this thread (its guard was held across an `.await`).
#[inline]
pub(crate) fn debug_check_owner(depth: u32) {
    if cfg!(debug_assertions) && depth > 0 && !std::thread::panicking() {
        let me = task_identity();
        let owner = OWNER.with(Cell::get);
        assert!(
            owner == me,
            "morpheus: a critical_section() guard was held across an .await: a section \
             opened by another task (id hash {owner:#x}) is still open while this task runs. \
             Drop the guard before awaiting."
        );
    }
}

/// Debug check for a checkpoint: a section opened by another task must not
/// be open now.
#[inline]
pub(crate) fn debug_check_checkpoint() {
    if cfg!(debug_assertions) {
        debug_check_owner(hot::critical_depth());
    }
}

/// Opens a level (both APIs).
#[inline(always)]
fn enter_level() {
    if cfg!(debug_assertions) {
        let d = hot::critical_depth();
        debug_check_owner(d);
        if d == 0 {
            OWNER.with(|o| o.set(task_identity()));
        }
    }
    hot::critical_enter();
}

/// Opens a critical section on the calling thread (nests): the manual API.
#[inline]
pub(crate) fn enter() -> Result<(), Error> {
    enter_level();
    MANUAL.with(|m| m.set(m.get().saturating_add(1)));
    Ok(())
}

/// Closes the innermost level opened by [`enter`] on the calling thread.
#[inline]
pub(crate) fn exit() -> Result<(), Error> {
    let manual = MANUAL.with(Cell::get);
    if manual == 0 {
        return Err(if hot::critical_depth() > 0 {
            Error::CriticalSectionNotManual
        } else {
            Error::UnbalancedCriticalSection
        });
    }
    if !hot::critical_exit() {
        return Err(Error::UnbalancedCriticalSection);
    }
    MANUAL.with(|m| m.set(manual - 1));
    Ok(())
}

/// [`exit`]; if that closes the outermost section and a yield was deferred
/// inside it, the yield is decided and acknowledged first, while the
/// section is still open, so the scheduler never sees the hint expired with
/// no section (it would escalate an escapable worker). Returns the cause:
/// the caller gives up the CPU right after. The fast path (no signal
/// pending) is inlined: a few thread-local loads and the exit itself.
#[inline]
pub(crate) fn exit_answering() -> Result<Option<morpheus_common::YieldCause>, Error> {
    let answered =
        if MANUAL.with(Cell::get) > 0 && hot::critical_depth() == 1 && hot::signal_pending() {
            answer_deferred()
        } else {
            None
        };
    exit()?;
    Ok(answered)
}

/// The slow path of [`exit_answering`]: decides and acknowledges the yield
/// deferred inside the section that is closing.
#[cold]
#[inline(never)]
fn answer_deferred() -> Option<morpheus_common::YieldCause> {
    let due = worker::current()?.decide(true)?;
    decide::commit(due);
    Some(due.cause)
}

/// Current nesting depth on the calling thread.
pub(crate) fn depth() -> u32 {
    hot::critical_depth()
}

/// Guard of a critical section: while it lives, the scheduler will not
/// force-preempt this thread and checkpoints do not yield. Created by
/// [`critical_section`](crate::critical_section).
///
/// Sections nest; each guard closes its own level when dropped, including
/// during a panic's unwinding.
///
/// The guard is neither `Send` nor `Sync`, so it cannot leave its thread,
/// and a future holding it across an `.await` cannot be spawned on a
/// multi-thread runtime:
///
/// ```compile_fail
/// # #[tokio::main] async fn main() {
/// tokio::spawn(async {
///     let _guard = morpheus_runtime::critical_section();
///     tokio::task::yield_now().await; // error: the guard is not Send
/// });
/// # }
/// ```
///
/// ```compile_fail
/// let guard = morpheus_runtime::critical_section();
/// std::thread::spawn(move || drop(guard)); // error: not Send
/// ```
///
/// On a current-thread runtime or a `LocalSet`, where the compiler cannot
/// catch it, debug builds panic when another task reaches a checkpoint or
/// opens a section while the guard is held across an `.await`.
#[must_use = "the critical section ends when the guard is dropped"]
#[derive(Debug)]
pub struct CriticalSection {
    _not_send: PhantomData<*const ()>,
}

impl CriticalSection {
    #[inline(always)]
    pub(crate) fn new() -> CriticalSection {
        enter_level();
        CriticalSection {
            _not_send: PhantomData,
        }
    }
}

impl Drop for CriticalSection {
    #[inline(always)]
    fn drop(&mut self) {
        if !hot::critical_exit() {
            guard_unbalanced();
        }
    }
}

/// A guard found no level to close: unreachable unless the thread's depth
/// was changed behind its back.
#[cold]
#[inline(never)]
fn guard_unbalanced() {
    let e = Error::UnbalancedCriticalSection;
    if !std::thread::panicking() {
        debug_assert!(false, "{e}");
    }
    log::error!("morpheus: {e}");
}
