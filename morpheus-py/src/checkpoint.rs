// SPDX-License-Identifier: GPL-2.0-only
//! Checkpoints and critical sections.
//!
//! The fast path of [`checkpoint`] is this one native call: PyO3's argument-
//! less trampoline, then the runtime's single thread-local compare. The GIL
//! is released only on the slow path, when the thread actually yields.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use morpheus_runtime::bindings;
use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use crate::{MorpheusError, logs, runtime_error};

/// What `async with morpheus.critical_section()` binds with `as`: an awaitable
/// already completed with `None` (like `asyncio.Lock`'s `__aenter__`).
static READY_NONE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
/// Called by the async slow path to let the event loop's other tasks run
/// (`morpheus._yield_to_loop`, set at import by the package).
static ASYNC_YIELD: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
/// Called by the async slow path when the yield is for other processes:
/// lets the event loop's other tasks run, then takes the yield
/// (`morpheus._answer_after_loop`, set at import by the package).
static ASYNC_ANSWER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
/// The awaitable `async_checkpoint()` returns when nothing is pending: an
/// `asyncio.Future` already done with `False` (set at import by the
/// package), or else a [`Ready`].
static READY_FALSE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The slow path: a yield is due. Acknowledges it (ledger, kernel hint,
/// budget restart) with the GIL held, which needs no system call, then
/// gives up the CPU once, with the GIL released, so that other Python
/// threads run as well as other processes; then hands queued log records
/// to Python.
#[cold]
#[inline(never)]
fn take_yield(py: Python<'_>, due: bindings::DueYield) {
    let keep = due.keeps_cpu();
    due.acknowledge();
    if !keep {
        py.detach(|| {
            // SAFETY: no arguments, no memory effects.
            unsafe { libc::sched_yield() };
        });
    }
    logs::flush(py);
}

/// The synchronous checkpoint: returns whether the thread yielded.
///
/// When nothing is pending (almost always) this is one native call and one
/// compare, with the GIL held throughout. When a kernel hint, the local
/// budget or CPU pressure says to yield, it acknowledges the hint, records
/// the cause in the yield ledger and gives up the CPU with the GIL
/// released, so other Python threads and other processes run. Inside a
/// critical section it never yields (the yield is deferred to the first
/// checkpoint after the section). The first call on a thread makes it a
/// worker. In a coroutine, `await async_checkpoint()` also lets the event
/// loop's other tasks run.
#[pyfunction]
pub(crate) fn checkpoint(py: Python<'_>) -> bool {
    match bindings::yield_due() {
        None => false,
        Some(due) => {
            take_yield(py, due);
            true
        }
    }
}

/// The asynchronous checkpoint: `await morpheus.async_checkpoint()`.
///
/// Same check as `checkpoint()`. When nothing is pending it returns an
/// already-completed awaitable (the `await` does not suspend) whose value is
/// `False`. Otherwise it returns a coroutine that evaluates to `True`:
///
/// - For a budget yield it gives up the CPU at once (GIL released) and the
///   coroutine lets the event loop's other tasks run (two `asyncio.sleep(0)`:
///   the second puts this task behind the callbacks that I/O made ready
///   meanwhile).
/// - For a catch-up (I/O arrived while the loop's thread was busy) it keeps
///   the CPU and the coroutine lets the loop's other tasks run, its I/O
///   first.
/// - For a yield that is for other processes (a kernel hint, defensive or
///   pressure mode) the coroutine first lets the loop's other tasks run,
///   including those its I/O makes ready then, and only then acknowledges
///   and gives up the CPU, then lets what became ready meanwhile run: a
///   short request that arrived while a long one ran is answered before
///   the thread gives its CPU away, not after another process's turn. If
///   another task of the loop answered the same yield meanwhile, it is not
///   taken twice. (As in `morpheus_runtime::checkpoint!()`.)
#[pyfunction]
pub(crate) fn async_checkpoint(py: Python<'_>) -> PyResult<Py<PyAny>> {
    let Some(due) = bindings::yield_due() else {
        return ready_false(py);
    };
    if due.gives_cpu_away()
        && let Some(answer) = ASYNC_ANSWER.get(py)
    {
        let pending = Py::new(py, DueYield { due: Some(due) })?;
        return answer.call1(py, (pending,));
    }
    take_yield(py, due);
    match ASYNC_YIELD.get(py) {
        Some(f) => f.call0(py),
        None => Ok(Py::new(py, Ready::new(py, true))?.into_any()),
    }
}

/// A yield for other processes that `async_checkpoint()` decided and its
/// coroutine takes after letting the event loop run. It belongs to the
/// loop's thread. Dropped without being taken (the task was cancelled), it
/// leaves the signal pending for the next checkpoint.
#[pyclass(unsendable, module = "morpheus._morpheus", name = "_DueYield")]
pub(crate) struct DueYield {
    due: Option<bindings::DueYield>,
}

#[pymethods]
impl DueYield {
    /// Acknowledges the yield and gives up the CPU once with the GIL
    /// released, unless it was answered on this thread meanwhile or already
    /// taken. Returns whether it yielded.
    fn take(&mut self, py: Python<'_>) -> bool {
        let Some(due) = self.due.take() else {
            return false;
        };
        if due.acknowledge_if_unanswered().is_none() {
            return false;
        }
        py.detach(|| {
            // SAFETY: no arguments, no memory effects.
            unsafe { libc::sched_yield() };
        });
        logs::flush(py);
        true
    }
}

fn ready_false(py: Python<'_>) -> PyResult<Py<PyAny>> {
    let ready =
        READY_FALSE.get_or_try_init(py, || Py::new(py, Ready::new(py, false)).map(Py::into_any))?;
    Ok(ready.clone_ref(py))
}

/// Registers what `async_checkpoint()` returns: `slow`, the coroutine
/// function called on its slow path after a budget yield (the package
/// passes `morpheus._yield_to_loop`), `answer`, the one called with a
/// [`DueYield`] for a yield for other processes
/// (`morpheus._answer_after_loop`), and `done_false`, an awaitable already
/// completed with `False` for the fast path. A done `asyncio.Future` is the
/// cheapest one: awaiting it returns its result through `am_send`, without
/// the `StopIteration` a `Ready` must raise (measured: about a third of
/// the cost, ~80 ns instead of ~280 ns per `await`).
#[pyfunction]
pub(crate) fn _set_async_yield(
    py: Python<'_>,
    slow: Py<PyAny>,
    answer: Py<PyAny>,
    done_false: Py<PyAny>,
    done_none: Py<PyAny>,
) {
    let _ = ASYNC_YIELD.set(py, slow);
    let _ = ASYNC_ANSWER.set(py, answer);
    let _ = READY_FALSE.set(py, done_false);
    let _ = READY_NONE.set(py, done_none);
}

fn ready_none(py: Python<'_>) -> PyResult<Py<PyAny>> {
    let ready = READY_NONE.get_or_try_init(py, || {
        Py::new(py, Ready { value: py.None() }).map(Py::into_any)
    })?;
    Ok(ready.clone_ref(py))
}

/// An awaitable that is already complete: `await` returns its value without
/// suspending the coroutine.
#[pyclass(frozen, module = "morpheus._morpheus", name = "_Ready")]
pub(crate) struct Ready {
    value: Py<PyAny>,
}

impl Ready {
    fn new(py: Python<'_>, value: bool) -> Ready {
        Ready {
            value: pyo3::types::PyBool::new(py, value)
                .to_owned()
                .into_any()
                .unbind(),
        }
    }
}

#[pymethods]
impl Ready {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        Err(PyStopIteration::new_err((self.value.clone_ref(py),)))
    }

    fn send(&self, py: Python<'_>, _value: Py<PyAny>) -> PyResult<Option<Py<PyAny>>> {
        self.__next__(py)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!("<morpheus ready: {}>", self.value.bind(py))
    }
}

/// Opens a critical section on the calling thread (sections nest): the
/// scheduler will not force-preempt the thread and checkpoints do not yield
/// until the matching `exit_critical()`. Prefer `with morpheus.critical_section():`.
#[pyfunction]
pub(crate) fn enter_critical() -> PyResult<()> {
    bindings::enter_critical().map_err(runtime_error)
}

/// Closes the innermost critical section opened on the calling thread;
/// raises `MorpheusError` if none is open. Leaving the outermost section
/// passes a checkpoint: a yield deferred inside the section is taken right
/// there (see `critical_section`).
#[pyfunction]
pub(crate) fn exit_critical(py: Python<'_>) -> PyResult<()> {
    leave_section(py)
}

/// Closes a level; leaving the outermost answers what the section
/// deferred, as the runtime's `bindings::exit_critical` does: acknowledged
/// while the section is still open (`bindings::exit_critical_answering`),
/// then the CPU given up, here with the GIL released.
/// A Python-level `checkpoint()` after the `with` block would leave a
/// window in which the scheduler sees an expired hint and no section, and
/// may escalate an escapable worker.
fn leave_section(py: Python<'_>) -> PyResult<()> {
    let answered = bindings::exit_critical_answering().map_err(runtime_error)?;
    if answered.is_some() {
        py.detach(|| {
            // SAFETY: no arguments, no memory effects.
            unsafe { libc::sched_yield() };
        });
        logs::flush(py);
    }
    Ok(())
}

/// The calling thread's critical-section depth (0 outside any section).
#[pyfunction]
pub(crate) fn critical_depth() -> u32 {
    morpheus_runtime::critical_depth()
}

/// Whether the calling thread is a Morpheus worker now (a thread-local
/// read: nothing is attached or registered by asking).
#[pyfunction]
pub(crate) fn is_worker() -> bool {
    morpheus_runtime::is_worker()
}

/// A critical section: `with morpheus.critical_section():` or
/// `async with morpheus.critical_section():`.
///
/// While the section is open the scheduler will not force-preempt the
/// thread and checkpoints do not yield (they defer to the first checkpoint
/// after it). Sections nest; leaving always closes the level, also when
/// the body raises, and the exception propagates. Sections belong to the
/// thread: in a coroutine, awaiting inside the section keeps it open while
/// the loop runs other tasks (the scheduler caps sections, 50 ms by
/// default), so keep awaits out of it. Leaving the outermost section passes
/// a checkpoint: a yield deferred inside is taken right there (the thread
/// gives up the CPU with the GIL released; in a coroutine the loop's other
/// tasks run at the next `await`). The object may be reused and nested
/// with itself; leaving it more often than it was entered raises
/// `MorpheusError`.
#[pyclass(
    frozen,
    freelist = 64,
    module = "morpheus._morpheus",
    name = "critical_section"
)]
pub(crate) struct CriticalSection {
    /// Levels opened through this object and not closed yet.
    open: AtomicU32,
}

impl CriticalSection {
    fn enter(&self) -> PyResult<()> {
        bindings::enter_critical().map_err(runtime_error)?;
        self.open.fetch_add(1, Relaxed);
        Ok(())
    }

    fn exit(&self, py: Python<'_>) -> PyResult<()> {
        let opened = self
            .open
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
            .is_ok();
        if !opened {
            return Err(MorpheusError::new_err(
                "this morpheus.critical_section() section is not open: leave a section only after \
                 entering it (use `with morpheus.critical_section():`)",
            ));
        }
        leave_section(py)
    }
}

#[pymethods]
impl CriticalSection {
    #[new]
    fn new() -> CriticalSection {
        CriticalSection {
            open: AtomicU32::new(0),
        }
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyResult<PyRef<'_, Self>> {
        slf.enter()?;
        Ok(slf)
    }

    #[pyo3(signature = (*_exc_info))]
    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_info: &Bound<'_, pyo3::types::PyTuple>,
    ) -> PyResult<bool> {
        self.exit(py)?;
        Ok(false)
    }

    /// Enters the section; `async with ... as x` binds `None` (like
    /// `asyncio.Lock`).
    fn __aenter__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.enter()?;
        ready_none(py)
    }

    #[pyo3(signature = (*_exc_info))]
    fn __aexit__(
        &self,
        py: Python<'_>,
        _exc_info: &Bound<'_, pyo3::types::PyTuple>,
    ) -> PyResult<Py<PyAny>> {
        self.exit(py)?;
        ready_false(py)
    }

    /// Levels this object has opened and not yet closed.
    #[getter]
    fn open(&self) -> u32 {
        self.open.load(Relaxed)
    }

    fn __repr__(&self) -> String {
        format!(
            "<morpheus.critical_section open={}>",
            self.open.load(Relaxed)
        )
    }
}
