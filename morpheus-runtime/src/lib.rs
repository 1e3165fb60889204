// SPDX-License-Identifier: GPL-2.0-only
//! Kernel-guided cooperative yielding for async runtimes.
//!
//! # Cooperative yielding
//!
//! An async worker thread runs many tasks, and a task keeps its thread
//! until it awaits. A task that computes for long without awaiting starves
//! the other tasks of its worker, and the worker holds its CPU while other
//! processes wait for one. Tokio's own cooperative budget does not catch
//! this: it counts resource operations, and a computation performs none.
//!
//! This crate gives such code safe points to yield at, and tells it when
//! to use them: when scx_morpheus (a sched_ext scheduler) hints that others
//! wait for the CPU, when the worker ran past its local time budget, or
//! when the machine is overloaded.
//!
//! ```
//! use morpheus_runtime::{checkpoint, critical_section};
//!
//! #[tokio::main]
//! async fn main() {
//!     for i in 0..1_000_000 {
//!         // ... work ...
//!         if i % 1000 == 0 {
//!             checkpoint().await; // yields only when it should (or: checkpoint!())
//!         }
//!     }
//!     let _guard = critical_section(); // the kernel will not force-preempt here
//! }
//! ```
//!
//! # The contract
//!
//! - A checkpoint ([`checkpoint()`]`.await`, or the [`checkpoint!()`]
//!   macro) is a point where the task may be suspended. It yields only when
//!   a hint source asks: then it lets the worker's other tasks run (Tokio's
//!   `yield_now`), records the cause in the yield ledger ([`metrics`]) and,
//!   when the yield is for other processes (a kernel hint), acknowledges
//!   the hint and gives up the CPU once (`sched_yield`) after the worker's
//!   ready tasks ran.
//! - Inside a [`critical_section()`] checkpoints never yield: the request
//!   waits for the first checkpoint after the section. The scheduler will
//!   not force-preempt the thread there either, up to its cap (50 ms by
//!   default). Keep sections short and never hold the guard across an
//!   `.await` (it is `!Send`; debug builds check the rest).
//! - A thread becomes a *worker* at its first checkpoint or critical
//!   section, or when [`Builder`] starts it, or at [`attach_worker`]; a
//!   plain `#[tokio::main]` works. Nothing more is needed: without the
//!   scheduler the runtime keeps working on its budget, logs why once, and
//!   reconnects when the scheduler comes back.
//!
//! # The fast path
//!
//! When nothing is pending a checkpoint is one relaxed load and a branch:
//! it loads `hint_seq` from the worker's shared control block (SCB, memory
//! the kernel writes) and compares it with a thread-local word. Nothing
//! writes memory, reads a clock or calls the kernel. Every source signals
//! through that one compare: the kernel changes `hint_seq` (a hint or a
//! catch-up); the crate's
//! monitor thread, which watches the budgets, changes the thread-local
//! word. Only then does the checkpoint take its slow path. Entering and
//! leaving a critical section is a thread-local increment and decrement and
//! one store the kernel reads.
//!
//! # Where hints come from
//!
//! | Source   | Signal                                                        | Cause recorded |
//! |----------|---------------------------------------------------------------|----------------|
//! | kernel   | scx_morpheus bumps `hint_seq` in the worker's shared control block | `hint`     |
//! | kernel   | a catch-up: I/O arrived for the process while its workers were busy (the worker serves its ready tasks and keeps the CPU) | `catch_up` |
//! | budget   | the worker has been busy for [`Config::budget`] (10 ms) since its last yield or unpark (a parked worker's budget never runs out) | `budget` |
//! | pressure | PSI `some avg10` is high: the budget is halved (no kernel source) | `pressure`  |
//! | defensive| escalations seen: the budget is quartered                     | `defensive`    |
//!
//! The kernel source needs scx_morpheus running (socket
//! [`Config::socket_path`]). [`metrics::snapshot`] shows which sources are
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
//! # Without Tokio, and language bindings
//!
//! The core has no async runtime dependency (disable the default `tokio`
//! feature). [`bindings`] holds the synchronous, guardless calls that
//! language bindings (the Python package) and other event loops use: a
//! checkpoint for synchronous code, one split into the decision and the
//! yield, critical sections without a guard.
//!
//! # Misuse
//!
//! Errors say what to do next ([`Error`]). `checkpoint!()` outside a Tokio
//! runtime logs once and still yields (the generic way); [`try_checkpoint`]
//! returns the error. [`bindings::exit_critical`] without a matching
//! [`bindings::enter_critical`] returns an error; a thread that ends inside
//! an `enter_critical()` section is logged once.
//!
//! # fork
//!
//! A child of `fork()` does not use its parent's registration, control
//! block or session (a `pthread_atfork` child handler drops them): its
//! first checkpoint makes it a worker of its own, with the parent's
//! configuration. Open critical sections stay open in the child.

#![warn(missing_docs)]
// The docs describe the crate with its default `tokio` feature and link to
// its Tokio integration (`Builder`, `checkpoint!` ...); built without it
// (the Python bindings' configuration) those links have no target.
#![cfg_attr(not(feature = "tokio"), allow(rustdoc::broken_intra_doc_links))]

pub mod bindings;
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

pub use crate::checkpoint::checkpoint;
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

/// A safe point to yield at, in async code: `checkpoint!();` is
/// [`checkpoint()`]`.await`.
///
/// When no hint is pending it completes at once (one relaxed load and a
/// branch); see [`checkpoint()`] for what it does when one is. Outside
/// async code use [`bindings::checkpoint`]: `.await` is only allowed inside
/// `async` functions and blocks.
///
/// ```
/// use morpheus_runtime::checkpoint;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// for i in 0..10_000u32 {
///     if i % 100 == 0 { checkpoint!(); }
/// }
/// # }
/// ```
#[macro_export]
macro_rules! checkpoint {
    () => {
        $crate::checkpoint().await
    };
}

/// Configures Morpheus for this process. Call it before the first
/// checkpoint, critical section or runtime build; otherwise the
/// configuration comes from the environment ([`Config::from_env`]).
///
/// ```
/// use std::time::Duration;
/// let config = morpheus_runtime::Config { budget: Duration::from_millis(5), ..Default::default() };
/// morpheus_runtime::configure(config).expect("first use");
/// assert!(morpheus_runtime::configure(Default::default()).is_err()); // too late now
/// ```
pub fn configure(config: Config) -> Result<(), Error> {
    crate::process::Process::configure(config)
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
///     morpheus_runtime::bindings::checkpoint(); // the first checkpoint attaches
///     assert!(morpheus_runtime::is_worker());
/// })
/// .join()
/// .unwrap();
/// ```
#[inline]
pub fn is_worker() -> bool {
    crate::worker::is_worker()
}

/// Makes the calling thread a worker now, with these options: it gets a
/// budget and, if scx_morpheus runs, a kernel registration. Threads also
/// attach on their own at their first checkpoint or critical section, with
/// default options (see [`bindings::set_lazy_worker_options`]); [`Builder`]
/// attaches its workers with its options. A thread already attached keeps
/// its options.
pub fn attach_worker(options: WorkerOptions) -> Result<(), Error> {
    crate::worker::attach(options).map(|_| ())
}

/// Stops treating the calling thread as a worker: unregisters it from the
/// kernel and folds its ledger into the process totals. Thread exit does
/// this automatically; the thread's next checkpoint attaches it again.
pub fn detach_worker() {
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
