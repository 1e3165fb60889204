# SPDX-License-Identifier: GPL-2.0-only
"""Morpheus for Python asyncio services: kernel-guided cooperative yielding.

A coroutine that computes without awaiting starves the other tasks of its
event loop, and the loop's thread holds its CPU while other processes wait.
Morpheus gives such code cheap safe points that yield only when they should:
when the scx_morpheus scheduler hints that others wait for the CPU, when the
thread ran past its local time budget (10 ms by default, no scheduler
needed), or when PSI shows the machine is overloaded::

    import morpheus

    async def handler():
        for i in range(1_000_000):
            ...                                   # work
            if i % 1000 == 0:
                await morpheus.async_checkpoint() # yields only when it should
        async with morpheus.critical_section():   # never force-preempted here
            ...

``morpheus.install()`` (or ``python -m morpheus.run ...``) also registers
every asyncio loop thread and checkpoints between the loop's callbacks.

Everything here is the Rust runtime core (``morpheus-runtime``) through the
native module ``morpheus._morpheus``; every ABI value comes from the one C
definition shared with the kernel scheduler. Nothing raises on import: without
the scheduler the budget and pressure sources work alone and the reason is
logged once (logger ``morpheus``).
"""

import asyncio as _asyncio
import atexit as _atexit
import os as _os
import threading as _threading
import time as _time
import typing as _t
from dataclasses import dataclass as _dataclass

from . import _morpheus as _native

# --------------------------------------------------------------- constants
# One ABI definition: every value below comes from the native module.

ABI_VERSION: int = _native.ABI_VERSION
SCB_SIZE: int = _native.SCB_SIZE
DEFAULT_SOCKET_PATH: str = _native.DEFAULT_SOCKET_PATH
DEFAULT_GRACE_MS: int = _native.DEFAULT_GRACE_MS
DEFAULT_MAX_CRITICAL_MS: int = _native.DEFAULT_MAX_CRITICAL_MS
DEFAULT_BUDGET_MS: float = _native.DEFAULT_BUDGET_MS
RESPONSE_BUCKETS_NS: _t.Tuple[int, ...] = tuple(_native.RESPONSE_BUCKETS_NS)
WORKER_STATES: _t.Dict[str, int] = dict(_native.WORKER_STATES)
RUNTIME_MODES: _t.Dict[str, int] = dict(_native.RUNTIME_MODES)
RUNTIME_KINDS: _t.Dict[str, int] = dict(_native.RUNTIME_KINDS)
YIELD_CAUSES: _t.Dict[str, int] = dict(_native.YIELD_CAUSES)
ESCALATION_POLICIES: _t.Dict[str, int] = dict(_native.ESCALATION_POLICIES)
__version__: str = _native.__version__

# ---------------------------------------------------------------- the API
# The hot functions are the native ones themselves: one native call each.

MorpheusError = _native.MorpheusError
checkpoint = _native.checkpoint
async_checkpoint = _native.async_checkpoint
critical_section = _native.critical_section
enter_critical = _native.enter_critical
exit_critical = _native.exit_critical
critical_depth = _native.critical_depth
is_worker = _native.is_worker
record_voluntary_yield = _native.record_voluntary_yield
openmetrics = _native.openmetrics
mode = _native.mode


async def _yield_to_loop() -> bool:
    """The slow path of ``async_checkpoint()`` after the native yield: lets
    the event loop's other tasks run, including a request that arrived while
    this task computed. That takes three turns of the loop, and this task
    goes behind each: in the first the loop polls I/O and runs the
    transport's callback (which feeds the stream and schedules the waiting
    reader task's wake-up); in the second that wake-up runs the reader's
    task; the third lets what that task scheduled run. With fewer, this
    task would resume first and the request wait for its next yield."""
    await _asyncio.sleep(0)
    await _asyncio.sleep(0)
    await _asyncio.sleep(0)
    return True


async def _answer_after_loop(pending: "_native._DueYield") -> bool:
    """The slow path of ``async_checkpoint()`` for a yield that is for other
    processes (a kernel hint, defensive or pressure mode): the event loop's
    other tasks run first, including those its I/O makes ready then (the
    same :func:`_yield_to_loop`); then the thread acknowledges and gives up
    its CPU, unless another task answered the same yield meanwhile; then
    what became ready while it was away runs."""
    await _yield_to_loop()
    if pending.take():
        await _yield_to_loop()
    return True


class _NoLoop:
    """Stands in for an event loop where a future needs one at creation."""

    def get_debug(self) -> bool:
        return False


def _done(value: _t.Optional[bool]) -> "_asyncio.Future[_t.Optional[bool]]":
    """A future already completed with ``value``: awaiting it returns at once
    and never touches an event loop, so one instance serves every loop."""
    fut: "_asyncio.Future[_t.Optional[bool]]" = _asyncio.Future(loop=_NoLoop())  # type: ignore[arg-type]
    fut.set_result(value)
    return fut


_native._set_async_yield(_yield_to_loop, _answer_after_loop, _done(False), _done(None))


def configure(
    *,
    enabled: _t.Optional[bool] = None,
    socket_path: _t.Optional[str] = None,
    budget_ms: _t.Optional[float] = None,
    mode: _t.Optional[str] = None,
    sources: _t.Union[str, _t.Iterable[str], None] = None,
) -> None:
    """Configures Morpheus for this process (the Rust ``configure(Config)``).

    Starts from the environment (``MORPHEUS_DISABLE``, ``MORPHEUS_SOCKET``,
    ``MORPHEUS_BUDGET_MS``, ``MORPHEUS_MODE``, ``MORPHEUS_SOURCES``);
    arguments left at ``None`` keep it. Must run before the first
    checkpoint, critical section or worker registration: raises
    :class:`MorpheusError` afterwards, or for an invalid value. There is no
    process-wide ``escapable``: a Python thread is escapable only if it
    calls ``attach_worker(escapable=True)`` (``MORPHEUS_ESCAPABLE`` is ignored,
    with a warning).
    """
    _native.configure(
        enabled=enabled,
        socket_path=socket_path,
        budget_ms=budget_ms,
        mode=mode,
        sources=sources,
    )


def attach_worker(
    escapable: bool = False,
    *,
    budget_ms: _t.Optional[float] = None,
    mode: _t.Optional[str] = None,
) -> "WorkerSnapshot":
    """Registers the calling thread as a Morpheus worker and returns it.

    The thread gets a local time budget and, when scx_morpheus runs, a kernel
    registration through which it receives hints; without the scheduler the
    budget and pressure sources work alone (``snapshot().registration_reason``
    says why). Python workers are not escapable by default: the kernel must
    never force-preempt a thread that may hold the GIL. ``budget_ms`` and
    ``mode`` override the process defaults for this worker.

    Calling it again with the same options is harmless; a thread that is
    already a worker with other options raises :class:`MorpheusError`.
    Threads also become workers on their own at their first checkpoint or
    critical section (e.g. thread-pool threads), with the process's budget
    and mode, kind ``generic``, and never escapable.
    """
    _native.attach_worker(escapable=escapable, budget_ms=budget_ms, mode=mode)
    _start_log_pump()
    return current_worker()


def detach_worker() -> None:
    """Stops treating the calling thread as a worker (unregisters it from
    the scheduler; its ledger is kept in the process totals). Thread exit
    does this on its own; the thread's next checkpoint attaches it again."""
    _native.detach_worker()


# ------------------------------------------------------------- snapshots


@_dataclass(frozen=True)
class ResponseHistogram:
    """Time from a kernel hint to its answer, as a histogram.

    ``counts[i]`` for ``i < len(RESPONSE_BUCKETS_NS)`` counts answers of at
    most ``RESPONSE_BUCKETS_NS[i]`` nanoseconds (and above the previous
    bound); the last one counts the slower ones.
    """

    counts: _t.Tuple[int, ...]
    sum_ns: int

    @property
    def count(self) -> int:
        """Number of answers recorded."""
        return sum(self.counts)


@_dataclass(frozen=True)
class LedgerSnapshot:
    """The yield ledger of a worker or of the whole process."""

    yields: _t.Dict[str, int]
    """Yields by cause (keys: the names of :data:`YIELD_CAUSES`)."""
    yields_total: int
    """Yields of any cause."""
    hints_seen: int
    """Kernel hints observed."""
    hints_answered: int
    """Kernel hints answered at a checkpoint."""
    hints_late: int
    """Answered hints whose response took longer than the grace period."""
    hints_ignored: int
    """Hints not answered because the worker was in DETERMINISTIC mode."""
    checkpoints_deferred: int
    """Yields deferred because the worker was inside a critical section."""
    checkpoints_slow: int
    """Checkpoints that took the slow path (a signal was pending)."""
    hint_response: ResponseHistogram
    """Hint response times."""

    @classmethod
    def _from(cls, d: dict) -> "LedgerSnapshot":
        h = d["hint_response"]
        return cls(
            yields=dict(d["yields"]),
            yields_total=d["yields_total"],
            hints_seen=d["hints_seen"],
            hints_answered=d["hints_answered"],
            hints_late=d["hints_late"],
            hints_ignored=d["hints_ignored"],
            checkpoints_deferred=d["checkpoints_deferred"],
            checkpoints_slow=d["checkpoints_slow"],
            hint_response=ResponseHistogram(tuple(h["counts"]), h["sum_ns"]),
        )


@_dataclass(frozen=True)
class WorkerSnapshot:
    """One worker thread at one instant."""

    id: int
    """Process-unique worker number."""
    tid: int
    """Kernel thread id."""
    kind: str
    """The runtime it belongs to (a name of :data:`RUNTIME_KINDS`)."""
    mode: str
    """Its effective mode (a name of :data:`RUNTIME_MODES`)."""
    pinned_mode: _t.Optional[str]
    """Its pinned mode, if any."""
    slot: _t.Optional[int]
    """Its slot in scx_morpheus's control-block array while registered."""
    escapable: bool
    """Whether the scheduler may force it past the grace period."""
    budget_ms: float
    """Its local time budget."""
    critical_depth: int
    """Its current critical-section depth."""
    ledger: LedgerSnapshot
    """Its yield ledger."""

    @property
    def registered(self) -> bool:
        """Whether the kernel scheduler knows this worker now."""
        return self.slot is not None

    @classmethod
    def _from(cls, d: dict) -> "WorkerSnapshot":
        return cls(**{**d, "ledger": LedgerSnapshot._from(d["ledger"])})


@_dataclass(frozen=True)
class Sources:
    """Hint sources: the kernel scheduler, the local budget, CPU pressure."""

    kernel: bool
    budget: bool
    pressure: bool


@_dataclass(frozen=True)
class Snapshot:
    """The whole process at one instant (the Rust ``metrics::snapshot()``)."""

    enabled: bool
    """Morpheus is enabled (``MORPHEUS_DISABLE`` unset)."""
    mode: str
    """The process's mode."""
    mode_transitions: int
    """Mode changes so far."""
    registration: str
    """Connection with scx_morpheus: disabled, idle, unavailable, connected."""
    registration_reason: _t.Optional[str]
    """Why the kernel source is not in use, if it is not."""
    connects: int
    """Sessions opened with scx_morpheus."""
    sources_configured: Sources
    """Hint sources enabled by configuration."""
    sources_active: Sources
    """Hint sources producing hints now."""
    cpu_pressure: _t.Optional[float]
    """PSI ``some avg10`` percent, if read."""
    overloaded: bool
    """PSI says the machine is overloaded."""
    escalations: int
    """Escalations observed against this process's workers."""
    process: LedgerSnapshot
    """Sum over live and exited workers."""
    workers: _t.Tuple[WorkerSnapshot, ...]
    """Live workers."""
    retired_workers: int
    """Workers whose threads have exited."""

    @classmethod
    def _from(cls, d: dict) -> "Snapshot":
        return cls(
            **{
                **d,
                "sources_configured": Sources(**d["sources_configured"]),
                "sources_active": Sources(**d["sources_active"]),
                "process": LedgerSnapshot._from(d["process"]),
                "workers": tuple(WorkerSnapshot._from(w) for w in d["workers"]),
            }
        )


def snapshot() -> Snapshot:
    """The whole process at one instant: mode, registration state and the
    reason the kernel source is off (if it is), active hint sources, the
    process's ledger and every live worker's."""
    return Snapshot._from(_native.snapshot())


def current_worker() -> WorkerSnapshot:
    """The calling thread's worker; raises :class:`MorpheusError` if the
    thread is not a worker."""
    return WorkerSnapshot._from(_native.current_worker())


def ledger() -> LedgerSnapshot:
    """The process's yield ledger (live and exited workers)."""
    return snapshot().process


# ------------------------------------------------------------------- logs

_pump_lock = _threading.Lock()
_pump_started = False


def _pump_logs(interval: float = 1.0) -> None:
    """Hands runtime log records from background threads to ``logging``."""
    while True:
        _time.sleep(interval)
        _native._flush_logs()


def _start_log_pump() -> None:
    """Starts the daemon thread that forwards the runtime's log records
    (e.g. from its monitor thread) to the ``morpheus`` logger, once."""
    global _pump_started
    if _pump_started:
        return
    with _pump_lock:
        if not _pump_started:
            _threading.Thread(target=_pump_logs, name="morpheus-log", daemon=True).start()
            _pump_started = True


def _forget_log_pump() -> None:
    """In a forked child the pump thread does not exist: start a new one
    when needed."""
    global _pump_started
    _pump_started = False


if hasattr(_os, "register_at_fork"):
    _os.register_at_fork(after_in_child=_forget_log_pump)
_atexit.register(_native._flush_logs)  # what is still queued at exit
# Thread exit unregisters a worker, but the main thread never "exits": stop
# being a worker before the interpreter's shutdown runs without checkpoints.
_atexit.register(_native.detach_worker)

# ------------------------------------------------------- event-loop glue

from ._loop import EventLoop, install, installed, new_event_loop, uninstall  # noqa: E402

__all__ = [
    "ABI_VERSION",
    "SCB_SIZE",
    "DEFAULT_SOCKET_PATH",
    "DEFAULT_GRACE_MS",
    "DEFAULT_MAX_CRITICAL_MS",
    "DEFAULT_BUDGET_MS",
    "RESPONSE_BUCKETS_NS",
    "WORKER_STATES",
    "RUNTIME_MODES",
    "RUNTIME_KINDS",
    "YIELD_CAUSES",
    "ESCALATION_POLICIES",
    "__version__",
    "MorpheusError",
    "checkpoint",
    "async_checkpoint",
    "critical_section",
    "enter_critical",
    "exit_critical",
    "critical_depth",
    "is_worker",
    "record_voluntary_yield",
    "configure",
    "attach_worker",
    "detach_worker",
    "current_worker",
    "mode",
    "ledger",
    "snapshot",
    "openmetrics",
    "ResponseHistogram",
    "LedgerSnapshot",
    "WorkerSnapshot",
    "Sources",
    "Snapshot",
    "EventLoop",
    "new_event_loop",
    "install",
    "uninstall",
    "installed",
]
