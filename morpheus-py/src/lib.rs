// SPDX-License-Identifier: GPL-2.0-only
//! `morpheus._morpheus`: the native module behind the `morpheus` Python
//! package. Every ABI value Python sees comes from here (generated from the
//! C header through morpheus-common), never from a hand copy, and every
//! behaviour comes from the runtime core (`morpheus-runtime` without Tokio):
//! checkpoints, critical sections, workers, modes, ledger and metrics.

mod checkpoint;
mod logs;
mod ready;
mod worker;

use morpheus_common as abi;
use pyo3::prelude::*;
use pyo3::types::PyDict;

pyo3::create_exception!(
    morpheus,
    MorpheusError,
    pyo3::exceptions::PyException,
    "Misuse of the Morpheus API (e.g. leaving a critical section that is not open), \
     or a request it cannot satisfy (e.g. configuring after first use)."
);

/// A runtime error as a Python exception, with a message in Python terms.
pub(crate) fn runtime_error(e: morpheus_runtime::Error) -> PyErr {
    use morpheus_runtime::Error;
    let msg = match e {
        Error::UnbalancedCriticalSection => "morpheus.exit_critical() called with no critical \
            section open on this thread: pair every morpheus.enter_critical() with one \
            morpheus.exit_critical() on the same thread, or use `with morpheus.critical_section():`"
            .to_string(),
        Error::NotAWorker => {
            "this thread is not a Morpheus worker: call morpheus.attach_worker(), \
            pass a morpheus.checkpoint() on it, or run its event loop under morpheus.install()"
                .to_string()
        }
        Error::AlreadyConfigured => "morpheus.configure() must be called before the first \
            checkpoint, critical section or worker registration; Morpheus is already running \
            with its configuration"
            .to_string(),
        other => other.to_string(),
    };
    MorpheusError::new_err(msg)
}

/// Builds a `{name: value}` dict for one ABI enum.
fn enum_dict<'py, T: Copy>(
    py: Python<'py>,
    all: &[T],
    name: impl Fn(T) -> &'static str,
    value: impl Fn(T) -> u32,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for &v in all {
        d.set_item(name(v), value(v))?;
    }
    Ok(d)
}

/// The native core of the `morpheus` package: the Morpheus runtime
/// (checkpoints, critical sections, workers, metrics) and the ABI values
/// shared with the scx_morpheus scheduler. Import `morpheus`, not this.
#[pymodule]
fn _morpheus(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    logs::install();
    worker::set_lazy_defaults();
    m.add("MorpheusError", py.get_type::<MorpheusError>())?;
    m.add_function(wrap_pyfunction!(checkpoint::checkpoint, m)?)?;
    m.add_function(wrap_pyfunction!(checkpoint::async_checkpoint, m)?)?;
    m.add_function(wrap_pyfunction!(checkpoint::_set_async_yield, m)?)?;
    m.add_function(wrap_pyfunction!(checkpoint::enter_critical, m)?)?;
    m.add_function(wrap_pyfunction!(checkpoint::exit_critical, m)?)?;
    m.add_function(wrap_pyfunction!(checkpoint::critical_depth, m)?)?;
    m.add_function(wrap_pyfunction!(checkpoint::is_worker, m)?)?;
    m.add_class::<checkpoint::CriticalSection>()?;
    m.add_class::<checkpoint::Ready>()?;
    m.add_class::<checkpoint::DueYield>()?;
    m.add("ReadyQueue", ready::ready_queue_type(py)?)?;
    m.add_function(wrap_pyfunction!(worker::attach_worker, m)?)?;
    m.add_function(wrap_pyfunction!(worker::_attach_loop_thread, m)?)?;
    m.add_function(wrap_pyfunction!(worker::_will_park, m)?)?;
    m.add_function(wrap_pyfunction!(worker::_unparked, m)?)?;
    m.add_function(wrap_pyfunction!(worker::detach_worker, m)?)?;
    m.add_function(wrap_pyfunction!(worker::record_voluntary_yield, m)?)?;
    m.add_function(wrap_pyfunction!(worker::configure, m)?)?;
    m.add_function(wrap_pyfunction!(worker::snapshot, m)?)?;
    m.add_function(wrap_pyfunction!(worker::current_worker, m)?)?;
    m.add_function(wrap_pyfunction!(worker::mode, m)?)?;
    m.add_function(wrap_pyfunction!(worker::openmetrics, m)?)?;
    m.add_function(wrap_pyfunction!(logs::_flush_logs, m)?)?;
    m.add(
        "DEFAULT_BUDGET_MS",
        morpheus_runtime::DEFAULT_BUDGET.as_secs_f64() * 1000.0,
    )?;
    m.add(
        "RESPONSE_BUCKETS_NS",
        pyo3::types::PyTuple::new(py, morpheus_runtime::RESPONSE_BUCKETS_NS)?,
    )?;
    m.add("ABI_MAGIC", abi::ABI_MAGIC)?;
    m.add("ABI_VERSION", abi::ABI_VERSION)?;
    m.add("SCB_SIZE", abi::SCB_SIZE)?;
    m.add("MAX_WORKERS_PER_PROCESS", abi::MAX_WORKERS_PER_PROCESS)?;
    m.add("MAX_PROCESSES", abi::MAX_PROCESSES)?;
    m.add("MAX_WORKERS", abi::MAX_WORKERS)?;
    m.add("PRESSURE_ONE", abi::PRESSURE_ONE)?;
    m.add("PRESSURE_MAX", abi::PRESSURE_MAX)?;
    m.add("DEFAULT_SLICE_MS", abi::DEFAULT_SLICE_MS)?;
    m.add("DEFAULT_SLICE_MIN_MS", abi::DEFAULT_SLICE_MIN_MS)?;
    m.add("DEFAULT_SLICE_MAX_MS", abi::DEFAULT_SLICE_MAX_MS)?;
    m.add("DEFAULT_GRACE_MS", abi::DEFAULT_GRACE_MS)?;
    m.add("DEFAULT_MAX_CRITICAL_MS", abi::DEFAULT_MAX_CRITICAL_MS)?;
    m.add("DEFAULT_SOCKET_PATH", abi::DEFAULT_SOCKET_PATH)?;
    m.add("WORKER_ESCAPABLE", abi::WORKER_ESCAPABLE)?;

    use abi::{EscalationPolicy, RuntimeKind, RuntimeMode, Status, WorkerState, YieldCause};
    m.add(
        "WORKER_STATES",
        enum_dict(
            py,
            WorkerState::ALL,
            WorkerState::as_str,
            WorkerState::as_u32,
        )?,
    )?;
    m.add(
        "ESCALATION_POLICIES",
        enum_dict(
            py,
            EscalationPolicy::ALL,
            EscalationPolicy::as_str,
            EscalationPolicy::as_u32,
        )?,
    )?;
    m.add(
        "RUNTIME_MODES",
        enum_dict(
            py,
            RuntimeMode::ALL,
            RuntimeMode::as_str,
            RuntimeMode::as_u32,
        )?,
    )?;
    m.add(
        "YIELD_CAUSES",
        enum_dict(py, YieldCause::ALL, YieldCause::as_str, YieldCause::as_u32)?,
    )?;
    m.add(
        "RUNTIME_KINDS",
        enum_dict(
            py,
            RuntimeKind::ALL,
            RuntimeKind::as_str,
            RuntimeKind::as_u32,
        )?,
    )?;
    m.add(
        "STATUSES",
        enum_dict(py, Status::ALL, Status::as_str, Status::as_u32)?,
    )?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
