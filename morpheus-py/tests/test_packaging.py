# SPDX-License-Identifier: GPL-2.0-only
"""The installed distribution is the one ``pyproject.toml`` describes: its
name (not ``morpheus``, which belongs to another project on the Python
package index), the ``morpheus`` import package it provides, its version
and its abi3 wheel tag."""

import importlib.metadata
import re

import morpheus
from _support import PACKAGE_DIR


def project_name() -> str:
    m = re.search(r'^\[project\]\n(?:#.*\n)*name = "([^"]+)"', (PACKAGE_DIR / "pyproject.toml").read_text(), re.M)
    assert m, "no [project] name in pyproject.toml"
    return m.group(1)


def test_distribution_provides_morpheus_at_its_version():
    name = project_name()
    assert name != "morpheus"  # taken on the Python package index
    dist = importlib.metadata.distribution(name)
    assert dist.version == morpheus.__version__
    files = {f.as_posix() for f in dist.files or ()}
    assert "morpheus/__init__.py" in files and "morpheus/py.typed" in files


def test_wheel_is_abi3_for_cpython_3_9_on():
    wheel = importlib.metadata.distribution(project_name()).read_text("WHEEL") or ""
    tags = re.findall(r"^Tag: (\S+)$", wheel, re.M)
    assert tags and all(t.startswith("cp39-abi3-") for t in tags), wheel
