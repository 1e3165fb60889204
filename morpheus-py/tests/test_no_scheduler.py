# SPDX-License-Identifier: GPL-2.0-only
"""Without scx_morpheus: same behaviour as the Rust runtime. Budget and
pressure sources work, the reason the kernel path is off is said once, and
nothing raises on import."""

from __future__ import annotations

from _support import NO_SOCKET, last_json, run_python

WORK = """
import json, logging, threading, time, morpheus
logging.basicConfig(level=logging.INFO, format="LOG %(levelname)s %(name)s %(message)s")

def work():
    morpheus.attach_worker(budget_ms=2)
    end = time.perf_counter() + 0.1
    while time.perf_counter() < end:
        morpheus.checkpoint()

threads = [threading.Thread(target=work) for _ in range(3)]
for t in threads: t.start()
for t in threads: t.join()
work()
s = morpheus.snapshot()
print(json.dumps({"registration": s.registration, "reason": s.registration_reason,
                  "active": [s.sources_active.kernel, s.sources_active.budget],
                  "yields": s.process.yields, "enabled": s.enabled}))
"""


def test_budget_source_works_and_the_reason_is_said_once():
    p = run_python(WORK, MORPHEUS_SOURCES=None)  # the default sources
    r = last_json(p.stdout)
    assert r["registration"] == "unavailable" and NO_SOCKET in r["reason"]
    assert r["active"] == [False, True] and r["enabled"]
    # Four workers, one message (on the logger "morpheus").
    said = [line for line in p.stderr.splitlines() if "scx_morpheus is not running" in line]
    assert len(said) == 1, p.stderr
    assert said[0].startswith("LOG INFO morpheus morpheus: scx_morpheus is not running")
    # Budget or, on a loaded machine, pressure (the budget halved).
    assert r["yields"]["budget"] + r["yields"]["pressure"] >= 4, r


def test_import_never_raises_and_bad_settings_are_reported_once():
    p = run_python(
        """
        import json, logging, morpheus
        logging.basicConfig(level=logging.INFO, format="LOG %(message)s")
        morpheus.attach_worker()
        assert morpheus.checkpoint() is False
        w = morpheus.current_worker()
        morpheus.snapshot(); morpheus.snapshot()
        print(json.dumps({"budget": w.budget_ms, "mode": morpheus.mode()}))
        """,
        MORPHEUS_BUDGET_MS="banana",
        MORPHEUS_MODE="turbo",
        MORPHEUS_SOCKET="",
    )
    r = last_json(p.stdout)
    assert r["budget"] == 10.0  # the default, not banana
    for var in ("MORPHEUS_BUDGET_MS", "MORPHEUS_MODE", "MORPHEUS_SOCKET"):
        lines = [line for line in p.stderr.splitlines() if var in line]
        assert len(lines) == 1 and "using the default" in lines[0], (var, p.stderr)


def test_warnings_show_without_any_logging_setup():
    """Python's last-resort handler prints warnings: a misconfiguration is
    visible even in a program that never configured logging."""
    p = run_python(
        "import morpheus; morpheus.checkpoint(); morpheus.snapshot()",
        MORPHEUS_BUDGET_MS="-1",
    )
    assert "MORPHEUS_BUDGET_MS" in p.stderr, p.stderr


def test_disabled_never_yields():
    p = run_python(
        """
        import json, time, morpheus
        end = time.perf_counter() + 0.1
        n = 0
        while time.perf_counter() < end:
            n += morpheus.checkpoint()
        s = morpheus.snapshot()
        print(json.dumps({"yields": n, "enabled": s.enabled, "registration": s.registration}))
        """,
        MORPHEUS_DISABLE="1",
    )
    assert last_json(p.stdout) == {"yields": 0, "enabled": False, "registration": "disabled"}


def test_queued_log_records_reach_logging_without_api_calls():
    """A record queued where nothing flushes it (here: the first checkpoint
    of a thread attaches it, on the fast path's return) reaches the
    ``morpheus`` logger through the pump thread, with no further API call."""
    p = run_python(
        """
        import logging, threading, time, morpheus
        logging.basicConfig(level=logging.INFO, format="LOG %(message)s")
        t = threading.Thread(target=morpheus.checkpoint)
        t.start(); t.join()
        morpheus._start_log_pump()  # what attach_worker() and loop start do
        time.sleep(2.5)
        """,
    )
    assert p.stderr.count("scx_morpheus is not running") == 1, p.stderr
