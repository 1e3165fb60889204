# SPDX-License-Identifier: GPL-2.0-only
"""Threads that become workers on their own, ``is_worker()``, ``fork()``,
and configuration warnings said once however many threads attach."""

from __future__ import annotations

import threading

import morpheus
from _support import last_json, run_python


def test_is_worker_reads_without_attaching():
    result = {}

    def body():
        result["before"] = morpheus.is_worker()
        result["still"] = morpheus.is_worker()  # asking attaches nothing
        morpheus.checkpoint()
        result["after"] = morpheus.is_worker()
        morpheus.detach_worker()
        result["detached"] = morpheus.is_worker()

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert result == {"before": False, "still": False, "after": True, "detached": False}


def test_thread_pool_threads_are_never_escapable_unless_asked():
    p = run_python(
        """
        import json, logging, concurrent.futures, morpheus
        logging.basicConfig(level=logging.INFO, format="LOG %(message)s")

        def lazy():
            morpheus.checkpoint()           # becomes a worker on its own
            w = morpheus.current_worker()
            return [w.kind, w.escapable]

        def asked():
            return morpheus.attach_worker(escapable=True).escapable

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            lazies = [f.result() for f in [pool.submit(lazy) for _ in range(8)]]
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            explicit = pool.submit(asked).result()
        morpheus.snapshot()
        print(json.dumps({"lazy": lazies, "explicit": explicit}))
        """,
        MORPHEUS_ESCAPABLE="1",
    )
    r = last_json(p.stdout)
    assert r["lazy"] == [["generic", False]] * 8, r
    assert r["explicit"] is True
    said = [line for line in p.stderr.splitlines() if "MORPHEUS_ESCAPABLE" in line]
    assert len(said) == 1 and "attach_worker(escapable=True)" in said[0], p.stderr


def test_configuration_warnings_are_said_once_not_per_thread():
    p = run_python(
        """
        import logging, threading, morpheus
        logging.basicConfig(level=logging.INFO, format="LOG %(message)s")
        for _ in range(3):
            morpheus.snapshot()             # before first use: silent
        def work():
            morpheus.checkpoint()
            morpheus.snapshot()
        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads: t.start()
        for t in threads: t.join()
        work()
        """,
        MORPHEUS_BUDGET_MS="banana",
    )
    for text in ("MORPHEUS_BUDGET_MS", "scx_morpheus is not running"):
        lines = [line for line in p.stderr.splitlines() if text in line]
        assert len(lines) == 1, (text, p.stderr)


def test_a_forked_child_starts_over():
    p = run_python(
        """
        import json, os, morpheus
        parent = morpheus.attach_worker()
        morpheus.enter_critical()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                checks = [
                    not morpheus.is_worker(),                  # not the parent's worker
                    morpheus.critical_depth() == 1,            # the open section stays open
                    morpheus.snapshot().workers == (),         # none of the parent's workers
                    morpheus.checkpoint() is False,            # attaches afresh
                    morpheus.current_worker().tid == os.getpid(),
                    len(morpheus.snapshot().workers) == 1,
                ]
                morpheus.exit_critical()
                checks.append(morpheus.critical_depth() == 0)
                code = 0 if all(checks) else 10 + checks.index(False)
            except BaseException:
                code = 99
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        me = morpheus.current_worker()
        morpheus.exit_critical()
        print(json.dumps({"child": os.WEXITSTATUS(status) if os.WIFEXITED(status) else -status,
                          "same": me.id == parent.id, "depth": me.critical_depth,
                          "worker": morpheus.is_worker()}))
        """,
    )
    assert last_json(p.stdout) == {"child": 0, "same": True, "depth": 1, "worker": True}, p.stderr


def test_one_sched_yield_per_yield():
    """The decision is taken with the GIL held and without a system call;
    the one ``sched_yield()`` happens with the GIL released (it used to be
    called twice per yield). Counted with strace (``morpheus-dev test``
    installs it); a sandbox that forbids ptrace skips."""
    import os
    import shutil
    import subprocess
    import sys
    import tempfile

    import pytest

    from _support import child_env

    strace = shutil.which("strace")
    assert strace is not None, "strace is not installed: apt-get install strace (morpheus-dev test does)"
    code = (
        "import sys, time, morpheus\n"
        "morpheus.configure(budget_ms=1, sources='budget')\n"
        "morpheus.attach_worker()\n"
        "n = 0\n"
        "end = time.perf_counter() + 0.3\n"
        "while time.perf_counter() < end:\n"
        "    n += morpheus.checkpoint()\n"
        "print('YIELDS', n)\n"
    )
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "trace")
        proc = subprocess.run(
            [strace, "-f", "-qq", "-e", "trace=sched_yield", "-o", out, sys.executable, "-c", code],
            capture_output=True, text=True, timeout=120, env=child_env(),
        )
        if proc.returncode != 0 and "ptrace" in proc.stderr:
            pytest.skip(f"strace cannot trace here: {proc.stderr.strip()}")
        assert proc.returncode == 0, proc.stderr
        with open(out) as f:
            calls = sum(1 for line in f if "sched_yield(" in line)
    yields = int(proc.stdout.split("YIELDS")[1])
    assert yields > 0 and calls == yields, (yields, calls)
