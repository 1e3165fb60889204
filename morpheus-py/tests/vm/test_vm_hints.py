# SPDX-License-Identifier: GPL-2.0-only
"""A Python worker registered with the real scheduler (scx_morpheus under a
sched_ext kernel) receives hints under contention and answers them; in a
critical section it is never escalated. See conftest.py for how to run."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Dict, List

import pytest

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[2]
SCHED_EXT = pathlib.Path("/sys/kernel/sched_ext")
ATTACH_TIMEOUT = 120  # BPF verification under TCG emulation takes a while


def loader_binary() -> str:
    """The scx_morpheus binary: $MORPHEUS_LOADER, or the workspace build."""
    env = os.environ.get("MORPHEUS_LOADER")
    if env:
        return env
    for profile in ("debug", "release"):
        path = REPO / "target" / profile / "scx_morpheus"
        if path.is_file():
            return str(path)
    pytest.fail("no scx_morpheus binary: run `cargo build -p scx_morpheus` or set MORPHEUS_LOADER")


def state() -> str:
    try:
        return (SCHED_EXT / "state").read_text().strip()
    except OSError:
        return ""


def wait_for(timeout: float, cond) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def serves(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


class Loader:
    """A running scx_morpheus; stopped with SIGINT (killed if it hangs)."""

    def __init__(self, name: str, port: int, *args: str) -> None:
        assert SCHED_EXT.exists(), f"kernel {os.uname().release} has no sched_ext"
        assert os.geteuid() == 0, "attaching a scheduler needs root"
        assert state() == "disabled", f"another scheduler is attached ({state()})"
        os.makedirs("/run/morpheus", exist_ok=True)
        self.socket = f"/run/morpheus/test-py-{name}.sock"
        self.addr = f"127.0.0.1:{port}"
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [loader_binary(), "--socket", self.socket, "--metrics-addr", self.addr, *args],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        ok = wait_for(ATTACH_TIMEOUT, lambda: state() == "enabled" or self.proc.poll() is not None)
        ok = ok and state() == "enabled" and wait_for(ATTACH_TIMEOUT, lambda: serves(self.socket))
        if not ok:
            out = self.stop()
            pytest.fail(f"scx_morpheus did not come up (state {state()!r}):\n{out}")

    def metric(self, name: str) -> int:
        """A counter of the loader's OpenMetrics text (summed over labels)."""
        with urllib.request.urlopen(f"http://{self.addr}/metrics", timeout=10) as r:
            text = r.read().decode()
        total, found = 0, False
        for line in text.splitlines():
            key = line.split("{")[0].split(" ")[0]
            if key in (f"scx_morpheus_{name}", f"scx_morpheus_{name}_total"):
                total += int(float(line.rsplit(" ", 1)[1]))
                found = True
        assert found, f"metric {name} not in:\n{text}"
        return total

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        wait_for(30, lambda: state() == "disabled")
        self.log.seek(0)
        out = self.log.read()
        print(f"--- scx_morpheus ---\n{out}--- end ---")
        return out

    def __enter__(self) -> "Loader":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        assert self.proc.returncode == 0, f"scx_morpheus exited with {self.proc.returncode}"


def test_cpu() -> int:
    return max(os.sched_getaffinity(0))


test_cpu.__test__ = False  # a helper, not a test


def hogs(cpu: int, n: int = 2) -> List[subprocess.Popen]:
    """CPU-bound processes pinned to ``cpu``."""
    code = f"import os\nos.sched_setaffinity(0, {{{cpu}}})\nwhile True:\n    pass\n"
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(n)]


def worker_env(loader: Loader) -> Dict[str, str]:
    """The environment of a worker process of the tests: ``loader``'s
    socket, and kernel signals only (no budget or pressure yield), so that
    every yield the ledger shows is the kernel's doing."""
    return {
        **os.environ,
        "MORPHEUS_SOCKET": loader.socket,
        "MORPHEUS_SOURCES": "kernel",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def run_worker(loader: Loader, *args: str, contended: bool = True, seconds: float = 1.5) -> Dict:
    """Runs vm_worker.py against ``loader`` on the test CPU and returns its
    report. With ``contended``, two hogs share the CPU while it computes
    (started once it is registered, stopped once it is done)."""
    cpu = test_cpu()
    worker = subprocess.Popen(
        [sys.executable, str(HERE / "vm_worker.py"), "--cpu", str(cpu), "--seconds", str(seconds), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=worker_env(loader),
    )
    competitors: List[subprocess.Popen] = []
    steps = []
    try:
        steps.append(worker.stdout.readline().strip())
        if steps[-1] == "ready":
            if contended:
                competitors = hogs(cpu)
            worker.stdin.write("go\n")
            worker.stdin.flush()
            steps.append(worker.stdout.readline().strip())
            # Contention ends with the computation; then the worker reports.
            for h in competitors:
                h.kill()
                h.wait()
            competitors = []
            worker.stdin.write("stopped\n")
            worker.stdin.flush()
    finally:
        for h in competitors:
            h.kill()
            h.wait()
        try:
            out, err = worker.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            worker.kill()
            out, err = worker.communicate()
    assert worker.returncode == 0 and steps == ["ready", "computed"], f"worker failed ({steps}):\n{out}\n{err}"
    report = json.loads(out.strip().splitlines()[-1])
    print(f"worker {' '.join(args)}: {report}")
    return report


def test_a_python_worker_receives_hints_under_contention_and_answers_them():
    with Loader("hints", 19301) as loader:
        r = run_worker(loader, "--every", "100")
        assert r["started"]["slot"] is not None, f"not registered: {r['reason']}"
        assert r["registration"] == "connected" and r["escapable"] is False
        assert r["mode"] == "pressured", "registered workers honour kernel hints"
        assert r["hints_seen"] >= 1, r
        assert r["hints_answered"] >= 1 and r["yields"]["hint"] >= 1, r
        assert r["yielded"] >= 1 and r["response_count"] == r["hints_answered"]
        assert r["yields"]["budget"] == 0  # the kernel source alone
        sent = loader.metric("hints_sent")
        answered = loader.metric("hints_answered")
        print(f"loader: hints sent {sent}, answered {answered}")
        assert sent >= r["hints_seen"] >= 1
        assert answered >= 1
        assert loader.metric("escalations_kick") == 0  # observer mode


def test_a_critical_section_is_never_escalated():
    # The critical worker's section lasts its 1 s computation; the cap (the
    # loader's maximum, 2.5 s) leaves 1.5 s for emulation noise. Past the
    # cap the scheduler may rightly preempt and escalate.
    with Loader("enforce", 19302, "--debug", "--enforce", "--grace-ms", "20", "--max-overrun-ms", "400",
                "--max-critical-ms", "2500") as loader:
        # The control: an escapable worker that ignores hints is escalated.
        # (A worker that never checkpoints does not look at its hints, so
        # the loader's count says they were sent.)
        sent = loader.metric("hints_sent")
        ignoring = run_worker(loader, "--escapable", "--never")
        assert ignoring["slot"] is not None, ignoring
        assert loader.metric("hints_sent") > sent
        kicks = loader.metric("escalations_kick")
        assert ignoring["escalations"] >= 1 and kicks >= ignoring["escalations"], (kicks, ignoring)
        assert ignoring["yields"]["escalated"] == ignoring["escalations"]

        # Escapable too, but inside a critical section: hints arrive, the
        # checkpoints defer them, and the scheduler never escalates.
        critical = run_worker(loader, "--escapable", "--critical", "--every", "100", seconds=1.0)
        assert critical["slot"] is not None and critical["hints_seen"] >= 1, critical
        assert critical["checkpoints_deferred"] >= 1 and critical["yielded"] == 0, critical
        assert critical["after_section"] is True  # answered right after the section
        assert critical["escalations"] == 0 and critical["yields"]["escalated"] == 0, critical
        assert loader.metric("escalations_kick") == kicks

        # The Python default (not escapable) is never escalated either, even
        # when it ignores hints: it may hold the GIL.
        sent = loader.metric("hints_sent")
        default = run_worker(loader, "--never")
        assert default["slot"] is not None and default["escapable"] is False, default
        assert loader.metric("hints_sent") > sent
        assert default["escalations"] == 0, default
        assert loader.metric("escalations_kick") == kicks


def echo_server_pings(loader: Loader, pings: int = 40) -> Dict:
    """Runs vm_echo_server.py against ``loader`` on the test CPU: pings it
    from another CPU while it idles (its loop waits in epoll, which the
    scheduler learns from), then while its long coroutine computes, and
    returns its report with the median round trip of the busy pings."""
    cpu = test_cpu()
    other = min(os.sched_getaffinity(0) - {cpu} or {cpu})
    server = subprocess.Popen(
        [sys.executable, str(HERE / "vm_echo_server.py"), "--cpu", str(cpu), "--pings", str(pings)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=worker_env(loader),
    )
    os.sched_setaffinity(0, {other})
    rtts: List[float] = []
    try:
        port = int(server.stdout.readline())
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def ping() -> float:
                t = time.monotonic()
                s.sendall(b"p")
                if s.recv(1) != b"p":
                    raise ConnectionResetError("the server closed the connection")
                return time.monotonic() - t

            for _ in range(5):
                ping()
                time.sleep(0.02)
            server.stdin.write("go\n")
            server.stdin.flush()
            assert server.stdout.readline().strip() == "busy"
            # Until the server ends its computation (it stops once it has
            # answered ``pings`` while busy, and closes the connection).
            deadline = time.monotonic() + 10
            while len(rtts) < pings and time.monotonic() < deadline:
                try:
                    rtts.append(ping())
                except ConnectionError:
                    break
                time.sleep(0.005)
        out, err = server.communicate(timeout=60)
    finally:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert server.returncode == 0, f"echo server failed:\n{out}\n{err}"
    report = json.loads(out.strip().splitlines()[-1])
    rtts.sort()
    report["busy_rtt_p50_ms"] = round(1000 * rtts[len(rtts) // 2], 3) if rtts else None
    return report


def test_a_busy_asyncio_service_serves_io_at_its_next_checkpoint():
    # With catch-ups, pings that arrive while the loop runs a long
    # coroutine are answered at its next async_checkpoint(); the control
    # (--no-catch-up) sends none, whatever else answers the pings.
    with Loader("catch-up", 19303) as loader:
        on = echo_server_pings(loader)
        on_sent = loader.metric("catch_ups")
    with Loader("no-catch-up", 19304, "--no-catch-up") as loader:
        off = echo_server_pings(loader)
        off_sent = loader.metric("catch_ups")
    print(f"catch-ups on: {on}, loader sent {on_sent}; off (control): {off}, loader sent {off_sent}")
    assert on["slot"] is not None and off["slot"] is not None
    # Pings are answered while the coroutine computes (through hints too,
    # with and without catch-ups: the count is not the point), and with
    # catch-ups most of them through one.
    assert on["answered_busy"] >= 10, on
    assert on["yields"]["catch_up"] >= on["answered_busy"] // 2, on
    assert on_sent >= on["yields"]["catch_up"]
    assert off["yields"]["catch_up"] == 0 and off_sent == 0, off
