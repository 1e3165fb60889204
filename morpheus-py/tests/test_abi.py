# SPDX-License-Identifier: GPL-2.0-only
"""The values Python sees are the header's, through the native module."""

import pathlib
import re

import morpheus

HEADER = pathlib.Path(__file__).resolve().parents[2] / "morpheus-common/include/morpheus/abi.h"


def header_define(name: str) -> str:
    m = re.search(rf"#define {name} (\S+)", HEADER.read_text())
    assert m, f"{name} not in {HEADER}"
    return m.group(1)


def header_enum(prefix: str) -> "dict[str, int]":
    pairs = re.findall(rf"\b{prefix}([A-Z_]+) = (\d+),", HEADER.read_text())
    return {k.lower(): int(v) for k, v in pairs if not k.endswith("NR")}


def test_version_and_sizes_match_the_header():
    assert morpheus.ABI_VERSION == int(header_define("MORPHEUS_ABI_VERSION").rstrip("u"))
    assert morpheus.SCB_SIZE == 128
    assert morpheus.DEFAULT_SOCKET_PATH == header_define("MORPHEUS_DEFAULT_SOCKET_PATH").strip('"')


def test_enums_match_the_header():
    assert morpheus.YIELD_CAUSES == header_enum("MORPHEUS_YIELD_")
    assert morpheus.RUNTIME_MODES == header_enum("MORPHEUS_MODE_")
    assert morpheus.ESCALATION_POLICIES == header_enum("MORPHEUS_ESCALATION_")
    assert morpheus.WORKER_STATES == header_enum("MORPHEUS_WORKER_")
