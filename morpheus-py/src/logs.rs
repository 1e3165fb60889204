// SPDX-License-Identifier: GPL-2.0-only
//! Carries the runtime's `log` records to Python's `logging` (logger
//! `morpheus`).
//!
//! Records can come from any thread, including the runtime's monitor thread,
//! which must never wait for the GIL (a CPU-bound Python thread may hold it
//! for a whole switch interval, and the budget source would stall with it).
//! So the bridge only queues them; Python threads hand them to `logging`
//! when they are in Morpheus code anyway and not on a fast path: after
//! every API call that is not a checkpoint, after every yield, and from a
//! small pump thread (`morpheus._pump_logs`) about once a second.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

/// Records kept at most while nobody drains them (the oldest go first).
const CAPACITY: usize = 256;

/// Queued records: level and message.
type Records = VecDeque<(log::Level, String)>;

static QUEUE: Mutex<Records> = Mutex::new(VecDeque::new());
/// Set when `QUEUE` may be non-empty: lets [`flush`] skip the lock.
static PENDING: AtomicBool = AtomicBool::new(false);
/// `logging.getLogger("morpheus")`.
static LOGGER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

struct Bridge;

static BRIDGE: Bridge = Bridge;

impl log::Log for Bridge {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let mut q = QUEUE.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() == CAPACITY {
            q.pop_front();
        }
        q.push_back((record.level(), record.args().to_string()));
        PENDING.store(true, Relaxed);
    }

    fn flush(&self) {}
}

/// Installs the bridge as this extension's `log` logger (each extension
/// module has its own copy of the `log` crate, so this cannot clash with
/// another library's logger), and makes the queue safe across `fork()`.
pub(crate) fn install() {
    if log::set_logger(&BRIDGE).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
        // SAFETY: plain function pointers that live forever.
        unsafe { libc::pthread_atfork(Some(fork_prepare), Some(fork_done), Some(fork_done)) };
    }
}

thread_local! {
    /// The queue's lock, held by the forking thread across `fork()`.
    static FORK_GUARD: std::cell::RefCell<Option<std::sync::MutexGuard<'static, Records>>> =
        const { std::cell::RefCell::new(None) };
}

/// Before `fork()`: take the queue's lock, so that no other thread (e.g.
/// the runtime's monitor, logging) holds it at the instant of the fork: the
/// child would wait for it forever.
extern "C" fn fork_prepare() {
    let guard = QUEUE.lock().unwrap_or_else(|e| e.into_inner());
    let _ = FORK_GUARD.try_with(|g| *g.borrow_mut() = Some(guard));
}

/// After `fork()`, in the parent and in the child: release it.
extern "C" fn fork_done() {
    let _ = FORK_GUARD.try_with(|g| g.borrow_mut().take());
}

/// Python `logging` level of a `log` level.
fn python_level(level: log::Level) -> u32 {
    match level {
        log::Level::Error => 40,
        log::Level::Warn => 30,
        log::Level::Info => 20,
        log::Level::Debug => 10,
        log::Level::Trace => 5,
    }
}

/// Hands the queued records to Python's `logging` (GIL held). Logging
/// errors are reported by `logging` itself and never raised here.
pub(crate) fn flush(py: Python<'_>) {
    if !PENDING.load(Relaxed) {
        return;
    }
    let records: Vec<(log::Level, String)> = {
        let mut q = QUEUE.lock().unwrap_or_else(|e| e.into_inner());
        PENDING.store(false, Relaxed);
        q.drain(..).collect()
    };
    let logger = LOGGER.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        Ok(py
            .import("logging")?
            .call_method1("getLogger", ("morpheus",))?
            .unbind())
    });
    let Ok(logger) = logger else {
        return;
    };
    for (level, msg) in records {
        if let Err(e) = logger
            .bind(py)
            .call_method1("log", (python_level(level), msg))
        {
            e.write_unraisable(py, None);
        }
    }
}

/// `morpheus._morpheus._flush_logs()`: hands queued runtime log records to
/// the `morpheus` logger now.
#[pyfunction]
pub(crate) fn _flush_logs(py: Python<'_>) {
    flush(py)
}
