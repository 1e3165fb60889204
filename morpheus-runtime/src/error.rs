// SPDX-License-Identifier: GPL-2.0-only
//! Errors of the public API. Each message says what to do next.

use crate::config::ConfigError;

/// Misuse of the Morpheus API, or a request it cannot satisfy.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// [`crate::bindings::exit_critical`] without a matching
    /// [`crate::bindings::enter_critical`] on this thread.
    UnbalancedCriticalSection,
    /// [`crate::bindings::exit_critical`] while the only open sections are
    /// guards ([`crate::critical_section`]): each guard closes its own level.
    CriticalSectionNotManual,
    /// A thread ended with a section opened by
    /// [`crate::bindings::enter_critical`] still open (reported in the log
    /// when the thread exits).
    CriticalSectionLeftOpen,
    /// A checkpoint was polled outside a Tokio runtime while the `tokio`
    /// feature is on (see [`crate::try_checkpoint`]).
    OutsideRuntime,
    /// The calling thread is not a Morpheus worker.
    NotAWorker,
    /// The calling thread is exiting (its thread-locals are being
    /// destroyed), so it cannot become a worker.
    ThreadExiting,
    /// [`crate::configure`] called after Morpheus was already in use.
    AlreadyConfigured,
    /// A configuration value is invalid.
    Config(ConfigError),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::UnbalancedCriticalSection => f.write_str(
                "exit_critical() called with no critical section open on this thread: \
                 pair every enter_critical() with one exit_critical() on the same thread, \
                 or use the critical_section() guard",
            ),
            Error::CriticalSectionNotManual => f.write_str(
                "exit_critical() called while the only open critical sections on this thread \
                 are critical_section() guards: a guard closes its own section when dropped; \
                 call exit_critical() only to close a section opened by enter_critical()",
            ),
            Error::CriticalSectionLeftOpen => f.write_str(
                "a thread ended inside a critical section opened by enter_critical(): \
                 pair every enter_critical() with one exit_critical() on the same thread, \
                 or use the critical_section() guard, which closes on drop and on unwind",
            ),
            Error::OutsideRuntime => f.write_str(
                "checkpoint!() was polled outside a Tokio runtime, so it cannot let the \
                 runtime's other tasks run: await it in a task of a Tokio runtime \
                 (#[tokio::main], Runtime::block_on, tokio::spawn); with another executor, \
                 build morpheus-runtime without its `tokio` feature (then checkpoint!() \
                 yields by waking itself); in synchronous code call \
                 morpheus_runtime::bindings::checkpoint()",
            ),
            Error::NotAWorker => f.write_str(
                "this thread is not a Morpheus worker: pass a checkpoint on it \
                 (checkpoint!() or bindings::checkpoint()), call attach_worker(), or build \
                 the runtime with morpheus_runtime::Builder",
            ),
            Error::ThreadExiting => {
                f.write_str("this thread is exiting and can no longer become a Morpheus worker")
            }
            Error::AlreadyConfigured => f.write_str(
                "morpheus_runtime::configure() must be called before the first checkpoint, \
                 critical section or runtime build; Morpheus is already running with \
                 its configuration",
            ),
            Error::Config(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}
