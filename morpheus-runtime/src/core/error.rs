// SPDX-License-Identifier: GPL-2.0-only
//! Errors of the public API. Each message says what to do next.

use super::config::ConfigError;

/// Misuse of the Morpheus API, or a request it cannot satisfy.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// [`crate::exit_critical`] without a matching [`crate::enter_critical`]
    /// on this thread.
    UnbalancedCriticalSection,
    /// The calling thread is not a Morpheus worker.
    NotAWorker,
    /// The calling thread is exiting (its thread-locals are being
    /// destroyed), so it cannot become a worker.
    ThreadExiting,
    /// [`crate::init`] called after Morpheus was already in use.
    AlreadyInitialized,
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
            Error::NotAWorker => f.write_str(
                "this thread is not a Morpheus worker: pass a checkpoint!() or \
                 checkpoint_sync() on it, call attach_current_thread(), or build the \
                 runtime with morpheus_runtime::Builder",
            ),
            Error::ThreadExiting => {
                f.write_str("this thread is exiting and can no longer become a Morpheus worker")
            }
            Error::AlreadyInitialized => f.write_str(
                "morpheus_runtime::init() must be called before the first checkpoint, \
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
