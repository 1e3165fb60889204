#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""asyncio_bench: the Python table. 1, 2, 4 and 8 asyncio tasks doing CPU
work on one event loop, plus a probe task that asks to wake every
millisecond and records its lateness. Strategies: Blocking (never yields),
Naive (``await asyncio.sleep(0)`` every N units), Morpheus (``await
morpheus.async_checkpoint()`` every N units). Throughput is work units per
second of real wall-clock time; probe lateness percentiles in ms. Also times
the ``morpheus.checkpoint()`` call itself next to an empty Python call.

    python3 asyncio_bench.py [--quick] [--rounds N] [--duration SECS] [--every N] [--json PATH]

Each round runs every (task count, strategy) once, the strategies in an
order that rotates from round to round; the table gives the median and
range (min..max) over the rounds, and ratios (to Blocking's throughput, to
Naive's probe p99) are taken within each round before the median.

Needs the morpheus package (pip install ./morpheus-py). Runs under any
scheduler; inside the VM with scx_morpheus attached the hints are the
kernel's, on a host without sched_ext the runtime's budget source.
"""

import argparse
import asyncio
import json
import math
import os
import statistics
import platform
import sys
import time
import timeit

try:
    import morpheus
except ImportError as e:  # pragma: no cover - the message is the point
    sys.exit(f"asyncio_bench: cannot import morpheus ({e}): pip install ./morpheus-py")

STRATEGIES = ("blocking", "naive", "morpheus")


def work_unit(x: int) -> int:
    """A few microseconds of integer work that depends on its input."""
    for _ in range(200):
        x = (x * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
    return x


def percentile(sorted_ns, q):
    if not sorted_ns:
        return 0
    rank = max(1, math.ceil(q * len(sorted_ns)))
    return sorted_ns[min(rank, len(sorted_ns)) - 1]


async def cpu_task(strategy, every, stop, counts, i):
    x = i + 1
    n = 0
    while not stop[0]:
        x = work_unit(x)
        n += 1
        counts[i] = n
        if n % every == 0:
            if strategy == "naive":
                await asyncio.sleep(0)
            elif strategy == "morpheus":
                await morpheus.async_checkpoint()


async def probe(samples, stop, pending):
    period = 0.001
    deadline = time.monotonic() + period
    while not stop[0]:
        pending[0] = deadline
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))
        now = time.monotonic()
        samples.append(int(max(0.0, now - deadline) * 1e9))
        deadline += period
        if deadline <= now:
            deadline = now + period


async def run_one(strategy, tasks, every, secs):
    stop = [False]
    counts = [0] * tasks
    samples, pending = [], [None]
    loop_start = time.monotonic()
    p = asyncio.ensure_future(probe(samples, stop, pending))
    workers = [asyncio.ensure_future(cpu_task(strategy, every, stop, counts, i)) for i in range(tasks)]
    # The stopper is a thread-safe timer: a blocked loop cannot run a task.
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def finish():
        stop[0] = True
        units = sum(counts)
        wall = time.monotonic() - loop_start
        # A probe wake-up still overdue counts with its lateness so far.
        if pending[0] is not None and time.monotonic() - pending[0] > 0.002:
            samples.append(int((time.monotonic() - pending[0]) * 1e9))
        pending[0] = None
        loop.call_soon_threadsafe(lambda: done.done() or done.set_result((units, wall)))

    import threading

    t = threading.Timer(secs, finish)
    t.start()
    units, wall = await done
    stop[0] = True
    await asyncio.gather(*workers, p, return_exceptions=True)
    t.join()
    s = sorted(samples)
    return {
        "strategy": strategy,
        "tasks": tasks,
        "units": units,
        "wall_s": wall,
        "units_per_s": units / wall,
        "probe_samples": len(s),
        "probe_p50_ms": percentile(s, 0.50) / 1e6,
        "probe_p99_ms": percentile(s, 0.99) / 1e6,
        "probe_p999_ms": percentile(s, 0.999) / 1e6,
        "probe_max_ms": (s[-1] if s else 0) / 1e6,
    }


def spread(values):
    """(median, min, max) of the finite values, or None when there are none."""
    v = [x for x in values if x is not None and math.isfinite(x)]
    if not v:
        return None
    return statistics.median(v), min(v), max(v)


def show(sp, fmt):
    """'median (min..max)' of a spread, or 'n/a'."""
    if sp is None:
        return "n/a"
    m, lo, hi = sp
    return fmt(m) if lo == hi else f"{fmt(m)} ({fmt(lo)}..{fmt(hi)})"


def ratio(a, b):
    return a / b if b else None


def summarize(results, tasks, rounds):
    """Per (tasks, strategy): the spreads over the rounds of throughput, its
    ratio to Blocking's in the same round, the probe's p50 and p99 and the
    p99's ratio to Naive's in the same round."""
    by = {(r["round"], r["tasks"], r["strategy"]): r for r in results}
    rows = []
    for n in tasks:
        for s in STRATEGIES:
            per = [by[(k, n, s)] for k in range(rounds)]
            rows.append({
                "tasks": n,
                "strategy": s,
                "units_per_s": spread([r["units_per_s"] for r in per]),
                "vs_blocking": spread([ratio(r["units_per_s"], by[(k, n, "blocking")]["units_per_s"])
                                       for k, r in enumerate(per)]),
                "probe_p50_ms": spread([r["probe_p50_ms"] for r in per]),
                "probe_p99_ms": spread([r["probe_p99_ms"] for r in per]),
                "p99_vs_naive": spread([ratio(r["probe_p99_ms"], by[(k, n, "naive")]["probe_p99_ms"])
                                        for k, r in enumerate(per)]),
            })
    return rows


def ledger_now():
    """The process's yield ledger (yields by cause, hints), if exposed."""
    try:
        led = morpheus.ledger()
        return {"yields": dict(led.yields), "hints_seen": led.hints_seen,
                "hints_answered": led.hints_answered}
    except Exception:  # the API is optional here: figures only
        return None


def ledger_delta(a, b):
    if a is None or b is None:
        return None
    return {
        "yields": {k: v - a["yields"].get(k, 0) for k, v in b["yields"].items() if v - a["yields"].get(k, 0)},
        "hints_seen": b["hints_seen"] - a["hints_seen"],
        "hints_answered": b["hints_answered"] - a["hints_answered"],
    }


def call_cost():
    """ns per call of morpheus.checkpoint() and of an empty function."""
    def empty():
        return False

    morpheus.checkpoint()  # attach the thread first
    n = 200_000
    out = {}
    for name, fn in (("empty_python_call", empty), ("morpheus.checkpoint()", morpheus.checkpoint)):
        best = min(timeit.repeat(fn, number=n, repeat=5))
        out[name] = best / n * 1e9
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a few seconds in all (test suite)")
    ap.add_argument("--duration", type=float, help="seconds per configuration (default 3, quick 0.3)")
    ap.add_argument("--rounds", type=int, help="rounds of every configuration (default 5, quick 1)")
    ap.add_argument("--every", type=int, default=10, help="work units between checkpoints")
    ap.add_argument("--tasks", default="1,2,4,8", help="task counts, comma-separated")
    ap.add_argument("--json", help="write raw data as JSON here")
    a = ap.parse_args()
    secs = a.duration if a.duration is not None else (0.3 if a.quick else 3.0)
    rounds = a.rounds if a.rounds is not None else (1 if a.quick else 5)
    if not (0 < secs <= 3600) or a.every < 1:
        ap.error("--duration must be in (0, 3600] and --every at least 1")
    if not 1 <= rounds <= 100:
        ap.error("--rounds must be between 1 and 100")
    try:
        tasks = [int(t) for t in a.tasks.split(",")]
    except ValueError:
        ap.error("--tasks wants comma-separated integers")
    if any(t < 1 or t > 1024 for t in tasks):
        ap.error("--tasks values must be between 1 and 1024")

    t0 = time.perf_counter()
    for _ in range(200):
        work_unit(1)
    unit_us = (time.perf_counter() - t0) / 200 * 1e6
    results = []
    for k in range(rounds):
        order = STRATEGIES[k % len(STRATEGIES):] + STRATEGIES[:k % len(STRATEGIES)]
        for n in tasks:
            for s in order:
                before = ledger_now()
                r = asyncio.run(run_one(s, n, a.every, secs))
                r["round"] = k
                r["ledger"] = ledger_delta(before, ledger_now())
                results.append(r)
    costs = call_cost()
    summary = summarize(results, tasks, rounds)

    print(f"asyncio_bench: Python {platform.python_version()}, kernel {platform.release()}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; 1 unit = {unit_us:.1f} us, "
          f"checkpoint every {a.every} units, {secs}s per row, median (min..max) of {rounds} round(s)")
    num = lambda v: f"{v:.0f}" if v >= 100 else f"{v:.2f}"  # noqa: E731
    x = lambda v: f"{v:.2f}x"  # noqa: E731
    hdr = ["tasks", "strategy", "units/s", "vs Blocking", "probe p50 ms", "p99", "p99 vs Naive"]
    table = [[str(r["tasks"]), r["strategy"], show(r["units_per_s"], num), show(r["vs_blocking"], x),
              show(r["probe_p50_ms"], num), show(r["probe_p99_ms"], num), show(r["p99_vs_naive"], x)]
             for r in summary]
    widths = [max(len(c) for c in col) for col in zip(hdr, *table)]
    line = lambda cells: "  ".join(c.rjust(w) if i != 1 else c.ljust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    print(line(hdr))
    print("-" * len(line(hdr)))
    for row in table:
        print(line(row))
    for k, v in costs.items():
        print(f"{k:<24} {v:7.1f} ns per call")
    for r in results:
        if r["strategy"] == "morpheus" and r["ledger"]:
            led = r["ledger"]
            print(f"morpheus, {r['tasks']} task(s): yields {led['yields']}, "
                  f"hints seen {led['hints_seen']} answered {led['hints_answered']}")
    if a.json:
        doc = {
            "program": "asyncio_bench.py",
            "command": " ".join(sys.argv),
            "machine": {"kernel": platform.release(), "cpus": os.cpu_count(),
                        "python": platform.python_version(), "loadavg": os.getloadavg()},
            "unit_us": unit_us, "every": a.every, "secs": secs, "rounds": rounds,
            "results": results, "summary": summary, "call_ns": costs,
        }
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump(doc, f, indent=2, allow_nan=False)
        print(f"raw data written to {a.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
