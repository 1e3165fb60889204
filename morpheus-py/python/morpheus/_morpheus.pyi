# SPDX-License-Identifier: GPL-2.0-only
"""Type stubs of the native module ``morpheus._morpheus`` (Rust, PyO3).

Import :mod:`morpheus` instead: it re-exports what applications need.
"""

import collections
from typing import Any, Awaitable, Callable, Dict, Iterable, Optional, Tuple, Union

__version__: str

# ABI values, from the C header shared with the scheduler.
ABI_MAGIC: int
ABI_VERSION: int
SCB_SIZE: int
MAX_WORKERS_PER_PROCESS: int
MAX_PROCESSES: int
MAX_WORKERS: int
PRESSURE_ONE: int
PRESSURE_MAX: int
DEFAULT_SLICE_MS: int
DEFAULT_SLICE_MIN_MS: int
DEFAULT_SLICE_MAX_MS: int
DEFAULT_GRACE_MS: int
DEFAULT_MAX_CRITICAL_MS: int
DEFAULT_SOCKET_PATH: str
WORKER_ESCAPABLE: int
WORKER_STATES: Dict[str, int]
ESCALATION_POLICIES: Dict[str, int]
RUNTIME_MODES: Dict[str, int]
YIELD_CAUSES: Dict[str, int]
RUNTIME_KINDS: Dict[str, int]
STATUSES: Dict[str, int]

# Runtime values.
DEFAULT_BUDGET_MS: float
RESPONSE_BUCKETS_NS: Tuple[int, ...]

class MorpheusError(Exception):
    """Misuse of the Morpheus API, or a request it cannot satisfy."""

def checkpoint() -> bool:
    """The synchronous checkpoint: returns whether the thread yielded."""

def async_checkpoint() -> Awaitable[bool]:
    """The asynchronous checkpoint: ``await morpheus.async_checkpoint()``."""

def enter_critical() -> None:
    """Opens a critical section on the calling thread."""

def exit_critical() -> None:
    """Closes the innermost critical section of the calling thread."""

def critical_depth() -> int:
    """The calling thread's critical-section depth."""

def is_worker() -> bool:
    """Whether the calling thread is a worker now (a thread-local read)."""

class critical_section:
    """A critical section: ``with morpheus.critical_section():`` or ``async with``."""

    def __init__(self) -> None: ...
    @property
    def open(self) -> int:
        """Levels this object has opened and not yet closed."""
    def __enter__(self) -> "critical_section": ...
    def __exit__(self, *exc_info: Any) -> bool: ...
    def __aenter__(self) -> Awaitable[None]: ...
    def __aexit__(self, *exc_info: Any) -> Awaitable[bool]: ...

class ReadyQueue(collections.deque[Any]):
    """asyncio's ready queue with a checkpoint before every callback."""

    def popleft(self) -> Any:
        """Passes a checkpoint, then removes and returns the leftmost element."""

class _Ready:
    """An awaitable that is already complete."""

    def __await__(self) -> Any: ...
    def __iter__(self) -> "_Ready": ...
    def __next__(self) -> Any: ...
    def send(self, value: Any) -> Any: ...

class _DueYield:
    """A yield for other processes that an async checkpoint takes after letting the loop run."""

    def take(self) -> bool: ...

def attach_worker(escapable: bool = False, budget_ms: Optional[float] = None, mode: Optional[str] = None) -> None:
    """Registers the calling thread as an asyncio worker."""

def detach_worker() -> None:
    """Stops treating the calling thread as a worker."""

def record_voluntary_yield() -> None:
    """Records a voluntary yield the application is about to take."""

def configure(
    *,
    enabled: Optional[bool] = None,
    socket_path: Optional[str] = None,
    budget_ms: Optional[float] = None,
    mode: Optional[str] = None,
    sources: Union[str, Iterable[str], None] = None,
) -> None:
    """Configures Morpheus for this process, before its first use."""

def snapshot() -> Dict[str, Any]:
    """The whole process at one instant, as a dict."""

def current_worker() -> Dict[str, Any]:
    """The calling thread's worker, as a dict."""

def mode() -> str:
    """The process's mode."""

def openmetrics(per_worker: Optional[bool] = None) -> str:
    """The process's metrics as OpenMetrics text."""

def _attach_loop_thread() -> bool: ...
def _will_park() -> None: ...
def _unparked() -> None: ...
def _flush_logs() -> None: ...
def _set_async_yield(
    slow: Callable[[], Awaitable[bool]],
    answer: Callable[[_DueYield], Awaitable[bool]],
    done_false: Awaitable[bool],
    done_none: Awaitable[None],
) -> None: ...
