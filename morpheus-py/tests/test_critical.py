# SPDX-License-Identifier: GPL-2.0-only
"""Critical sections: sync and async, nesting, exceptions, misuse."""

from __future__ import annotations

import asyncio

import pytest

import morpheus
from test_api import in_thread, spin


class Boom(Exception):
    pass


def test_sections_nest_and_always_close():
    def body():
        assert morpheus.critical_depth() == 0
        with morpheus.critical_section() as c:
            assert isinstance(c, morpheus.critical_section) and c.open == 1
            assert morpheus.critical_depth() == 1
            with morpheus.critical_section():
                assert morpheus.critical_depth() == 2
                with c:  # the same object may nest with itself
                    assert morpheus.critical_depth() == 3 and c.open == 2
            assert morpheus.critical_depth() == 1
        assert morpheus.critical_depth() == 0
        with pytest.raises(Boom):
            with morpheus.critical_section():
                with morpheus.critical_section():
                    raise Boom()
        assert morpheus.critical_depth() == 0
        assert morpheus.current_worker().critical_depth == 0

    in_thread(body)


def test_exceptions_propagate_unchanged():
    def body():
        err = Boom("x")
        try:
            with morpheus.critical_section():
                raise err
        except Boom as e:
            assert e is err and e.__context__ is None
        assert morpheus.critical_depth() == 0

    in_thread(body)


def test_manual_api_and_misuse_raise_clear_errors():
    def body():
        with pytest.raises(morpheus.MorpheusError, match=r"exit_critical\(\) called with no critical section open"):
            morpheus.exit_critical()
        morpheus.enter_critical()
        morpheus.enter_critical()
        assert morpheus.critical_depth() == 2
        morpheus.exit_critical()
        morpheus.exit_critical()
        assert morpheus.critical_depth() == 0
        c = morpheus.critical_section()
        with pytest.raises(morpheus.MorpheusError, match="not open"):
            c.__exit__(None, None, None)
        # Closing a `with` level by hand leaves the `with` nothing to close.
        with pytest.raises(morpheus.MorpheusError, match="no critical section open"):
            with morpheus.critical_section():
                morpheus.exit_critical()
        assert morpheus.critical_depth() == 0

    in_thread(body)


def test_checkpoints_never_yield_inside_and_answer_right_after():
    def body():
        morpheus.attach_worker(budget_ms=1)
        inside = []
        with morpheus.critical_section():
            spin(0.01)  # the budget runs out inside
            for _ in range(20):
                inside.append(morpheus.checkpoint())
                spin(0.001)
            before = morpheus.current_worker().ledger.yields_total
        # Leaving the section passed the checkpoint that answers it.
        w = morpheus.current_worker()
        after = morpheus.checkpoint()  # nothing left to answer
        return inside, w.ledger.checkpoints_deferred, w.ledger.yields_total - before, after

    inside, deferred, yielded_at_exit, after = in_thread(body)
    assert not any(inside)
    assert deferred >= 1
    assert yielded_at_exit == 1
    assert after is False


def test_async_sections_nest_propagate_and_interleave():
    async def main():
        async with morpheus.critical_section() as bound:
            assert bound is None  # like asyncio.Lock
            assert morpheus.critical_depth() == 1
            async with morpheus.critical_section():
                assert morpheus.critical_depth() == 2
                with morpheus.critical_section():
                    assert morpheus.critical_depth() == 3
            assert await morpheus.async_checkpoint() is False  # never yields inside
        assert morpheus.critical_depth() == 0

        with pytest.raises(Boom):
            async with morpheus.critical_section():
                await asyncio.sleep(0)
                raise Boom()
        assert morpheus.critical_depth() == 0

        # Sections are per thread: two tasks holding one across an await
        # count twice, and each leaves its own level.
        async def holder(delay):
            async with morpheus.critical_section():
                await asyncio.sleep(delay)

        await asyncio.gather(holder(0.01), holder(0.02))
        assert morpheus.critical_depth() == 0

        c = morpheus.critical_section()
        with pytest.raises(morpheus.MorpheusError, match="not open"):
            await c.__aexit__(None, None, None)
        return True

    assert in_thread(lambda: asyncio.run(main()))


def test_cancellation_inside_an_async_section_leaves_it():
    async def main():
        started = asyncio.Event()

        async def victim():
            async with morpheus.critical_section():
                started.set()
                await asyncio.sleep(10)

        t = asyncio.ensure_future(victim())
        await started.wait()
        assert morpheus.critical_depth() == 1
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        return morpheus.critical_depth()

    assert in_thread(lambda: asyncio.run(main())) == 0
