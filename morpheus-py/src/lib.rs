// SPDX-License-Identifier: GPL-2.0-only
//! `morpheus._morpheus`: the native module behind the `morpheus` Python
//! package. Every ABI value Python sees comes from here (generated from the
//! C header through morpheus-common), never from a hand copy.

use morpheus_common as abi;
use pyo3::prelude::*;
use pyo3::types::PyDict;

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

#[pymodule]
fn _morpheus(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
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
