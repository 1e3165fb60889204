// SPDX-License-Identifier: GPL-2.0-only
//! Workers, configuration, and the mode/ledger/metrics accessors.
//!
//! Snapshots cross to Python as plain dicts; the package wraps them in
//! frozen dataclasses (`morpheus.Snapshot`, `WorkerSnapshot`, `LedgerSnapshot`).

use std::time::Duration;

use morpheus_runtime::metrics::{self, WorkerSnapshot};
use morpheus_runtime::{
    Config, LedgerSnapshot, RuntimeKind, RuntimeMode, Sources, WorkerOptions, YieldCause,
};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::{MorpheusError, logs, runtime_error};

fn parse_mode(mode: &str) -> PyResult<RuntimeMode> {
    mode.parse::<RuntimeMode>()
        .map_err(|e| MorpheusError::new_err(e.to_string()))
}

fn budget(ms: f64) -> PyResult<Duration> {
    if !(0.1..=10_000.0).contains(&ms) {
        return Err(MorpheusError::new_err(format!(
            "budget_ms={ms} is out of range: expected milliseconds between 0.1 and 10000"
        )));
    }
    Ok(Duration::from_secs_f64(ms / 1000.0))
}

/// Registers the calling thread as a Morpheus worker (an asyncio worker):
/// it gets a local time budget and, when scx_morpheus runs, a kernel
/// registration through which it receives hints.
///
/// `escapable=False` (the default) tells the scheduler never to force this
/// thread off its CPU past the grace period: a Python thread may hold the
/// GIL, and every other thread of the process would wait for it. `budget_ms`
/// and `mode` override the process defaults for this worker. Calling it
/// again with the same options does nothing; a thread that is already a
/// worker with other options raises `MorpheusError` (call `detach_worker()`
/// first).
#[pyfunction]
#[pyo3(signature = (escapable = false, budget_ms = None, mode = None))]
pub(crate) fn attach_worker(
    py: Python<'_>,
    escapable: bool,
    budget_ms: Option<f64>,
    mode: Option<&str>,
) -> PyResult<()> {
    let mode = mode.map(parse_mode).transpose()?;
    let budget = budget_ms.map(budget).transpose()?;
    if morpheus_runtime::is_worker()
        && let Ok(w) = morpheus_runtime::current_worker()
    {
        let conflicts = w.escapable != escapable
            || budget.is_some_and(|b| b.as_nanos() != w.budget.as_nanos())
            || mode.is_some_and(|m| w.pinned_mode != Some(m));
        logs::flush(py);
        if conflicts {
            return Err(MorpheusError::new_err(format!(
                "this thread is already a Morpheus worker (escapable={}, budget {:.1} ms, mode {}) \
                 and keeps its options: call morpheus.detach_worker() first, or call \
                 morpheus.attach_worker() before the thread's first checkpoint or critical section",
                if w.escapable { "True" } else { "False" },
                w.budget.as_secs_f64() * 1000.0,
                w.pinned_mode.map_or("auto", |m| m.as_str()),
            )));
        }
        return Ok(());
    }
    let r = morpheus_runtime::attach_worker(WorkerOptions {
        kind: RuntimeKind::Asyncio,
        escapable: Some(escapable),
        mode,
        budget,
    });
    logs::flush(py);
    r.map_err(runtime_error)
}

/// Attaches the calling thread as an asyncio worker with the Python
/// defaults unless it already is a worker (then it keeps its options).
/// Used by the event-loop integration; returns whether it attached now.
#[pyfunction]
pub(crate) fn _attach_loop_thread(py: Python<'_>) -> PyResult<bool> {
    if morpheus_runtime::is_worker() {
        return Ok(false);
    }
    let r = morpheus_runtime::attach_worker(WorkerOptions {
        kind: RuntimeKind::Asyncio,
        escapable: Some(false),
        mode: None,
        budget: None,
    });
    logs::flush(py);
    r.map(|()| true).map_err(runtime_error)
}

/// The loop thread is about to block in its selector (the event-loop
/// integration): its budget cannot run out until `_unparked()`.
#[pyfunction]
pub(crate) fn _will_park() {
    morpheus_runtime::bindings::will_park();
}

/// The loop thread is back from its selector: its budget starts now.
#[pyfunction]
pub(crate) fn _unparked() {
    morpheus_runtime::bindings::unparked();
}

/// Stops treating the calling thread as a worker: unregisters it from the
/// scheduler and folds its ledger into the process totals (thread exit
/// does this automatically). Its next checkpoint attaches it again.
#[pyfunction]
pub(crate) fn detach_worker(py: Python<'_>) {
    morpheus_runtime::detach_worker();
    logs::flush(py);
}

/// Records a voluntary yield the application is about to take (its own
/// `await asyncio.sleep(0)`, say): counted as `voluntary`, and it answers
/// a pending kernel hint.
#[pyfunction]
pub(crate) fn record_voluntary_yield(py: Python<'_>) {
    morpheus_runtime::bindings::record_voluntary_yield();
    logs::flush(py);
}

/// Configures Morpheus for this process, starting from the `MORPHEUS_*`
/// environment; call it before the first checkpoint, critical section or
/// worker registration (raises `MorpheusError` afterwards, or for an
/// invalid value). `None` keeps the environment's (or default) value.
///
/// `sources` is a comma-separated list or an iterable of `kernel`, `budget`,
/// `pressure` (or `all`, `none`); `mode` is `auto` or a mode name. There is
/// no process-wide `escapable`: in Python only `attach_worker(escapable=True)`
/// makes a thread escapable.
#[pyfunction]
#[pyo3(signature = (*, enabled = None, socket_path = None, budget_ms = None, mode = None, sources = None))]
pub(crate) fn configure(
    py: Python<'_>,
    enabled: Option<bool>,
    socket_path: Option<std::path::PathBuf>,
    budget_ms: Option<f64>,
    mode: Option<&str>,
    sources: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let mut c = Config::from_env().map_err(|e| MorpheusError::new_err(e.to_string()))?;
    if let Some(v) = enabled {
        c.enabled = v;
    }
    if let Some(v) = socket_path {
        c.socket_path = v;
    }
    if let Some(v) = budget_ms {
        c.budget = budget(v)?;
    }
    if let Some(v) = mode {
        c.mode = if v.trim().eq_ignore_ascii_case("auto") {
            None
        } else {
            Some(parse_mode(v)?)
        };
    }
    if let Some(v) = sources {
        let text: String = match v.extract::<String>() {
            Ok(s) => s,
            Err(_) => {
                let names: Vec<String> = v
                    .try_iter()?
                    .map(|x| x?.extract())
                    .collect::<PyResult<_>>()?;
                if names.is_empty() {
                    "none".into()
                } else {
                    names.join(",")
                }
            }
        };
        c.sources = Sources::parse(&text).map_err(MorpheusError::new_err)?;
    }
    let r = morpheus_runtime::configure(c);
    logs::flush(py);
    r.map_err(runtime_error)
}

fn ledger_dict<'py>(py: Python<'py>, l: &LedgerSnapshot) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let yields = PyDict::new(py);
    for c in YieldCause::ALL {
        yields.set_item(c.as_str(), l.yields_by(*c))?;
    }
    d.set_item("yields", yields)?;
    d.set_item("yields_total", l.yields_total)?;
    d.set_item("hints_seen", l.hints_seen)?;
    d.set_item("hints_answered", l.hints_answered)?;
    d.set_item("hints_late", l.hints_late)?;
    d.set_item("hints_ignored", l.hints_ignored)?;
    d.set_item("checkpoints_deferred", l.checkpoints_deferred)?;
    d.set_item("checkpoints_slow", l.checkpoints_slow)?;
    let h = PyDict::new(py);
    h.set_item("counts", PyList::new(py, l.hint_response.counts)?)?;
    h.set_item("sum_ns", l.hint_response.sum_ns)?;
    d.set_item("hint_response", h)?;
    Ok(d)
}

fn worker_dict<'py>(py: Python<'py>, w: &WorkerSnapshot) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("id", w.id)?;
    d.set_item("tid", w.tid)?;
    d.set_item("kind", w.kind.as_str())?;
    d.set_item("mode", w.mode.as_str())?;
    d.set_item("pinned_mode", w.pinned_mode.map(|m| m.as_str()))?;
    d.set_item("slot", w.slot)?;
    d.set_item("escapable", w.escapable)?;
    d.set_item("budget_ms", w.budget.as_secs_f64() * 1000.0)?;
    d.set_item("critical_depth", w.critical_depth)?;
    d.set_item("ledger", ledger_dict(py, &w.ledger)?)?;
    Ok(d)
}

fn sources_dict<'py>(py: Python<'py>, s: Sources) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("kernel", s.kernel)?;
    d.set_item("budget", s.budget)?;
    d.set_item("pressure", s.pressure)?;
    Ok(d)
}

/// The whole process at one instant, as a dict (`morpheus.snapshot()` wraps
/// it in a `Snapshot`).
#[pyfunction]
pub(crate) fn snapshot(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let s = metrics::snapshot();
    logs::flush(py);
    let d = PyDict::new(py);
    d.set_item("enabled", s.enabled)?;
    d.set_item("mode", s.mode.as_str())?;
    d.set_item("mode_transitions", s.mode_transitions)?;
    d.set_item("registration", s.registration.as_str())?;
    d.set_item("registration_reason", s.registration_reason)?;
    d.set_item("connects", s.connects)?;
    d.set_item(
        "sources_configured",
        sources_dict(py, s.sources.configured)?,
    )?;
    d.set_item("sources_active", sources_dict(py, s.sources.active)?)?;
    d.set_item("cpu_pressure", s.cpu_pressure)?;
    d.set_item("overloaded", s.overloaded)?;
    d.set_item("escalations", s.escalations)?;
    d.set_item("process", ledger_dict(py, &s.process)?)?;
    let workers = PyList::empty(py);
    for w in &s.workers {
        workers.append(worker_dict(py, w)?)?;
    }
    d.set_item("workers", workers)?;
    d.set_item("retired_workers", s.retired_workers)?;
    Ok(d)
}

/// The calling thread's worker, as a dict (`morpheus.current_worker()`
/// wraps it); raises `MorpheusError` if the thread is not a worker.
#[pyfunction]
pub(crate) fn current_worker(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let w = morpheus_runtime::current_worker();
    logs::flush(py);
    worker_dict(py, &w.map_err(runtime_error)?)
}

/// The process's mode: `deterministic`, `pressured` or `defensive`.
#[pyfunction]
pub(crate) fn mode(py: Python<'_>) -> &'static str {
    let m = metrics::snapshot().mode;
    logs::flush(py);
    m.as_str()
}

/// The process's metrics as OpenMetrics text (ends with `# EOF`), for a
/// service's own `/metrics` endpoint. `per_worker` adds (True) or leaves
/// out (False) the per-worker samples; None: as configured
/// (`MORPHEUS_METRICS_PER_WORKER=1`).
#[pyfunction]
#[pyo3(signature = (per_worker=None))]
pub(crate) fn openmetrics(py: Python<'_>, per_worker: Option<bool>) -> String {
    let text = metrics::openmetrics_with(per_worker);
    logs::flush(py);
    text
}

/// The options of Python threads that become workers on their own (their
/// first checkpoint or critical section, e.g. thread-pool threads): never
/// escapable, whatever the process configuration says, since a thread that
/// may hold the GIL must never be force-preempted. Only
/// `attach_worker(escapable=True)` makes a Python thread escapable.
pub(crate) fn set_lazy_defaults() {
    morpheus_runtime::bindings::set_lazy_worker_options(WorkerOptions {
        kind: RuntimeKind::Generic,
        escapable: Some(false),
        mode: None,
        budget: None,
    });
    if Config::from_env().is_ok_and(|c| c.escapable) {
        log::warn!(
            "morpheus: MORPHEUS_ESCAPABLE has no effect on Python threads: a thread that may \
             hold the GIL is escapable only if it calls morpheus.attach_worker(escapable=True)"
        );
    }
}
