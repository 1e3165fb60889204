// SPDX-License-Identifier: GPL-2.0-only
//! Critical sections: regions the kernel will not force-preempt.
//!
//! The depth lives in the worker's SCB (`u.critical_depth`), written by the
//! owning thread with a relaxed store followed by a compiler fence, as the
//! ABI's ordering contract says: the scheduler reads it on the CPU the
//! thread runs on, which observes the thread's own program order.
//!
//! A checkpoint inside a critical section never yields: the signal is
//! deferred (counted in the ledger) and stays pending, so the first
//! checkpoint after the section answers it. Yielding inside would defeat
//! the purpose (the section usually protects a lock or an invariant that
//! other tasks of the worker would then observe half-done), and the
//! scheduler already grants critical sections a bounded extension.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::compiler_fence;

use super::error::Error;
use super::scb::ScbRef;
use super::worker;

thread_local! {
    /// Debug builds: identity of the task that opened the outermost
    /// section on this thread, to catch a guard held across `.await`.
    static OWNER: Cell<u64> = const { Cell::new(0) };
}

/// The SCB of the calling thread's worker, attaching the thread if needed.
fn own_scb() -> Result<ScbRef, Error> {
    Ok(worker::attach_lazily()?.scb())
}

/// Debug builds: panics if a critical section opened by another task is
/// still open on this thread (its guard was held across an `.await`).
#[inline]
pub(crate) fn debug_check_owner(depth: u32) {
    if cfg!(debug_assertions) && depth > 0 && !std::thread::panicking() {
        let me = crate::task_identity();
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
    if cfg!(debug_assertions)
        && let Some(w) = worker::current()
    {
        debug_check_owner(w.scb().critical_depth().load(Relaxed));
    }
}

/// Opens a critical section on the calling thread (nests).
pub(crate) fn enter() -> Result<(), Error> {
    let scb = own_scb()?;
    let depth = scb.critical_depth();
    let d = depth.load(Relaxed);
    debug_check_owner(d);
    if d == 0 && cfg!(debug_assertions) {
        OWNER.with(|o| o.set(crate::task_identity()));
    }
    depth.store(d.saturating_add(1), Relaxed);
    compiler_fence(SeqCst);
    Ok(())
}

/// Closes the innermost critical section of the calling thread.
pub(crate) fn exit() -> Result<(), Error> {
    let Some(w) = worker::current() else {
        return Err(Error::UnbalancedCriticalSection);
    };
    compiler_fence(SeqCst);
    let depth = w.scb().critical_depth();
    let d = depth.load(Relaxed);
    if d == 0 {
        return Err(Error::UnbalancedCriticalSection);
    }
    depth.store(d - 1, Relaxed);
    compiler_fence(SeqCst);
    Ok(())
}

/// Current nesting depth on the calling thread (0 if not a worker).
pub(crate) fn depth() -> u32 {
    worker::current().map_or(0, |w| w.scb().critical_depth().load(Relaxed))
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
    entered: bool,
    _not_send: PhantomData<*const ()>,
}

impl CriticalSection {
    pub(crate) fn new() -> CriticalSection {
        CriticalSection {
            entered: enter().is_ok(),
            _not_send: PhantomData,
        }
    }
}

impl Drop for CriticalSection {
    fn drop(&mut self) {
        if self.entered
            && let Err(e) = exit()
        {
            // Only reachable if exit_critical() closed this guard's level.
            if !std::thread::panicking() {
                debug_assert!(false, "{e}");
            }
            log::error!("morpheus: {e}");
        }
    }
}
