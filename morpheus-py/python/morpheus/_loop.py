# SPDX-License-Identifier: GPL-2.0-only
"""Event-loop integration: a checkpoint between every two callbacks.

asyncio has no per-callback hook, but every iteration of the standard loop
(``BaseEventLoop._run_once``, the same in CPython 3.9 to 3.13) takes each
callback it runs with ``self._ready.popleft()``. Replacing the loop's ready
deque by ``ReadyQueue``, a deque subclass (native, in ``_morpheus``) whose
``popleft`` first passes a checkpoint, puts one native checkpoint before
every callback (task steps, I/O callbacks, timers), with no wrapper object
per callback and nothing else changed: the loop's own code, its
C-accelerated tasks and futures all run as before. On the fast path the cost
is a C-level method call and the checkpoint's compare (see ``bench/`` and the
package README for numbers).

The loop's selector is wrapped too (``_ParkingSelector``): when the loop
blocks in ``select`` waiting for I/O or a timer, the worker is marked
parked, so that its budget cannot run out meanwhile and an idle loop costs
the runtime's monitor thread no wake-ups; its budget starts again when
``select`` returns.

The loop thread is registered as an asyncio worker when the loop starts
(``run_forever``, which ``asyncio.run``, ``asyncio.Runner`` and
``run_until_complete`` all go through). Loops that are not the standard
asyncio loop (uvloop) have no such queue: :func:`install` refuses them with
an explanation.
"""

from __future__ import annotations

import asyncio
import collections
import selectors
from typing import Optional

from . import _morpheus as _native


_CheckpointingReady = _native.ReadyQueue


class _ParkingSelector:
    """A loop's selector that tells Morpheus when the loop thread blocks in
    ``select`` (a timeout other than zero) and when it is back; everything
    else is the wrapped selector's."""

    __slots__ = ("_inner",)

    def __init__(self, inner: selectors.BaseSelector) -> None:
        self._inner = inner

    def select(self, timeout: Optional[float] = None):  # type: ignore[no-untyped-def]
        if timeout is not None and timeout <= 0:
            return self._inner.select(timeout)
        _native._will_park()
        try:
            return self._inner.select(timeout)
        finally:
            _native._unparked()

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._inner, name)


def _instrument(loop: asyncio.AbstractEventLoop) -> None:
    """Makes ``loop`` checkpoint between callbacks and say when it blocks
    (idempotent)."""
    ready = getattr(loop, "_ready", None)
    if not isinstance(ready, _CheckpointingReady):
        if not isinstance(loop, asyncio.BaseEventLoop) or type(ready) is not collections.deque:
            raise _native.MorpheusError(
                f"cannot checkpoint between the callbacks of {type(loop).__module__}."
                f"{type(loop).__qualname__}: morpheus integrates with the standard asyncio "
                "event loop only (e.g. uvicorn --loop asyncio, not uvloop); in other loops "
                "call morpheus.attach_worker() on the loop thread and use "
                "await morpheus.async_checkpoint() in long computations"
            )
        loop._ready = _CheckpointingReady(ready)  # type: ignore[attr-defined]
    selector = getattr(loop, "_selector", None)
    if isinstance(selector, selectors.BaseSelector):
        loop._selector = _ParkingSelector(selector)  # type: ignore[attr-defined]


def _instrumented(loop: asyncio.AbstractEventLoop) -> bool:
    return isinstance(getattr(loop, "_ready", None), _CheckpointingReady)


def _prepare(loop: asyncio.AbstractEventLoop) -> None:
    """At loop start, on the loop thread: instrument and register."""
    _instrument(loop)
    _native._attach_loop_thread()
    from . import _start_log_pump

    _start_log_pump()


class EventLoop(asyncio.SelectorEventLoop):  # type: ignore[misc,valid-type]
    """The standard asyncio event loop (``asyncio.SelectorEventLoop``), with
    a checkpoint between every two callbacks; its thread is registered as a
    Morpheus worker when it starts running.

    Use it as a loop factory: ``asyncio.run(main(),
    loop_factory=morpheus.new_event_loop)`` (3.12+) or
    ``asyncio.Runner(loop_factory=morpheus.new_event_loop)`` (3.11+).
    """

    def __init__(self, selector=None) -> None:
        super().__init__(selector)
        _instrument(self)

    def run_forever(self) -> None:
        """Registers the running thread as a worker, then runs the loop."""
        _prepare(self)
        return super().run_forever()


def new_event_loop() -> EventLoop:
    """A new :class:`EventLoop`: the loop factory for ``asyncio.run`` and
    ``asyncio.Runner``, and for uvicorn 0.36+: ``uvicorn --loop
    morpheus:new_event_loop APP`` builds the loop of every server process
    with it, including those of ``--workers`` and ``--reload``."""
    return EventLoop()


_original_run_forever = None


def _run_forever(self) -> None:
    _prepare(self)
    return _original_run_forever(self)  # type: ignore[misc]


_run_forever.__doc__ = asyncio.BaseEventLoop.run_forever.__doc__


def install(loop: Optional[asyncio.AbstractEventLoop] = None) -> None:
    """Turns on the event-loop integration.

    - ``install(loop)``, or ``install()`` inside a running loop: that loop
      checkpoints between callbacks from now on, and if it runs on the
      calling thread, the thread is registered as a worker now.
    - ``install()`` with no loop running: every standard asyncio loop that
      starts running in this process afterwards, however it is created
      (``asyncio.run``, ``asyncio.Runner``, uvicorn's ``--loop asyncio``),
      registers its thread and checkpoints between callbacks. This wraps
      ``asyncio.BaseEventLoop.run_forever``; :func:`uninstall` restores it.

    Registration uses the Python defaults (not escapable); call
    :func:`morpheus.attach_worker` on the thread first for other options.
    Raises :class:`MorpheusError` for a loop that is not the standard one.
    """
    global _original_run_forever
    if loop is None:
        loop = asyncio._get_running_loop()
        if loop is None:
            if _original_run_forever is None:
                _original_run_forever = asyncio.BaseEventLoop.run_forever
                asyncio.BaseEventLoop.run_forever = _run_forever  # type: ignore[method-assign]
            return
    _instrument(loop)
    if asyncio._get_running_loop() is loop:
        _prepare(loop)


def uninstall(loop: Optional[asyncio.AbstractEventLoop] = None) -> None:
    """Undoes :func:`install`: ``uninstall()`` stops instrumenting loops that
    start from now on (loops already instrumented keep checkpointing);
    ``uninstall(loop)`` stops ``loop`` checkpointing between callbacks and
    saying when it blocks."""
    global _original_run_forever
    if loop is not None:
        ready = getattr(loop, "_ready", None)
        if isinstance(ready, _CheckpointingReady):
            loop._ready = collections.deque(ready)  # type: ignore[attr-defined]
        selector = getattr(loop, "_selector", None)
        if isinstance(selector, _ParkingSelector):
            loop._selector = selector._inner  # type: ignore[attr-defined]
        return
    if _original_run_forever is not None:
        asyncio.BaseEventLoop.run_forever = _original_run_forever  # type: ignore[method-assign]
        _original_run_forever = None


def installed(loop: Optional[asyncio.AbstractEventLoop] = None) -> bool:
    """Whether :func:`install` is in effect for loops starting from now on,
    or, given a loop, whether that loop checkpoints between callbacks."""
    if loop is not None:
        return _instrumented(loop)
    return _original_run_forever is not None
