# SPDX-License-Identifier: GPL-2.0-only
"""What Morpheus costs a Python service when nothing needs to yield.

    python bench/overhead.py [--quick] [--json]

Measures, on this machine and interpreter:

- the fast path of ``morpheus.checkpoint()``, ``await
  morpheus.async_checkpoint()`` and critical sections (nanoseconds per call,
  net of the empty loop);
- the event-loop integration (``morpheus.EventLoop`` vs the plain
  ``asyncio.SelectorEventLoop``): nanoseconds per callback for a bare
  ``call_soon`` chain and for task steps (``await asyncio.sleep(0)``), and
  the relative cost on TCP echo round trips between two tasks of the loop
  (a realistic callback mix: socket readiness, protocol callbacks, task
  steps).

Times are the thread's CPU time (``time.thread_time``: time spent waiting
for the CPU on a busy machine does not count), and each figure is the
minimum over several interleaved repetitions. The budget source stays on (the
production configuration), so the loop also pays for the rare slow path.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import timeit
from typing import Callable, Dict

import morpheus


def per_call_ns(stmt: str, number: int, repeat: int, **names) -> float:
    """Minimum CPU time per execution of ``stmt``, nanoseconds."""
    g = {"morpheus": morpheus, **names}
    t = timeit.Timer(stmt, globals=g, timer=time.thread_time)
    return min(t.repeat(number=number, repeat=repeat)) / number * 1e9


def api_costs(number: int, repeat: int) -> Dict[str, float]:
    """Fast-path costs of the API calls, net of an empty loop."""
    if _not_worker():
        morpheus.attach_worker()
    empty = per_call_ns("pass", number, repeat)
    noop = per_call_ns("f()", number, repeat, f=int)  # a trivial builtin call
    cp = per_call_ns("c()", number, repeat, c=morpheus.checkpoint)
    crit = per_call_ns("with C(): pass", number, repeat, C=morpheus.critical_section)

    async def awaits(n: int) -> None:
        ac = morpheus.async_checkpoint
        for _ in range(n):
            await ac()

    async def async_crit(n: int) -> None:
        C = morpheus.critical_section
        for _ in range(n):
            async with C():
                pass

    async def nothing(n: int) -> None:
        for _ in range(n):
            pass

    def coro_ns(fn: Callable) -> float:
        best = float("inf")
        loop = asyncio.new_event_loop()
        try:
            for _ in range(repeat):
                t0 = time.thread_time()
                loop.run_until_complete(fn(number))
                best = min(best, (time.thread_time() - t0) / number * 1e9)
        finally:
            loop.close()
        return best

    base = coro_ns(nothing)
    return {
        "builtin_call_ns": noop - empty,
        "checkpoint_ns": cp - empty,
        "async_checkpoint_ns": coro_ns(awaits) - base,
        "with_critical_ns": crit - empty,
        "async_with_critical_ns": coro_ns(async_crit) - base,
    }


def _not_worker() -> bool:
    try:
        morpheus.current_worker()
        return False
    except morpheus.MorpheusError:
        return True


async def callback_chain(n: int) -> None:
    """``n`` callbacks, each scheduling the next with ``call_soon``."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    left = [n]

    def cb() -> None:
        left[0] -= 1
        if left[0]:
            loop.call_soon(cb)
        else:
            done.set_result(None)

    loop.call_soon(cb)
    await done


async def task_steps(n: int) -> None:
    """``n`` task steps: a coroutine yielding to the loop ``n`` times."""
    for _ in range(n):
        await asyncio.sleep(0)


async def echo_round_trips(n: int) -> None:
    """``n`` 64-byte request/response round trips over TCP on 127.0.0.1,
    server and client in this loop."""

    finished = asyncio.get_running_loop().create_future()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            data = await reader.read(64)
            if not data:
                break
            writer.write(data)
        writer.close()
        finished.set_result(None)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    payload = b"x" * 64
    for _ in range(n):
        writer.write(payload)
        await reader.readexactly(64)
    writer.close()
    await finished
    server.close()
    await server.wait_closed()


def loop_costs(number: int, repeat: int) -> Dict[str, float]:
    """Per-callback (and per-round-trip) cost, plain loop vs Morpheus loop."""
    out: Dict[str, float] = {}
    factories = {"plain": asyncio.SelectorEventLoop, "morpheus": morpheus.new_event_loop}
    for name, work, n in (
        ("callback", callback_chain, number),
        ("task_step", task_steps, number),
        ("echo_round_trip", echo_round_trips, max(1, number // 20)),
    ):
        best = {k: float("inf") for k in factories}
        for _ in range(repeat):
            for kind, factory in factories.items():  # interleaved
                loop = factory()
                try:
                    t0 = time.thread_time()
                    loop.run_until_complete(work(n))
                    best[kind] = min(best[kind], (time.thread_time() - t0) / n * 1e9)
                finally:
                    loop.close()
        out[f"{name}_plain_ns"] = best["plain"]
        out[f"{name}_morpheus_ns"] = best["morpheus"]
        out[f"{name}_overhead_ns"] = best["morpheus"] - best["plain"]
        out[f"{name}_overhead_pct"] = 100 * (best["morpheus"] - best["plain"]) / best["plain"]
    return out


def measure(quick: bool = False) -> Dict[str, float]:
    """All the figures (``quick``: fewer iterations, for tests)."""
    number, repeat = (20_000, 5) if quick else (100_000, 15)
    results = {"python": sys.version.split()[0]}
    results.update(api_costs(number, repeat))
    results.update(loop_costs(number // 2 if not quick else number, repeat))
    return results


def main() -> None:
    p = argparse.ArgumentParser(description="Morpheus overhead on the fast path")
    p.add_argument("--quick", action="store_true", help="fewer iterations")
    p.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    a = p.parse_args()
    r = measure(a.quick)
    if a.json:
        print(json.dumps(r))
        return
    print(f"CPython {r['python']}, morpheus {morpheus.__version__} (min of repetitions)")
    print(f"  builtin call (reference)     {r['builtin_call_ns']:8.1f} ns")
    print(f"  checkpoint()                 {r['checkpoint_ns']:8.1f} ns")
    print(f"  await async_checkpoint()     {r['async_checkpoint_ns']:8.1f} ns")
    print(f"  with critical_section()      {r['with_critical_ns']:8.1f} ns")
    print(f"  async with critical_section() {r['async_with_critical_ns']:7.1f} ns")
    for name in ("callback", "task_step", "echo_round_trip"):
        print(
            f"  {name:<16} plain {r[name + '_plain_ns']:9.1f} ns  morpheus {r[name + '_morpheus_ns']:9.1f} ns"
            f"  overhead {r[name + '_overhead_ns']:7.1f} ns ({r[name + '_overhead_pct']:+.1f}%)"
        )


if __name__ == "__main__":
    main()
