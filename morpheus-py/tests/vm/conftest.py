# SPDX-License-Identifier: GPL-2.0-only
"""VM tests: a Python worker against the real scheduler.

They need a sched_ext kernel and root, so they run inside the test VM:

    cargo build -p scx_morpheus
    tools/vm/run -- .venv/bin/python -m pytest -q morpheus-py/tests/vm
    tools/vm/run --kernel-version lts -- .venv/bin/python -m pytest -q morpheus-py/tests/vm

(``MORPHEUS_LOADER=/path/to/scx_morpheus`` selects another loader binary.)
Anywhere else (no ``MORPHEUS_KERNEL_RELEASE`` from tools/vm/run and no
``MORPHEUS_VM_TESTS=1``) they are skipped, so the host suite
(``pytest morpheus-py/tests``) passes over them. Inside the VM a missing
sched_ext or root is a failure, not a skip.
"""

from __future__ import annotations

import os

import pytest

WANTED = bool(os.environ.get("MORPHEUS_KERNEL_RELEASE") or os.environ.get("MORPHEUS_VM_TESTS") == "1")


def pytest_collection_modifyitems(config, items):
    if WANTED:
        return
    skip = pytest.mark.skip(
        reason="needs a sched_ext kernel: tools/vm/run -- .venv/bin/python -m pytest -q morpheus-py/tests/vm"
    )
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(skip)
