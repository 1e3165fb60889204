# SPDX-License-Identifier: GPL-2.0-only
"""Event-loop integration: registration and checkpoints between callbacks."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import threading

import pytest

import morpheus
from _support import PACKAGE_DIR, last_json, run_python
from test_api import in_thread, spin


@pytest.fixture
def installed():
    """``morpheus.install()`` for one test, always undone."""
    morpheus.install()
    try:
        yield
    finally:
        morpheus.uninstall()
    assert not morpheus.installed()


async def spinning_callbacks(n: int, each: float) -> dict:
    """Runs ``n`` callbacks that each compute for ``each`` seconds without
    any checkpoint of their own, then reports what the loop saw."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    left = [n]

    def cb() -> None:
        spin(each)
        left[0] -= 1
        if left[0]:
            loop.call_soon(cb)
        else:
            done.set_result(None)

    loop.call_soon(cb)
    await done
    w = morpheus.current_worker()
    return {"instrumented": morpheus.installed(loop), "kind": w.kind, "yields": w.ledger.yields_total}


def test_install_makes_asyncio_run_loops_checkpoint_between_callbacks(installed):
    def body():
        morpheus.attach_worker(budget_ms=1)  # the loop keeps these options
        return asyncio.run(spinning_callbacks(40, 0.002))

    r = in_thread(body)
    assert r["instrumented"] and r["kind"] == "asyncio"
    # 80 ms of callbacks against a 1 ms budget: the checkpoint before each
    # callback yields whenever the budget ran out during the previous one.
    assert r["yields"] >= 10, r


def test_without_install_nothing_checkpoints():
    def body():
        morpheus.attach_worker(budget_ms=1)
        return asyncio.run(spinning_callbacks(40, 0.002))

    r = in_thread(body)
    assert not r["instrumented"] and r["yields"] == 0


def test_install_registers_each_loop_thread(installed):
    def body():
        async def main():
            return morpheus.current_worker()

        return asyncio.run(main())

    a = in_thread(body)
    b = in_thread(body)
    assert a.kind == b.kind == "asyncio"
    assert a.tid != b.tid and a.escapable is False


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.Runner is new in 3.11")
def test_loop_factory_with_asyncio_runner():
    def body():
        with asyncio.Runner(loop_factory=morpheus.new_event_loop) as runner:
            morpheus.attach_worker(budget_ms=1)
            return runner.run(spinning_callbacks(40, 0.002))

    r = in_thread(body)
    assert r["instrumented"] and r["yields"] >= 10, r


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.run(loop_factory=) is new in 3.12")
def test_loop_factory_with_asyncio_run():
    def body():
        return asyncio.run(spinning_callbacks(5, 0.0), loop_factory=morpheus.new_event_loop)

    r = in_thread(body)
    assert r["instrumented"] and r["kind"] == "asyncio"


def test_event_loop_class_registers_the_thread_that_runs_it():
    def body():
        loop = morpheus.EventLoop()
        try:
            assert morpheus.installed(loop)
            return loop.run_until_complete(spinning_callbacks(3, 0.0))
        finally:
            loop.close()

    r = in_thread(body)
    assert r["instrumented"] and r["kind"] == "asyncio"


def test_install_inside_a_running_loop_instruments_it_now():
    async def main():
        loop = asyncio.get_running_loop()
        assert not morpheus.installed(loop)
        morpheus.install()  # a running loop: only this one, not a global hook
        assert morpheus.installed(loop) and not morpheus.installed()
        w = morpheus.current_worker()
        await asyncio.sleep(0)  # callbacks still run, through the new queue
        morpheus.uninstall(loop)
        assert not morpheus.installed(loop)
        await asyncio.sleep(0)
        return w.kind

    assert in_thread(lambda: asyncio.run(main())) == "asyncio"


def test_install_keeps_pending_callbacks_in_order():
    async def main():
        loop = asyncio.get_running_loop()
        seen = []
        for i in range(5):
            loop.call_soon(seen.append, i)
        morpheus.install(loop)
        await asyncio.sleep(0)
        return seen

    assert in_thread(lambda: asyncio.run(main())) == [0, 1, 2, 3, 4]


def test_uninstall_restores_asyncio(installed):
    assert asyncio.BaseEventLoop.run_forever.__module__ == "morpheus._loop"
    morpheus.install()  # idempotent
    morpheus.uninstall()
    assert asyncio.BaseEventLoop.run_forever.__module__ == "asyncio.base_events"

    async def main():
        return morpheus.installed(asyncio.get_running_loop())

    assert in_thread(lambda: asyncio.run(main())) is False


def test_other_loops_are_refused_with_an_explanation():
    class OtherLoop(asyncio.AbstractEventLoop):
        """Stands for uvloop: no standard ready queue."""

    with pytest.raises(morpheus.MorpheusError, match="standard asyncio event loop"):
        morpheus.install(OtherLoop())


def test_exceptions_and_cancellation_flow_as_usual(installed):
    async def main():
        async def fails():
            await asyncio.sleep(0)
            raise KeyError("x")

        with pytest.raises(KeyError):
            await asyncio.gather(fails())
        t = asyncio.ensure_future(asyncio.sleep(10))
        await asyncio.sleep(0)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        # Thread-safe scheduling still reaches the loop.
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        threading.Thread(target=loop.call_soon_threadsafe, args=(fut.set_result, 7)).start()
        return await asyncio.wait_for(fut, 10)

    assert in_thread(lambda: asyncio.run(main())) == 7


def test_an_idle_loop_costs_the_monitor_no_wakeups():
    """A loop waiting in its selector is a parked worker: the runtime's
    monitor thread sleeps instead of polling it every half budget (about
    120 wake-ups in 0.6 s with the default 10 ms budget). Then, busy again,
    the loop still yields for its budget. A fresh interpreter: no other
    worker (the main thread of this one may be) may keep the monitor busy."""
    proc = run_python(
        """
        import asyncio, json, os, time
        import morpheus

        def monitor_switches():
            for tid in os.listdir("/proc/self/task"):
                with open(f"/proc/self/task/{tid}/comm") as f:
                    if f.read().strip() != "morpheus-monito":
                        continue
                with open(f"/proc/self/task/{tid}/status") as f:
                    return sum(int(l.split(":")[1]) for l in f if "ctxt_switches:" in l)
            raise AssertionError("no monitor thread")

        async def main():
            await asyncio.sleep(0.1)  # the loop thread attached; settle
            before = monitor_switches()
            await asyncio.sleep(0.6)
            wakes = monitor_switches() - before
            # Busy for 100 ms in callbacks: the checkpoints between them
            # yield for the budget.
            end = time.monotonic() + 0.1
            while time.monotonic() < end:
                await asyncio.sleep(0)
                t = time.monotonic() + 0.001
                while time.monotonic() < t:
                    pass
            yields = morpheus.current_worker().ledger.yields.get("budget", 0)
            print(json.dumps({"wakes": wakes, "budget_yields": yields}))

        with asyncio.Runner(loop_factory=morpheus.new_event_loop) as r:
            r.run(main())
        """
    )
    r = last_json(proc.stdout)
    assert r["wakes"] <= 6, r
    assert r["budget_yields"] >= 2, r


def load_bench():
    spec = importlib.util.spec_from_file_location("overhead", PACKAGE_DIR / "bench" / "overhead.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_overhead_is_small(capsys):
    """Measures the fast-path costs (bench/overhead.py --quick) and prints
    them; the bounds only catch gross regressions (a busy CI machine
    inflates every figure)."""
    r = in_thread(lambda: load_bench().measure(quick=True))
    with capsys.disabled():
        print(
            "\nmorpheus overhead (CPU time, min of 5): "
            f"checkpoint {r['checkpoint_ns']:.0f} ns, async_checkpoint {r['async_checkpoint_ns']:.0f} ns, "
            f"with critical {r['with_critical_ns']:.0f} ns; per loop callback "
            f"{r['callback_overhead_ns']:.0f} ns ({r['callback_overhead_pct']:+.1f}%), per task step "
            f"{r['task_step_overhead_ns']:.0f} ns ({r['task_step_overhead_pct']:+.1f}%), per echo round trip "
            f"{r['echo_round_trip_overhead_pct']:+.1f}%"
        )
    assert r["checkpoint_ns"] < 1_000
    assert r["async_checkpoint_ns"] < 2_000
    assert r["callback_overhead_ns"] < 2_000
    assert r["task_step_overhead_ns"] < 2_000
