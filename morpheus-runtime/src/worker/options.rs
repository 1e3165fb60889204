// SPDX-License-Identifier: GPL-2.0-only
//! How a worker is set up: [`WorkerOptions`], and the options of threads
//! that become workers on their own (at their first checkpoint or
//! critical section).

use std::cell::Cell;
use std::sync::atomic::AtomicPtr;
use std::sync::atomic::Ordering::{AcqRel, Acquire};

use morpheus_common::{RuntimeKind, RuntimeMode};

/// How a worker is set up; `None` fields take the process default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerOptions {
    /// The runtime the thread belongs to (reported to the scheduler).
    pub kind: RuntimeKind,
    /// Let the scheduler force this worker past the grace period.
    pub escapable: Option<bool>,
    /// Pin this worker's mode.
    pub mode: Option<RuntimeMode>,
    /// This worker's local time budget.
    pub budget: Option<std::time::Duration>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            kind: RuntimeKind::Generic,
            escapable: None,
            mode: None,
            budget: None,
        }
    }
}

thread_local! {
    /// Options for this thread's lazy attachment (set by runtime builders).
    static THREAD_DEFAULTS: Cell<Option<WorkerOptions>> = const { Cell::new(None) };
}

/// Sets the options the calling thread uses when it attaches lazily.
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
pub(crate) fn set_thread_defaults(opts: WorkerOptions) {
    let _ = THREAD_DEFAULTS.try_with(|d| d.set(Some(opts)));
}

/// Options of threads that attach lazily without thread defaults (a leaked
/// box, replaced whole: lock-free, so safe to read in a forked child).
static LAZY_DEFAULTS: AtomicPtr<WorkerOptions> = AtomicPtr::new(std::ptr::null_mut());

/// Sets the options of threads that attach lazily (see
/// `crate::bindings::set_lazy_worker_options`).
pub(crate) fn set_lazy_defaults(opts: WorkerOptions) {
    let new = Box::into_raw(Box::new(opts));
    // The old box is leaked: a reader may still copy from it. Setting this
    // is rare (once per process, by a binding or at start-up).
    LAZY_DEFAULTS.swap(new, AcqRel);
}

/// The options of a thread that attaches lazily: its thread defaults (set
/// by a runtime builder), else the lazy defaults.
pub(super) fn lazy_options() -> WorkerOptions {
    THREAD_DEFAULTS
        .try_with(Cell::get)
        .ok()
        .flatten()
        .unwrap_or_else(lazy_defaults)
}

/// The options of threads that attach lazily without thread defaults.
fn lazy_defaults() -> WorkerOptions {
    let p = LAZY_DEFAULTS.load(Acquire);
    // SAFETY: a non-null pointer is a leaked, never-freed box.
    unsafe { p.as_ref() }.copied().unwrap_or_default()
}
