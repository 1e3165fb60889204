# SPDX-License-Identifier: GPL-2.0-only
"""An asyncio job worker: CPU-heavy jobs and a latency-sensitive heartbeat
share one event loop.

    python examples/asyncio_worker.py [--seconds 3] [--jobs 2] [--no-checkpoints]

Each job crunches numbers and passes ``await morpheus.async_checkpoint()``
every 1000 steps; results are merged into shared totals inside
``async with morpheus.critical_section():``. A heartbeat task wants to run every 5 ms
and records how late it is. With checkpoints the heartbeat is late by a few
budgets (10 ms by default, ``MORPHEUS_BUDGET_MS``): each job ahead of it in
the loop's queue runs for one budget before it yields. With
``--no-checkpoints`` it waits for whole jobs (hundreds of milliseconds). The loop comes from
``morpheus.new_event_loop`` (registered thread, checkpoints between
callbacks). At the end the script prints one JSON line: heartbeat lateness,
jobs done, and the worker's yield ledger.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import morpheus

totals = {"jobs": 0, "sum": 0}


async def job(n: int, checkpoints: bool) -> None:
    """One CPU-heavy job: about ``n`` steps of arithmetic."""
    acc = 0
    for i in range(n):
        acc = (acc + i * i) % 1_000_003
        if checkpoints and i % 1000 == 0:
            await morpheus.async_checkpoint()
    async with morpheus.critical_section():  # both totals move together
        totals["jobs"] += 1
        totals["sum"] = (totals["sum"] + acc) % 1_000_003


async def heartbeat(period: float, stop: asyncio.Event, lateness: list) -> None:
    """Wakes every ``period`` seconds and records how late it woke."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        due = loop.time() + period
        await asyncio.sleep(period)
        lateness.append(max(0.0, loop.time() - due))


async def main(seconds: float, jobs: int, steps: int, checkpoints: bool) -> dict:
    stop = asyncio.Event()
    lateness: list = []
    beat = asyncio.create_task(heartbeat(0.005, stop, lateness))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await asyncio.gather(*(job(steps, checkpoints) for _ in range(jobs)))
    stop.set()
    await beat
    lateness.sort()
    worker = morpheus.current_worker()
    return {
        "checkpoints": checkpoints,
        "jobs_done": totals["jobs"],
        "heartbeats": len(lateness),
        "heartbeat_late_ms_p50": 1000 * lateness[len(lateness) // 2] if lateness else None,
        "heartbeat_late_ms_max": 1000 * lateness[-1] if lateness else None,
        "budget_ms": worker.budget_ms,
        "registered_with_kernel": worker.registered,
        "yields": worker.ledger.yields,
        "mode": worker.mode,
    }


def run(seconds: float = 3.0, jobs: int = 2, steps: int = 1_000_000, checkpoints: bool = True) -> dict:
    """Runs the worker on a Morpheus event loop and returns its report."""
    loop = morpheus.new_event_loop()
    try:
        return loop.run_until_complete(main(seconds, jobs, steps, checkpoints))
    finally:
        loop.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--steps", type=int, default=1_000_000)
    p.add_argument("--no-checkpoints", action="store_true")
    a = p.parse_args()
    print(json.dumps(run(a.seconds, a.jobs, a.steps, not a.no_checkpoints)))
