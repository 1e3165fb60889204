# SPDX-License-Identifier: GPL-2.0-only
"""A Python worker for the VM tests: registers, computes on one CPU, and
prints its ledger as JSON.

    python vm_worker.py --cpu N --seconds S [--escapable] [--critical]
                        [--every K | --never]

It registers, prints ``ready`` and waits for a line on stdin: the test
starts the CPU hogs in between, so the contention, and any hint, starts only
once the worker is set up. Then (with ``--critical`` inside a critical
section) it computes for S seconds, passing ``morpheus.checkpoint()`` every
K iterations (or never), prints ``computed`` and waits for a second line
(the test stops the hogs in between: what follows passes no checkpoint),
leaves the section (which answers a deferred hint) or passes one more
checkpoint, waits for the runtime's monitor to account for escalations, and
prints its report as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import morpheus


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--cpu", type=int, required=True)
    p.add_argument("--seconds", type=float, default=1.5)
    p.add_argument("--escapable", action="store_true")
    p.add_argument("--critical", action="store_true")
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--never", action="store_true", help="never pass a checkpoint")
    a = p.parse_args()

    os.sched_setaffinity(0, {a.cpu})
    w = morpheus.attach_worker(escapable=a.escapable)
    started = {"slot": w.slot, "mode": morpheus.snapshot().mode}
    yielded = 0
    acc = 0
    i = 0

    def compute() -> None:
        nonlocal yielded, acc, i
        end = time.monotonic() + a.seconds
        while time.monotonic() < end:
            for _ in range(a.every):
                acc = (acc + i * i) % 1_000_003
                i += 1
            if not a.never and morpheus.checkpoint():
                yielded += 1

    section = morpheus.critical_section()
    print("ready", flush=True)
    sys.stdin.readline()
    # The section covers the computation only, not the wait for the go
    # (starting the hogs is slow under emulation): it must stay well under
    # the scheduler's critical-section cap.
    if a.critical:
        section.__enter__()
    compute()
    # Wait until the hogs are gone: the code below passes no checkpoint, and
    # under contention an escapable worker running it would rightly be
    # escalated (a slice plus the grace is little under emulation).
    print("computed", flush=True)
    sys.stdin.readline()
    if a.critical:
        before = morpheus.current_worker().ledger.yields_total
        # Leaving passes a checkpoint: a deferred hint is answered here.
        section.__exit__(None, None, None)
        after_section = morpheus.current_worker().ledger.yields_total > before
    else:
        after_section = morpheus.checkpoint()
    time.sleep(1.5)  # the monitor accounts escalations once a second
    me = morpheus.current_worker()
    snap = morpheus.snapshot()
    # Unregister before the interpreter winds down: its shutdown runs Python
    # code without checkpoints, and the report must cover every hint.
    morpheus.detach_worker()
    print(json.dumps({
        "started": started,
        "pid": os.getpid(),
        "tid": me.tid,
        "slot": me.slot,
        "escapable": me.escapable,
        "mode": me.mode,
        "yielded": yielded,
        "after_section": after_section,
        "iterations": i,
        "yields": me.ledger.yields,
        "hints_seen": me.ledger.hints_seen,
        "hints_answered": me.ledger.hints_answered,
        "hints_late": me.ledger.hints_late,
        "checkpoints_deferred": me.ledger.checkpoints_deferred,
        "response_count": me.ledger.hint_response.count,
        "escalations": snap.escalations,
        "registration": snap.registration,
        "reason": snap.registration_reason,
    }))


if __name__ == "__main__":
    main()
