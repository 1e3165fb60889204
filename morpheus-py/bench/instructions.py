# SPDX-License-Identifier: GPL-2.0-only
"""Instructions per operation, counted by valgrind (callgrind): the
overhead figures of ``overhead.py`` without the noise of a busy machine.

    python bench/instructions.py [--n 20000]

Valgrind counts user-space instructions only (system calls, which dominate
the echo workload's time, are not in its figures). Each workload runs in a
fresh interpreter under ``valgrind --tool=callgrind`` twice, with ``n`` and ``2 n`` operations; the difference divided by ``n`` is
the cost of one operation, start-up excluded. Morpheus runs with its hint
sources off (``MORPHEUS_SOURCES=none``) so that only the fast path is
counted: the slow path (a yield, about once per budget) is a system call
whose cost does not depend on the interpreter.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys

WORKLOADS = {
    # name: (description, baseline variant, morpheus variant)
    "call": ("one call: int() vs morpheus.checkpoint()", "int", "checkpoint"),
    "await": ("await: done future vs morpheus.async_checkpoint()", "await_done", "await_checkpoint"),
    "callback": ("call_soon callback: plain loop vs morpheus loop", "callback_plain", "callback_morpheus"),
    "task_step": ("task step (sleep(0)): plain vs morpheus loop", "step_plain", "step_morpheus"),
    "echo": ("TCP echo round trip: plain vs morpheus loop", "echo_plain", "echo_morpheus"),
}


def inner(variant: str, n: int) -> None:
    """Runs ``n`` operations of ``variant`` (in the measured child)."""
    import morpheus

    morpheus.attach_worker()
    if variant in ("int", "checkpoint"):
        f = int if variant == "int" else morpheus.checkpoint
        for _ in range(n):
            f()
        return
    if variant.startswith("await"):
        loop = asyncio.new_event_loop()
        done = loop.create_future()
        done.set_result(False)

        async def main() -> None:
            if variant == "await_done":
                for _ in range(n):
                    await done
            else:
                ac = morpheus.async_checkpoint
                for _ in range(n):
                    await ac()

        loop.run_until_complete(main())
        loop.close()
        return
    loop = morpheus.new_event_loop() if variant.endswith("morpheus") else asyncio.SelectorEventLoop()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from overhead import callback_chain, echo_round_trips, task_steps

    work = {"callback": callback_chain, "step": task_steps, "echo": echo_round_trips}[variant.split("_")[0]]
    loop.run_until_complete(work(n))
    loop.close()


def count(variant: str, n: int) -> int:
    """Instructions executed by a child running ``n`` operations."""
    p = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         sys.executable, os.path.abspath(__file__), "--inner", variant, str(n)],
        capture_output=True,
        text=True,
        env={**os.environ, "MORPHEUS_SOURCES": "none", "PYTHONDONTWRITEBYTECODE": "1"},
    )
    m = re.search(r"Collected : (\d+)", p.stderr)
    if p.returncode != 0 or not m:
        raise SystemExit(f"valgrind failed for {variant}:\n{p.stderr[-2000:]}")
    return int(m.group(1))


def per_op(variant: str, n: int) -> float:
    if variant.startswith("echo"):
        n = max(1, n // 10)  # each round trip is tens of callbacks' worth
    return (count(variant, 2 * n) - count(variant, n)) / n


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--inner":
        inner(sys.argv[2], int(sys.argv[3]))
        return
    p = argparse.ArgumentParser(description="instructions per operation (valgrind)")
    p.add_argument("--n", type=int, default=20_000)
    a = p.parse_args()
    print(f"CPython {sys.version.split()[0]}, instructions per operation (callgrind, n={a.n})")
    for name, (what, base, ours) in WORKLOADS.items():
        b, o = per_op(base, a.n), per_op(ours, a.n)
        print(f"  {what:<52} {b:8.0f} -> {o:8.0f}  (+{o - b:.0f}, {100 * (o - b) / b:+.1f}%)")


if __name__ == "__main__":
    main()
