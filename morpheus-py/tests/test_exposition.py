# SPDX-License-Identifier: GPL-2.0-only
"""The OpenMetrics texts, read by prometheus_client's OpenMetrics parser.

The parser rejects what Prometheus would choke on: a family without its
metadata, a counter sample without ``_total``, buckets out of order or not
cumulative, a missing ``+Inf`` bucket, ``_count`` without ``_sum`` (or the
reverse), a non-canonical ``+Inf``, a missing ``# EOF``.
"""

from __future__ import annotations

import math

from prometheus_client.openmetrics.parser import text_string_to_metric_families

import morpheus
from _support import PACKAGE_DIR, run_python

# The loader's exposition of fixed figures, kept equal to what the loader
# writes by scx_morpheus's stats::tests::the_exposition_matches_the_parsed_sample.
LOADER_SAMPLE = PACKAGE_DIR.parent / "scx_morpheus" / "tests" / "data" / "openmetrics.txt"


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def bounds(family) -> list:
    """The finite bucket bounds of a histogram family, in order."""
    les = [float(s.labels["le"]) for s in family.samples if s.name.endswith("_bucket")]
    assert les[-1] == math.inf
    return les[:-1]


def test_the_runtime_exposition_parses_with_seconds_and_a_sum():
    fams = families(morpheus.openmetrics())
    assert all(name.startswith("morpheus_runtime_") for name in fams), sorted(fams)
    assert fams["morpheus_runtime_yields"].type == "counter"
    assert fams["morpheus_runtime_mode"].type == "gauge"
    hist = fams["morpheus_runtime_hint_response_seconds"]
    assert hist.type == "histogram"
    # Seconds: the runtime's buckets go from 10 us to 500 ms.
    assert bounds(hist)[0] == 0.00001 and bounds(hist)[-1] == 0.5, bounds(hist)
    suffixes = {s.name[len(hist.name):] for s in hist.samples}
    assert suffixes == {"_bucket", "_sum", "_count"}


def test_per_worker_samples_need_the_variable():
    """Worker numbers are unbounded label values: off unless asked for."""
    code = """
        import sys
        import morpheus
        morpheus.attach_worker()
        morpheus.checkpoint()
        sys.stdout.write(morpheus.openmetrics())
    """
    default = run_python(code).stdout
    assert "worker=" not in default
    assert "morpheus_runtime_worker_yields" not in default
    families(default)

    on = run_python(code, MORPHEUS_METRICS_PER_WORKER="1").stdout
    fams = families(on)
    per_worker = fams["morpheus_runtime_worker_yields"]
    assert per_worker.type == "counter"
    assert {s.labels["worker"] for s in per_worker.samples}, on
    assert all(set(s.labels) == {"worker", "cause"} for s in per_worker.samples)


def test_the_loader_exposition_parses_with_histograms_in_seconds():
    text = LOADER_SAMPLE.read_text()
    fams = families(text)
    assert all(name.startswith("scx_morpheus_") for name in fams), sorted(fams)
    assert fams["scx_morpheus_hints_sent"].type == "counter"
    assert fams["scx_morpheus_slice_us"].type == "gauge"
    # The since-attach percentile gauges are gone: the histograms say it.
    assert not [n for n in fams if "_p50_" in n or "_p99_" in n], sorted(fams)
    for name in ("hint_response_seconds", "hint_delay_seconds", "timer_late_seconds"):
        hist = fams[f"scx_morpheus_{name}"]
        assert hist.type == "histogram"
        les = bounds(hist)
        # log2(us) buckets written in seconds: 2 us, 4 us, ... 8.388608 s.
        assert les[0] == 2e-6 and les[-1] == 8.388608, les
        assert all(b == 2 * a for a, b in zip(les, les[1:])), les
        # BPF keeps no sum: no _sum, and so no _count either.
        assert {s.name[len(hist.name):] for s in hist.samples} == {"_bucket"}
        counts = [s.value for s in hist.samples]
        assert counts == sorted(counts) and counts[-1] > counts[0], counts
