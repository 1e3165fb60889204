// SPDX-License-Identifier: GPL-2.0-only
//! The async checkpoint ([`checkpoint()`], and the
//! [`checkpoint!`](crate::checkpoint!) macro) and its slow path.

use morpheus_common::YieldCause;

use crate::critical;
use crate::worker::decide::{self, Due};
use crate::worker::hot;

/// A safe point to yield at, in async code: `checkpoint().await`.
///
/// When no hint is pending it completes at once: one relaxed load and a
/// branch. When one is, it yields to the worker's other tasks and records
/// the cause; if the hint came from the kernel or from defensive or
/// pressure mode it then acknowledges it, gives the CPU to other processes
/// (`sched_yield`) and lets the tasks that became ready meanwhile run.
/// Inside a [`critical_section`](crate::critical_section) it never yields.
///
/// The first checkpoint on a thread makes it a worker (once; see
/// [`attach_worker`](crate::attach_worker)). [`checkpoint!()`](crate::checkpoint!)
/// is the same. Outside async code use
/// [`bindings::checkpoint`](crate::bindings::checkpoint).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// for i in 0..10_000u32 {
///     if i % 100 == 0 {
///         morpheus_runtime::checkpoint().await;
///     }
/// }
/// # }
/// ```
#[inline(always)]
#[allow(clippy::manual_async_fn)] // the Send + Sync + 'static bound is the contract
pub fn checkpoint() -> impl Future<Output = ()> + Send + Sync + 'static {
    async {
        critical::debug_check_checkpoint();
        if hot::signal_pending() {
            checkpoint_yield().await;
        }
    }
}

/// The slow path of the async checkpoint.
async fn checkpoint_yield() {
    #[cfg(feature = "tokio")]
    let in_runtime = crate::tokio_support::in_runtime();
    #[cfg(not(feature = "tokio"))]
    let in_runtime = false;
    #[cfg(feature = "tokio")]
    if !in_runtime {
        crate::tokio_support::report_outside_runtime();
    }
    if let Some(due) = decide::decide_slow() {
        yield_at_checkpoint(due, in_runtime).await;
    }
}

/// [`checkpoint()`] that reports misuse as a value:
/// `Err(Error::OutsideRuntime)` when polled outside a Tokio runtime (then
/// it does nothing), else what the checkpoint did: `Ok(None)` (nothing to
/// do) or `Ok(Some(cause))` (it yielded, for that cause).
///
/// `checkpoint!()` checks the runtime only on its slow path (the first
/// checkpoint of a thread, and every one that yields), so that its fast
/// path stays one load and a branch; when it finds none it logs the error
/// once and yields the generic way (waking itself). `try_checkpoint()`
/// checks on every call, which costs a look-up of Tokio's context (tens
/// of nanoseconds): use it where you want the error, not in hot loops.
///
/// ```
/// use morpheus_runtime::{Error, try_checkpoint};
///
/// // Inside a runtime: Ok.
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// assert!(rt.block_on(try_checkpoint()).is_ok());
///
/// // Polled by something else (here a no-op waker): the error, as a value.
/// let mut fut = std::pin::pin!(try_checkpoint());
/// let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
/// let std::task::Poll::Ready(result) = fut.as_mut().poll(&mut cx) else { unreachable!() };
/// assert_eq!(result, Err(Error::OutsideRuntime));
/// ```
#[cfg(feature = "tokio")]
pub async fn try_checkpoint() -> Result<Option<YieldCause>, crate::Error> {
    if !crate::tokio_support::in_runtime() {
        return Err(crate::Error::OutsideRuntime);
    }
    critical::debug_check_checkpoint();
    if !hot::signal_pending() {
        return Ok(None);
    }
    match decide::decide_slow() {
        Some(due) => {
            yield_at_checkpoint(due, true).await;
            Ok(Some(due.cause))
        }
        None => Ok(None),
    }
}

/// Takes a yield decided at an async checkpoint.
///
/// A yield that only lets the worker's other tasks run (budget, voluntary)
/// is recorded and taken. One that gives the CPU to other processes (a
/// kernel hint, defensive or pressure mode) first lets the worker's ready
/// tasks run, including those its I/O driver makes ready then; only when
/// this task is polled again does it acknowledge and `sched_yield`, and
/// once back it lets the tasks that became ready meanwhile run too. Short
/// requests that arrived while a long task ran are answered before the
/// worker gives its CPU away, not after another process's turn. This gains
/// the worker no CPU: the scheduler charges it for the time those tasks
/// take, and its yield window and caps bound how long it keeps the CPU
/// before it answers. If another task on this worker answered the hint
/// meanwhile, or this task now runs on another worker thread, there is
/// nothing left to answer here.
///
/// A catch-up (I/O arrived while every worker of the process was busy)
/// keeps the CPU: the worker's ready tasks run, its I/O driver first, with
/// the signal still pending so that the other tasks on this worker yield
/// too and the driver is reached; the first of them polled again records
/// it.
async fn yield_at_checkpoint(due: Due, in_runtime: bool) {
    if due.cause == YieldCause::CatchUp {
        let mark = decide::yield_mark();
        yield_to_tasks(in_runtime).await;
        decide::commit_if_unchanged(due, mark);
        return;
    }
    if !gives_cpu_away(due.cause) {
        decide::commit(due);
        return yield_to_tasks(in_runtime).await;
    }
    let mark = decide::yield_mark();
    yield_to_tasks(in_runtime).await;
    if decide::commit_if_unchanged(due, mark) {
        sched_yield();
        yield_to_tasks(in_runtime).await;
    }
}

/// Lets the worker's other ready tasks run: the Tokio way on a Tokio
/// worker, else the generic executor way ([`yield_back`]).
async fn yield_to_tasks(in_runtime: bool) {
    #[cfg(feature = "tokio")]
    if in_runtime {
        return crate::tokio_support::yield_task().await;
    }
    let _ = in_runtime;
    yield_back().await
}

/// Wakes ourselves and returns `Pending` once (the generic executor way).
pub(crate) async fn yield_back() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}

/// Causes that are about other processes, not only this worker's tasks.
pub(crate) fn gives_cpu_away(cause: YieldCause) -> bool {
    !matches!(
        cause,
        YieldCause::Budget | YieldCause::Voluntary | YieldCause::CatchUp
    )
}

/// Gives up the CPU once.
pub(crate) fn sched_yield() {
    // SAFETY: no arguments, no memory effects.
    unsafe { libc::sched_yield() };
}
