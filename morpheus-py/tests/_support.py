# SPDX-License-Identifier: GPL-2.0-only
"""Helpers and shared setup of the host test suite (imported by conftest).

The host tests must not depend on whether a scheduler runs on the machine:
they point the runtime at a socket that does not exist (so the kernel
source is tried and reports why it is off, as on any machine without
scx_morpheus) and turn the PSI pressure source off (the CI machine's load
must not change which cause a yield is recorded under). Tests that need
other settings run a fresh interpreter (see ``run_python``): the runtime's
configuration is per process and fixed at first use.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap
from typing import Dict, Optional

import pytest

PACKAGE_DIR = pathlib.Path(__file__).resolve().parents[1]  # morpheus-py/
NO_SOCKET = "/nonexistent/morpheus-test.sock"

os.environ["MORPHEUS_SOCKET"] = NO_SOCKET
os.environ["MORPHEUS_SOURCES"] = "kernel,budget"
for var in ("MORPHEUS_DISABLE", "MORPHEUS_MODE", "MORPHEUS_BUDGET_MS", "MORPHEUS_ESCAPABLE",
            "MORPHEUS_METRICS_PER_WORKER"):
    os.environ.pop(var, None)


def child_env(**overrides: Optional[str]) -> Dict[str, str]:
    """The environment of a child interpreter: ours plus ``overrides``
    (``None`` removes a variable)."""
    env = dict(os.environ)
    for k, v in overrides.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def run_python(code: str, timeout: float = 60, cwd=None, **env: Optional[str]) -> subprocess.CompletedProcess:
    """Runs ``code`` in a fresh interpreter; fails the test with its output
    if it exits non-zero."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=child_env(**env),
    )
    if proc.returncode != 0:
        pytest.fail(f"child failed ({proc.returncode}):\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def last_json(text: str) -> dict:
    """The last line of ``text`` that is a JSON object."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise AssertionError(f"no JSON line in:\n{text}")
