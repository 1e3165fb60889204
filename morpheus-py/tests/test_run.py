# SPDX-License-Identifier: GPL-2.0-only
"""``python -m morpheus.run``: any module or script under Morpheus, and a
real uvicorn server serving real requests during a CPU-heavy one, under
morpheus.run and with ``uvicorn --loop morpheus:new_event_loop``."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time

import pytest

from _support import PACKAGE_DIR, child_env, last_json

PROBE = """
import asyncio, json, sys
import morpheus

async def main():
    w = morpheus.current_worker()
    return {"argv": sys.argv, "name": __name__, "instrumented": morpheus.installed(asyncio.get_running_loop()),
            "kind": w.kind, "budget_ms": w.budget_ms, "path0": sys.path[0]}

print(json.dumps(asyncio.run(main())))
"""


def morpheus_run(*args: str, cwd=None, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "morpheus.run", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=child_env(**env),
    )


def test_runs_a_module_like_python_m(tmp_path):
    (tmp_path / "probe_mod.py").write_text(PROBE)
    p = morpheus_run("--budget-ms", "7", "-m", "probe_mod", "a", "--flag", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    r = last_json(p.stdout)
    assert r["argv"] == [str(tmp_path / "probe_mod.py"), "a", "--flag"]
    assert r["name"] == "__main__"
    assert r["instrumented"] and r["kind"] == "asyncio" and r["budget_ms"] == 7.0
    # The kernel path is off here, and it says so once, on stderr.
    assert p.stderr.count("scx_morpheus is not running") == 1, p.stderr


def test_runs_a_script_and_code(tmp_path):
    script = tmp_path / "sub" / "probe_script.py"
    script.parent.mkdir()
    script.write_text(PROBE)
    p = morpheus_run(str(script), "x")
    assert p.returncode == 0, p.stderr
    r = last_json(p.stdout)
    assert r["argv"] == [str(script), "x"] and r["path0"] == str(script.parent)
    assert r["instrumented"] and r["budget_ms"] == 10.0

    p = morpheus_run("-c", PROBE, "y")
    assert p.returncode == 0, p.stderr
    r = last_json(p.stdout)
    assert r["argv"] == ["-c", "y"] and r["instrumented"]


def test_exit_status_and_usage_errors(tmp_path):
    p = morpheus_run("-c", "raise SystemExit(3)")
    assert p.returncode == 3
    p = morpheus_run("--no-install", "-c", "import asyncio, morpheus\n"
                     "async def m(): return morpheus.installed(asyncio.get_running_loop())\n"
                     "print(asyncio.run(m()))")
    assert p.returncode == 0 and p.stdout.strip() == "False", p.stderr
    for args, words in [((), "no program"), (("--bogus", "x"), "unknown option"),
                        (("--budget-ms", "fast", "-c", "pass"), "milliseconds"),
                        (("--mode", "turbo", "-c", "pass"), "expected one of"), (("-m",), "needs an argument")]:
        p = morpheus_run(*args)
        assert p.returncode == 2 and words in p.stderr, (args, p.stderr)


def test_version_is_the_package_s():
    import morpheus

    p = morpheus_run("--version")
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"morpheus {morpheus.__version__}\n"
    # After the program, --version is the program's.
    p = morpheus_run("-c", "import sys; print(sys.argv)", "--version")
    assert p.returncode == 0 and p.stdout == "['-c', '--version']\n", (p.stdout, p.stderr)


def test_help_gives_usage_what_it_does_options_and_examples():
    from morpheus import run

    p = morpheus_run("--help")
    assert p.returncode == 0 and p.stderr == "", p.stderr
    out = p.stdout
    assert out.startswith("usage: python -m morpheus.run [OPTIONS] (-m MODULE | -c CODE | SCRIPT) [ARGS...]\n")
    assert "Runs a Python program as python would" in out and "morpheus.install()" in out
    # Every option the parser takes has its line.
    for option in [*run._VALUE_OPTIONS, "--no-install", "--version", "-h, --help"]:
        assert re.search(rf"^  {re.escape(option)}\b", out, re.M), (option, out)
    assert "\n  python -m morpheus.run --budget-ms 5 -m uvicorn examples.fastapi_app:app" in out
    assert "\n  uvicorn --loop morpheus:new_event_loop examples.fastapi_app:app" in out
    # Plain text for a terminal, not reStructuredText.
    assert max(len(line) for line in out.splitlines()) <= 80, out
    assert "``" not in out and "::" not in out, out
    assert morpheus_run("-h").stdout == out


# ----------------------------------------------------------------- uvicorn

BUDGET_MS = 5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# How a test starts uvicorn with examples.fastapi_app:app (after `python`).
MORPHEUS_RUN = ("-m", "morpheus.run", "-m", "uvicorn", "examples.fastapi_app:app", "--loop", "asyncio")
LOOP_FACTORY = ("-m", "uvicorn", "examples.fastapi_app:app", "--loop", "morpheus:new_event_loop")
PLAIN_ASYNCIO = ("-m", "uvicorn", "examples.fastapi_app:app", "--loop", "asyncio")


class Server:
    """uvicorn serving ``examples.fastapi_app:app`` on 127.0.0.1, started by
    ``python *command *args`` (by default under ``python -m morpheus.run``),
    stopped (and killed if need be) on exit."""

    def __init__(self, command=MORPHEUS_RUN, *args: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, *command, *args, "--host", "127.0.0.1", "--port", str(self.port), "--no-access-log"],
            cwd=PACKAGE_DIR,
            env=child_env(MORPHEUS_BUDGET_MS=str(BUDGET_MS)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "Server":
        import httpx

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"uvicorn exited ({self.proc.returncode}):\n{self.proc.stdout.read()}")
            try:
                if httpx.get(self.url + "/light", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise AssertionError(f"uvicorn did not start:\n{self.output}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)
        self.output = self.proc.stdout.read()

    def __exit__(self, *exc) -> None:
        self.stop()


def latencies_during(client, url: str, heavy_path: str, max_requests: int = 2000):
    """Sends light requests (at most ``max_requests``, within 60 s) until
    ``heavy_path``, sent on its own connection, is answered; returns the
    light latencies (ms, sorted), the heavy response and its duration (s).
    (The first light requests may be served before the heavy one reaches
    the server: they only add fast samples.)"""
    import httpx

    heavy = {}

    def run_heavy() -> None:
        t0 = time.perf_counter()
        with httpx.Client(base_url=url, timeout=120) as c:
            heavy["response"] = c.get(heavy_path).json()
        heavy["seconds"] = time.perf_counter() - t0

    t = threading.Thread(target=run_heavy)
    t.start()
    time.sleep(0.1)  # let the heavy request start computing
    lat = []
    deadline = time.monotonic() + 60
    while t.is_alive() and len(lat) < max_requests and time.monotonic() < deadline:
        t0 = time.perf_counter()
        assert client.get("/light").status_code == 200
        lat.append((time.perf_counter() - t0) * 1000)
    t.join(120)
    assert "response" in heavy, "the heavy request failed"
    return sorted(lat), heavy["response"], heavy["seconds"]


def pct(xs, p):
    return xs[min(len(xs) - 1, int(len(xs) * p))]


@pytest.fixture(scope="module")
def server():
    try:
        import fastapi  # noqa: F401
        import httpx  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        pytest.fail(f"{e}: install the test extras: pip install './morpheus-py[test]'")
    with Server() as s:
        yield s
    assert "scx_morpheus is not running" in s.output  # said once, why the kernel path is off
    assert s.output.count("scx_morpheus is not running") == 1, s.output


def test_uvicorn_serves_light_requests_during_a_heavy_one(server, capsys):
    import httpx

    with httpx.Client(base_url=server.url, timeout=30) as client:
        # Size the heavy request to about 1.5 s on this machine.
        t0 = time.perf_counter()
        client.get("/heavy-blocking", params={"n": 200_000})
        n = int(min(20_000_000, max(1_000_000, 200_000 * 1.5 / (time.perf_counter() - t0))))

        lat, heavy, heavy_s = latencies_during(client, server.url, f"/heavy?n={n}")
        blocked, _, blocking_s = latencies_during(client, server.url, f"/heavy-blocking?n={n}")

        stats = client.get("/stats").json()
        metrics = client.get("/metrics").text

    with capsys.disabled():
        print(
            f"\nuvicorn, budget {BUDGET_MS} ms, heavy request {heavy_s:.2f} s ({heavy['yields']} yields): "
            f"{len(lat)} light requests, p50 {pct(lat, .5):.1f} ms, p90 {pct(lat, .9):.1f} ms, "
            f"max {lat[-1]:.1f} ms; without checkpoints: light request waited {blocked[-1]:.0f} ms "
            f"(heavy {blocking_s:.2f} s)"
        )
    assert heavy["yields"] >= 10
    assert len(lat) >= 10, lat
    # Bounded by the budget: the heavy handler gives the loop back every
    # budget, and a light request needs a couple of loop turns. Generous
    # factors for a busy CI machine; without checkpoints the light request
    # waits for the whole heavy one.
    assert pct(lat, 0.5) <= 6 * BUDGET_MS + 20, lat
    assert pct(lat, 0.9) <= 12 * BUDGET_MS + 40, lat
    assert blocked[-1] >= 0.5 * blocking_s * 1000 > 4 * pct(lat, 0.9), (blocked, lat)

    assert stats["heavy_requests"] == 1
    assert stats["loop_thread_yields"]["budget"] >= heavy["yields"]
    assert 'morpheus_runtime_yields_total{cause="budget"}' in metrics and metrics.endswith("# EOF\n")


def test_uvicorn_sync_endpoint_hands_the_gil_back(server):
    """A plain ``def`` endpoint runs in the thread pool; its checkpoints hand
    the GIL to the event loop's thread when the budget runs out."""
    import httpx

    with httpx.Client(base_url=server.url, timeout=30) as client:
        lat, heavy, _ = latencies_during(client, server.url, "/heavy-sync?n=3000000")
    assert heavy["yields"] >= 5
    assert len(lat) >= 5 and pct(lat, 0.5) <= 6 * BUDGET_MS + 20, lat


# ------------------------------------------- uvicorn --loop morpheus:...

def stats(url: str) -> dict:
    """``/stats`` on a new connection: any of the server's processes may
    accept it."""
    import httpx

    r = httpx.get(url + "/stats", timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_uvicorn_loop_factory_runs_the_morpheus_loop():
    """``uvicorn --loop morpheus:new_event_loop`` (uvicorn 0.36+), without
    morpheus.run: uvicorn builds its loop with Morpheus's factory, whose
    thread is an ``asyncio`` worker from the start and which checkpoints
    before every callback, so light requests get through a heavy one."""
    import httpx

    with Server(LOOP_FACTORY) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        before = stats(server.url)
        lat, heavy, _ = latencies_during(client, server.url, "/heavy?n=3000000")
        after = stats(server.url)
    assert before["loop_checkpoints"] is True and before["loop_thread_kind"] == "asyncio", before
    assert heavy["yields"] >= 5
    assert len(lat) >= 5 and pct(lat, 0.5) <= 6 * BUDGET_MS + 20, lat
    assert after["heavy_requests"] == 1
    assert after["loop_thread_yields"]["budget"] >= heavy["yields"], after


def test_uvicorn_plain_asyncio_loop_is_not_morpheus_s():
    """The control: uvicorn's own ``--loop asyncio`` without morpheus.run
    has no checkpoints between callbacks, and its thread becomes a worker
    (kind ``generic``) only at its first critical section, in ``/stats``."""
    with Server(PLAIN_ASYNCIO) as server:
        s = stats(server.url)
    assert s["loop_checkpoints"] is False and s["loop_thread_kind"] == "generic", s


def test_uvicorn_loop_factory_reaches_every_worker():
    """``--workers 2`` starts two fresh interpreters, which morpheus.run
    does not reach; the loop factory does. While one worker computes
    ``/heavy-blocking`` (its loop accepts nothing), the other accepts the
    next connection: block one, ask the other, block it, ask the first."""
    import httpx

    with Server(LOOP_FACTORY, "--workers", "2") as server:
        # Size /heavy-blocking to about 2 s here (warmed up, 1M steps at least).
        httpx.get(server.url + "/heavy-blocking", params={"n": 100_000}, timeout=30)
        t0 = time.perf_counter()
        httpx.get(server.url + "/heavy-blocking", params={"n": 400_000}, timeout=30)
        n = int(min(40_000_000, max(1_000_000, 400_000 * 2.0 / (time.perf_counter() - t0))))

        seen = {}  # pid -> its /stats
        heavy_pids = set()
        for _ in range(3):  # the first round normally sees both
            threads = []
            for _ in range(2):
                t = threading.Thread(target=lambda: heavy_pids.add(
                    httpx.get(server.url + "/heavy-blocking", params={"n": n}, timeout=60).json()["pid"]))
                t.start()
                threads.append(t)
                time.sleep(0.5)  # the heavy request is computing: the other worker is free
                s = stats(server.url)
                seen[s["pid"]] = s
            for t in threads:
                t.join(60)
            if len(seen) == 2:
                break
    assert len(seen) == 2 and heavy_pids == set(seen), (seen, heavy_pids, server.output)
    assert server.proc.pid not in seen  # served by the worker processes
    for s in seen.values():
        assert s["loop_checkpoints"] is True and s["loop_thread_kind"] == "asyncio", seen


def test_uvicorn_loop_factory_reaches_the_reloaded_server(tmp_path):
    """``--reload`` serves from a child interpreter, started again when a
    watched file changes; both use Morpheus's loop."""
    import httpx

    watched = tmp_path / "watched.py"
    watched.write_text("")
    with Server(LOOP_FACTORY, "--reload", "--reload-dir", str(tmp_path)) as server:
        first = stats(server.url)
        mtime = watched.stat().st_mtime + 10
        os.utime(watched, (mtime, mtime))  # a change the reloader sees
        deadline = time.monotonic() + 30
        second = first
        while second["pid"] == first["pid"] and time.monotonic() < deadline:
            time.sleep(0.2)
            try:
                second = stats(server.url)
            except httpx.HTTPError:  # the server restarting
                pass
    assert second["pid"] != first["pid"], server.output  # reloaded
    assert server.proc.pid not in (first["pid"], second["pid"])  # served by children
    for s in (first, second):
        assert s["loop_checkpoints"] is True and s["loop_thread_kind"] == "asyncio", (first, second)
