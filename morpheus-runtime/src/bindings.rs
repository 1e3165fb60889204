// SPDX-License-Identifier: GPL-2.0-only
//! For language bindings: the synchronous, guardless calls.
//!
//! Rust code in a Tokio task uses [`checkpoint()`](crate::checkpoint()) and
//! [`critical_section()`](crate::critical_section). A binding to another
//! language cannot hold a guard across calls or await a Rust future, and
//! often yields its own way (the Python bindings give up the CPU with the
//! GIL released): it uses these calls instead. Synchronous Rust loops and
//! event loops other than Tokio may use them too.
//!
//! - [`checkpoint()`]: the checkpoint for synchronous code;
//!   [`yield_due()`] and [`DueYield`] split it into the decision and the
//!   yield.
//! - [`enter_critical()`], [`exit_critical()`] and
//!   [`exit_critical_answering()`]: critical sections without a guard.
//! - [`record_voluntary_yield()`]: a yield the caller takes itself.
//! - [`will_park()`] and [`unparked()`]: the event loop blocks for I/O and
//!   comes back.
//! - [`set_lazy_worker_options()`]: the options of threads that become
//!   workers on their own.

use morpheus_common::YieldCause;

use crate::checkpoint::{gives_cpu_away, sched_yield};
use crate::worker::decide::{self, Due, YieldMark};
use crate::worker::{self, WorkerOptions, hot};
use crate::{Error, critical};

/// The checkpoint for synchronous code.
///
/// Returns `None` when there is nothing to do (the fast path: one relaxed
/// load and a branch), or the cause when the thread should yield now: the
/// hint is already acknowledged and the ledger updated, and the thread has
/// given up the CPU once (`sched_yield`). The caller should also let its
/// own other work run (e.g. return to its event loop). The first call on a
/// thread makes it a worker. It is [`yield_due`] followed by
/// [`DueYield::yield_now`].
///
/// ```
/// use morpheus_runtime::bindings;
/// // Works on any thread, inside a runtime or not.
/// for _ in 0..1000 {
///     if let Some(cause) = bindings::checkpoint() {
///         println!("yielded: {cause}");
///     }
/// }
/// ```
#[inline]
pub fn checkpoint() -> Option<YieldCause> {
    yield_due().map(DueYield::yield_now)
}

/// The decision half of a synchronous checkpoint: is a yield due now, and
/// why? No system call and nothing acknowledged; act on the answer with
/// [`DueYield::yield_now`] (acknowledge and `sched_yield`) or
/// [`DueYield::acknowledge`] (acknowledge only, then give the CPU away
/// yourself, e.g. after releasing a lock such as Python's GIL).
///
/// When nothing is pending this is the checkpoint fast path (one relaxed
/// load and a branch). Inside a critical section it returns `None` and the
/// signal stays pending for the first checkpoint after the section. A
/// `DueYield` dropped without acting leaves the signal pending too: the
/// next checkpoint decides again. The first call on a thread makes it a
/// worker (then it returns `None`: the budget starts counting).
///
/// ```
/// use morpheus_runtime::bindings::yield_due;
/// for _ in 0..1000 {
///     if let Some(due) = yield_due() {
///         let cause = due.acknowledge();   // counted in the ledger
///         // ... release what must not be held while yielding ...
///         std::thread::yield_now();        // the yield itself
///         println!("yielded: {cause}");
///     }
/// }
/// ```
#[inline]
pub fn yield_due() -> Option<DueYield> {
    if !hot::signal_pending() {
        return None;
    }
    let due = decide::decide_slow()?;
    Some(DueYield {
        due,
        mark: decide::yield_mark(),
        _not_send: std::marker::PhantomData,
    })
}

/// A yield that is due on this thread ([`yield_due`]). It belongs to the
/// thread that decided it (neither `Send` nor `Sync`).
#[must_use = "a due yield does nothing until acknowledged; dropping it leaves the signal pending"]
#[derive(Debug)]
pub struct DueYield {
    due: Due,
    mark: Option<YieldMark>,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl DueYield {
    /// Why the yield is due.
    pub fn cause(&self) -> YieldCause {
        self.due.cause
    }

    /// Whether the yield is for other processes (a kernel hint, defensive
    /// or pressure mode), so the thread should give up its CPU; otherwise
    /// (budget, voluntary, catch-up) letting its own other work run is the
    /// yield.
    pub fn gives_cpu_away(&self) -> bool {
        gives_cpu_away(self.due.cause)
    }

    /// [`DueYield::acknowledge`], unless a yield was taken on this thread
    /// since this one was decided: then it was already answered (say, by
    /// another task of the same event loop that reached a checkpoint while
    /// this one let the loop run first) and nothing is recorded. Returns
    /// the cause if it acknowledged; the caller gives up the CPU only then.
    pub fn acknowledge_if_unanswered(self) -> Option<YieldCause> {
        decide::commit_if_unchanged(self.due, self.mark).then_some(self.due.cause)
    }

    /// Records the yield in the ledger, acknowledges the kernel hint it
    /// answers (if any) and restarts the budget, without yielding: the
    /// caller gives up the CPU right after. Returns the cause.
    pub fn acknowledge(self) -> YieldCause {
        decide::commit(self.due);
        self.due.cause
    }

    /// Whether the thread must keep its CPU: a catch-up (I/O arrived for
    /// the process while its workers were busy) asks it to serve its own
    /// ready work, I/O first, and giving the CPU away would only delay
    /// that work.
    pub fn keeps_cpu(&self) -> bool {
        self.due.cause == YieldCause::CatchUp
    }

    /// [`DueYield::acknowledge`], then gives up the CPU once
    /// (`sched_yield`), unless it [keeps it](DueYield::keeps_cpu). Returns
    /// the cause.
    pub fn yield_now(self) -> YieldCause {
        let keep = self.keeps_cpu();
        let cause = self.acknowledge();
        if !keep {
            sched_yield();
        }
        cause
    }
}

/// Records a voluntary yield the caller is about to take (e.g. its own
/// `yield_now`): counted as `voluntary`, and it answers a pending kernel
/// hint. [`crate::yield_now`] does this for Tokio.
pub fn record_voluntary_yield() {
    if let Ok(w) = worker::attach_lazily() {
        w.voluntary();
    }
}

/// Opens a critical section without a guard (for bindings that cannot hold
/// one, such as Python context managers). Pair it with [`exit_critical`] on
/// the same thread.
#[inline]
pub fn enter_critical() -> Result<(), Error> {
    critical::enter()
}

/// Closes the innermost section opened by [`enter_critical`]. If that
/// closes the outermost one and a yield was deferred inside it, the yield
/// is taken now: acknowledged while the section is still open (see
/// [`exit_critical_answering`]), then the CPU given up (`sched_yield`);
/// its cause is returned. Python's `morpheus.exit_critical()` is this call.
///
/// ```
/// use morpheus_runtime::Error;
/// use morpheus_runtime::bindings::{enter_critical, exit_critical};
/// enter_critical().unwrap();
/// assert_eq!(exit_critical(), Ok(None)); // nothing was deferred
/// let err = exit_critical().unwrap_err();
/// assert_eq!(err, Error::UnbalancedCriticalSection);
/// assert!(err.to_string().contains("pair every enter_critical()"));
/// ```
#[inline]
pub fn exit_critical() -> Result<Option<YieldCause>, Error> {
    let answered = critical::exit_answering()?;
    if answered.is_some() {
        sched_yield();
    }
    Ok(answered)
}

/// [`exit_critical`] for bindings that yield their own way: if this closes
/// the outermost section and a yield was deferred inside it, the yield is
/// acknowledged (ledger, kernel hint) *before* the section ends, and its
/// cause returned, but the CPU is not given up: the caller does that right
/// away (e.g. `sched_yield` after releasing a lock such as Python's GIL).
/// Acknowledging after the section ends would leave a moment in which the
/// scheduler sees an expired hint and no section, and may escalate an
/// escapable worker.
///
/// ```
/// use morpheus_runtime::bindings::{enter_critical, exit_critical_answering};
/// enter_critical().unwrap();
/// // ... nothing was deferred here ...
/// assert_eq!(exit_critical_answering(), Ok(None));
/// ```
#[inline]
pub fn exit_critical_answering() -> Result<Option<YieldCause>, Error> {
    critical::exit_answering()
}

/// The calling worker's event loop is about to block waiting for I/O or a
/// timer (no task is ready): until [`unparked()`], its budget cannot run
/// out, and an idle process costs the runtime's monitor thread no wake-ups.
/// Call [`unparked()`] when the wait returns. No-op on a thread that is not
/// a worker. Tokio runtimes built with [`Builder`](crate::Builder) do this
/// in their park hooks; a loop that never calls it is polled every half
/// budget while it idles.
pub fn will_park() {
    if let Some(w) = worker::current() {
        w.will_park();
    }
}

/// The calling worker's event loop is back from a wait announced with
/// [`will_park()`]: its budget starts now (every task had yielded or
/// finished before the wait). No-op on a thread that is not a worker.
pub fn unparked() {
    worker::unparked();
}

/// Sets the options of threads that become workers on their own (at their
/// first checkpoint or critical section) and that no runtime builder
/// configured, such as thread-pool threads. Threads that attach afterwards
/// use them; attached threads keep theirs. Default: [`WorkerOptions::default`]
/// (the process configuration's budget and escapability).
///
/// The Python bindings make such threads non-escapable: a thread that may
/// hold the GIL must never be force-preempted.
///
/// ```
/// use morpheus_runtime::bindings::{self, set_lazy_worker_options};
/// use morpheus_runtime::{WorkerOptions, current_worker};
/// set_lazy_worker_options(WorkerOptions { escapable: Some(false), ..Default::default() });
/// std::thread::spawn(|| {
///     bindings::checkpoint();
///     assert!(!current_worker().unwrap().escapable);
/// })
/// .join()
/// .unwrap();
/// ```
pub fn set_lazy_worker_options(options: WorkerOptions) {
    worker::set_lazy_defaults(options)
}
