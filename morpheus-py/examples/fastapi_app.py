# SPDX-License-Identifier: GPL-2.0-only
"""A FastAPI service with a CPU-heavy endpoint and a light one.

Run it under Morpheus, from ``morpheus-py/``::

    python -m morpheus.run -m uvicorn examples.fastapi_app:app --loop asyncio --port 8000

or, with uvicorn 0.36+, with Morpheus's event loop as uvicorn's loop factory
(which reaches the processes of ``--workers`` too)::

    uvicorn --loop morpheus:new_event_loop examples.fastapi_app:app --port 8000

then, while ``curl 'localhost:8000/heavy?n=20000000'`` computes for seconds,
``curl localhost:8000/light`` still answers within a few budgets (10 ms each
by default): the heavy handler passes ``await morpheus.async_checkpoint()``
every 1000 iterations, which lets the event loop serve other requests
whenever the budget runs out or scx_morpheus hints that others wait for the
CPU. ``/heavy-blocking`` is the same computation without checkpoints, for
comparison: it freezes the whole service until it is done. ``/metrics``
serves Morpheus's OpenMetrics text.
"""

from __future__ import annotations

import asyncio
import os
import time

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

import morpheus

app = FastAPI(title="morpheus example")

# Shared state that a critical section keeps consistent.
_stats = {"heavy_requests": 0, "heavy_iterations": 0}


def _step(i: int, acc: int) -> int:
    """One unit of CPU work (a few hundred nanoseconds)."""
    return (acc + i * i) % 1_000_003


@app.get("/light")
async def light() -> dict:
    """Answers at once: the endpoint whose latency Morpheus protects."""
    return {"ok": True, "pid": os.getpid()}


@app.get("/heavy")
async def heavy(n: int = 2_000_000) -> dict:
    """CPU-bound work in a coroutine, with a checkpoint every 1000 steps."""
    t0 = time.perf_counter()
    acc = yielded = 0
    for i in range(n):
        acc = _step(i, acc)
        if i % 1000 == 0 and await morpheus.async_checkpoint():
            yielded += 1
    # Update both counters together: no forced preemption in between.
    with morpheus.critical_section():
        _stats["heavy_requests"] += 1
        _stats["heavy_iterations"] += n
    return {"result": acc, "yields": yielded, "seconds": time.perf_counter() - t0}


@app.get("/heavy-blocking")
async def heavy_blocking(n: int = 2_000_000) -> dict:
    """The same work without checkpoints: blocks the event loop throughout."""
    t0 = time.perf_counter()
    acc = 0
    for i in range(n):
        acc = _step(i, acc)
    return {"result": acc, "seconds": time.perf_counter() - t0, "pid": os.getpid()}


@app.get("/heavy-sync")
def heavy_sync(n: int = 2_000_000) -> dict:
    """CPU-bound work in a plain function: FastAPI runs it in its thread
    pool; the synchronous checkpoint hands the GIL (and the CPU) to the
    event loop's thread and other processes when it is time."""
    acc = yielded = 0
    for i in range(n):
        acc = _step(i, acc)
        if i % 1000 == 0 and morpheus.checkpoint():
            yielded += 1
    return {"result": acc, "yields": yielded}


@app.get("/stats")
async def stats() -> dict:
    """The counters the heavy endpoint keeps, whether this event loop is
    Morpheus's (a checkpoint before every callback, its thread a worker of
    kind ``asyncio`` from the start), and the loop thread's ledger."""
    async with morpheus.critical_section():
        counters = dict(_stats)
    snap = morpheus.snapshot()
    try:
        worker = morpheus.current_worker()  # the event loop's thread
    except morpheus.MorpheusError:  # not run under morpheus.run / install()
        worker = None
    return {
        **counters,
        "pid": os.getpid(),
        "loop_checkpoints": morpheus.installed(asyncio.get_running_loop()),
        "loop_thread_kind": worker.kind if worker else None,
        "mode": snap.mode,
        "loop_thread_registered_with_kernel": worker is not None and worker.registered,
        "loop_thread_yields": worker.ledger.yields if worker else None,
        "registration_reason": snap.registration_reason,
    }


@app.get("/metrics")
async def metrics() -> PlainTextResponse:
    """Morpheus's metrics for Prometheus (OpenMetrics text)."""
    return PlainTextResponse(
        morpheus.openmetrics(),
        media_type="application/openmetrics-text; version=1.0.0; charset=utf-8",
    )
