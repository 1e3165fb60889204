// SPDX-License-Identifier: GPL-2.0-only
//! Kernel-guided cooperative yielding for async runtimes.
//!
//! An async worker thread runs many tasks; a task that computes for long
//! without awaiting starves the others on its worker (in-process), and the
//! worker holds its CPU while other processes wait (system-wide). Morpheus
//! gives such code safe points to yield at, and tells it when to use them:
//!
//! ```
//! use morpheus_runtime::{checkpoint, critical_section, Builder};
//! #[tokio::main]
//! async fn main() {
//!     for i in 0..1_000_000 {
//!         // ... work ...
//!         if i % 1000 == 0 { checkpoint!(); }   // yields only when it should
//!     }
//!     let _guard = critical_section();          // the kernel will not force-preempt here
//! }
//! ```
//!
//! - [`checkpoint!()`] costs one relaxed load and a branch when there is
//!   nothing to do. When a hint is pending it lets the worker's other tasks
//!   run (`tokio::task::yield_now` semantics) and records the cause in the
//!   yield ledger; for kernel hints it then acknowledges the hint and gives
//!   the CPU to other processes (`sched_yield`), so the short requests
//!   waiting in the worker are answered first.
//! - [`critical_section()`] returns a guard; while it lives the scheduler
//!   will not force-preempt the thread and checkpoints do not yield.
//! - [`Builder`] wraps `tokio::runtime::Builder` and registers its workers;
//!   a plain `#[tokio::main]` works too (threads attach at their first
//!   checkpoint), and so does a machine without the scheduler.
//!
//! # Where hints come from
//!
//! | Source   | Signal                                                        | Cause recorded |
//! |----------|---------------------------------------------------------------|----------------|
//! | kernel   | scx_morpheus bumps `hint_seq` in the worker's shared control block | `hint`     |
//! | budget   | the worker has been busy for [`Config::budget`] (10 ms) since its last yield | `budget` |
//! | pressure | PSI `some avg10` is high: the budget is halved (no kernel source) | `pressure`  |
//! | defensive| escalations seen: the budget is quartered                     | `defensive`    |
//!
//! The kernel source needs scx_morpheus running (socket [`Config::socket_path`]);
//! without it, or when it stops, the runtime keeps working on the budget
//! source, logs why once, and reconnects in the background when the
//! scheduler comes back. [`metrics::snapshot`] shows which sources are
//! active; [`Config::sources`] (`MORPHEUS_SOURCES`) chooses them.
//!
//! # Modes
//!
//! [`RuntimeMode::Deterministic`]: local budget only, kernel hints ignored.
//! [`RuntimeMode::Pressured`]: kernel hints (or PSI overload) honoured, the
//! budget as a floor. [`RuntimeMode::Defensive`]: escalations against this
//! process were seen; yield four times as eagerly until they stop and
//! pressure subsides. The mode moves automatically with hysteresis unless
//! pinned ([`Config::mode`], [`Builder::mode`]).
//!
//! # Without Tokio
//!
//! The core has no async runtime dependency (disable the default `tokio`
//! feature): [`checkpoint_sync`] serves synchronous loops and other event
//! loops, [`yield_due`] splits it into the decision and the yield (the
//! Python bindings yield with the GIL released), [`attach_current_thread`]
//! makes a thread a worker explicitly and [`set_lazy_worker_options`] sets
//! the options of threads that become workers on their own.
//!
//! # Misuse
//!
//! Errors say what to do next ([`Error`]). `checkpoint!()` outside a Tokio
//! runtime logs once and still yields (the generic way); [`try_checkpoint`]
//! returns the error. `exit_critical()` without a matching
//! `enter_critical()` returns an error; a thread that ends inside an
//! `enter_critical()` section is logged once.
//!
//! # fork
//!
//! A child of `fork()` does not use its parent's registration, control
//! block or session (a `pthread_atfork` child handler drops them): its
//! first checkpoint makes it a worker of its own, with the parent's
//! configuration. Open critical sections stay open in the child.

#![warn(missing_docs)]

mod checkpoint;
mod config;
mod critical;
mod error;
mod ledger;
pub mod metrics;
mod monitor;
mod process;
mod scb;
mod session;
#[cfg(feature = "tokio")]
mod tokio_support;
mod worker;

#[doc(hidden)]
pub use crate::checkpoint::__checkpoint;
#[cfg(feature = "tokio")]
pub use crate::checkpoint::try_checkpoint;
pub use crate::config::{Config, ConfigError, DEFAULT_BUDGET, Sources};
pub use crate::critical::CriticalSection;
pub use crate::error::Error;
pub use crate::ledger::{LedgerSnapshot, RESPONSE_BUCKETS_NS};
pub use crate::session::RegistrationState;
#[cfg(feature = "tokio")]
pub use crate::tokio_support::{Builder, yield_now};
pub use crate::worker::WorkerOptions;
pub use morpheus_common::{RuntimeKind, RuntimeMode, YieldCause};

use crate::checkpoint::{gives_cpu_away, sched_yield};
use crate::worker::decide;

/// Configures Morpheus for this process. Call it before the first
/// checkpoint, critical section or runtime build; otherwise the
/// configuration comes from the environment ([`Config::from_env`]).
///
/// ```
/// use std::time::Duration;
/// let config = morpheus_runtime::Config { budget: Duration::from_millis(5), ..Default::default() };
/// morpheus_runtime::init(config).expect("first use");
/// assert!(morpheus_runtime::init(Default::default()).is_err()); // too late now
/// ```
pub fn init(config: Config) -> Result<(), Error> {
    crate::process::Process::init(config)
}

/// A safe point to yield at, in async code: `checkpoint!();`
///
/// Expands to `morpheus_runtime::__checkpoint().await`. When no hint is
/// pending it completes immediately (one relaxed load and a branch). When
/// one is, it yields to the worker's other tasks and records the cause; if
/// the hint came from the kernel or from defensive/pressure modes it then
/// acknowledges it, gives the CPU to other processes (`sched_yield`) and
/// lets the tasks that became ready meanwhile run. Inside a
/// [`critical_section`] it never yields.
///
/// The first checkpoint on a thread makes it a worker (once; see
/// [`attach_current_thread`]). Outside async code use [`checkpoint_sync`]:
/// `.await` is only allowed inside `async` functions and blocks.
#[macro_export]
macro_rules! checkpoint {
    () => {
        $crate::__checkpoint().await
    };
}

/// A checkpoint for synchronous code (and event loops other than Tokio).
///
/// Returns `None` when there is nothing to do (the fast path), or the cause
/// when the thread should yield now: the hint is already acknowledged and
/// the ledger updated, and the thread has given up the CPU once
/// (`sched_yield`). The caller should also let its own other work run (e.g.
/// return to its event loop). The first call on a thread makes it a worker.
/// It is [`yield_due`] followed by [`DueYield::yield_now`].
///
/// ```
/// // Works on any thread, inside a runtime or not.
/// for _ in 0..1000 {
///     if let Some(cause) = morpheus_runtime::checkpoint_sync() {
///         println!("yielded: {cause}");
///     }
/// }
/// ```
#[inline]
pub fn checkpoint_sync() -> Option<YieldCause> {
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
/// use morpheus_runtime::yield_due;
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
    if !crate::worker::hot::signal_pending() {
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
    due: decide::Due,
    mark: Option<decide::YieldMark>,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl DueYield {
    /// Why the yield is due.
    pub fn cause(&self) -> YieldCause {
        self.due.cause
    }

    /// Whether the yield is for other processes (a kernel hint, defensive
    /// or pressure mode), so the thread should give up its CPU; otherwise
    /// (budget, voluntary) letting its own other work run is the yield.
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

    /// [`DueYield::acknowledge`], then gives up the CPU once
    /// (`sched_yield`). Returns the cause.
    pub fn yield_now(self) -> YieldCause {
        let cause = self.acknowledge();
        sched_yield();
        cause
    }
}

/// Records a voluntary yield the application is about to take (e.g. its
/// own `yield_now`): counted as `voluntary`, and it answers a pending
/// kernel hint. [`yield_now`] does this for Tokio.
pub fn record_voluntary_yield() {
    if let Ok(w) = crate::worker::attach_lazily() {
        w.voluntary();
    }
}

/// Opens a critical section until the guard is dropped: the scheduler will
/// not force-preempt this thread, and checkpoints do not yield (they defer
/// to the first checkpoint after the section). Sections nest.
///
/// ```
/// let outer = morpheus_runtime::critical_section();
/// {
///     let _inner = morpheus_runtime::critical_section();
///     assert_eq!(morpheus_runtime::critical_depth(), 2);
/// }
/// assert_eq!(morpheus_runtime::critical_depth(), 1);
/// drop(outer);
/// assert_eq!(morpheus_runtime::critical_depth(), 0);
/// ```
///
/// Keep sections short: the scheduler caps them (50 ms by default).
#[inline]
pub fn critical_section() -> CriticalSection {
    CriticalSection::new()
}

/// Opens a critical section without a guard (for bindings that cannot hold
/// one, such as Python context managers). Pair it with [`exit_critical`] on
/// the same thread.
#[inline]
pub fn enter_critical() -> Result<(), Error> {
    crate::critical::enter()
}

/// Closes the innermost section opened by [`enter_critical`].
///
/// ```
/// use morpheus_runtime::{Error, enter_critical, exit_critical};
/// enter_critical().unwrap();
/// exit_critical().unwrap();
/// let err = exit_critical().unwrap_err();
/// assert_eq!(err, Error::UnbalancedCriticalSection);
/// assert!(err.to_string().contains("pair every enter_critical()"));
/// ```
#[inline]
pub fn exit_critical() -> Result<(), Error> {
    crate::critical::exit()
}

/// [`exit_critical`] for bindings that yield their own way: if this closes
/// the outermost section and a yield was deferred inside it, the yield is
/// acknowledged (ledger, kernel hint) *before* the section ends, and its
/// cause returned: give up the CPU right away (e.g. `sched_yield` after
/// releasing a lock such as Python's GIL). Acknowledging after the section
/// ends would leave a moment in which the scheduler sees an expired hint
/// and no section, and may escalate an escapable worker.
///
/// ```
/// use morpheus_runtime::{enter_critical, exit_critical_answering};
/// enter_critical().unwrap();
/// // ... nothing was deferred here ...
/// assert_eq!(exit_critical_answering(), Ok(None));
/// ```
pub fn exit_critical_answering() -> Result<Option<YieldCause>, Error> {
    crate::critical::exit_answering()
}

/// The calling thread's critical-section depth (0 outside any section).
pub fn critical_depth() -> u32 {
    crate::critical::depth()
}

/// Whether the calling thread is a worker now (a thread-local read: no
/// system call, nothing attached).
///
/// ```
/// std::thread::spawn(|| {
///     assert!(!morpheus_runtime::is_worker());
///     morpheus_runtime::checkpoint_sync(); // the first checkpoint attaches
///     assert!(morpheus_runtime::is_worker());
/// })
/// .join()
/// .unwrap();
/// ```
#[inline]
pub fn is_worker() -> bool {
    crate::worker::is_worker()
}

/// Sets the options of threads that become workers on their own (at their
/// first checkpoint or critical section) and that no runtime builder
/// configured, such as thread-pool threads. Threads that attach afterwards
/// use them; attached threads keep theirs. Default: [`WorkerOptions::default`]
/// (the process configuration's budget and escapability).
///
/// Bindings use it to keep such threads safe: the Python bindings make them
/// non-escapable, since a thread holding the GIL must never be
/// force-preempted.
///
/// ```
/// use morpheus_runtime::{WorkerOptions, current_worker, set_lazy_worker_options};
/// set_lazy_worker_options(WorkerOptions { escapable: Some(false), ..Default::default() });
/// std::thread::spawn(|| {
///     morpheus_runtime::checkpoint_sync();
///     assert!(!current_worker().unwrap().escapable);
/// })
/// .join()
/// .unwrap();
/// ```
pub fn set_lazy_worker_options(options: WorkerOptions) {
    crate::worker::set_lazy_defaults(options)
}

/// Makes the calling thread a worker now, with these options: it gets a
/// budget and, if scx_morpheus runs, a kernel registration. Threads also
/// attach on their own at their first checkpoint or critical section, with
/// default options; [`Builder`] attaches its workers with its options. A
/// thread already attached keeps its options.
pub fn attach_current_thread(options: WorkerOptions) -> Result<(), Error> {
    crate::worker::attach(options).map(|_| ())
}

/// Stops treating the calling thread as a worker: unregisters it from the
/// kernel and folds its ledger into the process totals. Thread exit does
/// this automatically.
pub fn detach_current_thread() {
    crate::worker::detach()
}

/// The calling thread's worker metrics, or [`Error::NotAWorker`].
pub fn current_worker() -> Result<metrics::WorkerSnapshot, Error> {
    let w = crate::worker::current().ok_or(Error::NotAWorker)?;
    metrics::snapshot()
        .workers
        .into_iter()
        .find(|s| s.id == w.id())
        .ok_or(Error::NotAWorker)
}

/// The README's example is compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctest;
