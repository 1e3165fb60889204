# SPDX-License-Identifier: GPL-2.0-only
"""Type stubs of :mod:`morpheus` (kernel-guided cooperative yielding for
asyncio services). See the module's docstrings for the behaviour."""

import asyncio
from typing import Awaitable, Dict, Iterable, Optional, Tuple, Union

from ._morpheus import MorpheusError as MorpheusError
from ._morpheus import critical_section as critical_section

ABI_VERSION: int
SCB_SIZE: int
DEFAULT_SOCKET_PATH: str
DEFAULT_GRACE_MS: int
DEFAULT_MAX_CRITICAL_MS: int
DEFAULT_BUDGET_MS: float
RESPONSE_BUCKETS_NS: Tuple[int, ...]
WORKER_STATES: Dict[str, int]
RUNTIME_MODES: Dict[str, int]
RUNTIME_KINDS: Dict[str, int]
YIELD_CAUSES: Dict[str, int]
ESCALATION_POLICIES: Dict[str, int]
__version__: str

def checkpoint() -> bool:
    """The synchronous checkpoint: yields (GIL released) only when a hint,
    the budget or pressure says so; returns whether it yielded."""

def async_checkpoint() -> Awaitable[bool]:
    """``await morpheus.async_checkpoint()``: also lets the event loop's
    other tasks run when it yields; evaluates to whether it yielded."""

def enter_critical() -> None:
    """Opens a critical section (prefer ``with morpheus.critical_section():``)."""

def exit_critical() -> None:
    """Closes the innermost critical section; raises MorpheusError if none."""

def critical_depth() -> int:
    """The calling thread's critical-section depth."""

def is_worker() -> bool:
    """Whether the calling thread is a worker now (a thread-local read)."""

def record_voluntary_yield() -> None:
    """Records a voluntary yield (answers a pending kernel hint)."""

def configure(
    *,
    enabled: Optional[bool] = None,
    socket_path: Optional[str] = None,
    budget_ms: Optional[float] = None,
    mode: Optional[str] = None,
    sources: Union[str, Iterable[str], None] = None,
) -> None:
    """Configures Morpheus for this process, before its first use."""

def attach_worker(escapable: bool = False, *, budget_ms: Optional[float] = None, mode: Optional[str] = None) -> WorkerSnapshot:
    """Registers the calling thread as a worker (not escapable by default)."""

def detach_worker() -> None:
    """Stops treating the calling thread as a worker."""

def current_worker() -> WorkerSnapshot:
    """The calling thread's worker; MorpheusError if it is not one."""

def mode() -> str:
    """The process's mode: deterministic, pressured or defensive."""

def ledger() -> LedgerSnapshot:
    """The process's yield ledger."""

def snapshot() -> Snapshot:
    """The whole process at one instant."""

def openmetrics(per_worker: Optional[bool] = None) -> str:
    """The process's metrics as OpenMetrics text."""

class ResponseHistogram:
    counts: Tuple[int, ...]
    sum_ns: int
    def __init__(self, counts: Tuple[int, ...], sum_ns: int) -> None: ...
    @property
    def count(self) -> int: ...

class LedgerSnapshot:
    yields: Dict[str, int]
    yields_total: int
    hints_seen: int
    hints_answered: int
    hints_late: int
    hints_ignored: int
    checkpoints_deferred: int
    checkpoints_slow: int
    hint_response: ResponseHistogram
    def __init__(
        self,
        yields: Dict[str, int],
        yields_total: int,
        hints_seen: int,
        hints_answered: int,
        hints_late: int,
        hints_ignored: int,
        checkpoints_deferred: int,
        checkpoints_slow: int,
        hint_response: ResponseHistogram,
    ) -> None: ...

class WorkerSnapshot:
    id: int
    tid: int
    kind: str
    mode: str
    pinned_mode: Optional[str]
    slot: Optional[int]
    escapable: bool
    budget_ms: float
    critical_depth: int
    ledger: LedgerSnapshot
    def __init__(
        self,
        id: int,
        tid: int,
        kind: str,
        mode: str,
        pinned_mode: Optional[str],
        slot: Optional[int],
        escapable: bool,
        budget_ms: float,
        critical_depth: int,
        ledger: LedgerSnapshot,
    ) -> None: ...
    @property
    def registered(self) -> bool: ...

class Sources:
    kernel: bool
    budget: bool
    pressure: bool
    def __init__(self, kernel: bool, budget: bool, pressure: bool) -> None: ...

class Snapshot:
    enabled: bool
    mode: str
    mode_transitions: int
    registration: str
    registration_reason: Optional[str]
    connects: int
    sources_configured: Sources
    sources_active: Sources
    cpu_pressure: Optional[float]
    overloaded: bool
    escalations: int
    process: LedgerSnapshot
    workers: Tuple[WorkerSnapshot, ...]
    retired_workers: int
    def __init__(
        self,
        enabled: bool,
        mode: str,
        mode_transitions: int,
        registration: str,
        registration_reason: Optional[str],
        connects: int,
        sources_configured: Sources,
        sources_active: Sources,
        cpu_pressure: Optional[float],
        overloaded: bool,
        escalations: int,
        process: LedgerSnapshot,
        workers: Tuple[WorkerSnapshot, ...],
        retired_workers: int,
    ) -> None: ...

class EventLoop(asyncio.SelectorEventLoop):
    """The standard asyncio loop, checkpointing between callbacks."""

def new_event_loop() -> EventLoop:
    """A new EventLoop: the loop factory for asyncio.run / asyncio.Runner
    and uvicorn 0.36+ (``--loop morpheus:new_event_loop``)."""

def install(loop: Optional[asyncio.AbstractEventLoop] = None) -> None:
    """Turns on the event-loop integration (one loop, or all that start)."""

def uninstall(loop: Optional[asyncio.AbstractEventLoop] = None) -> None:
    """Undoes install()."""

def installed(loop: Optional[asyncio.AbstractEventLoop] = None) -> bool:
    """Whether install() is in effect (globally, or for this loop)."""

__all__: list[str]
