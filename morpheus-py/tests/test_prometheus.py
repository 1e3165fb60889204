# SPDX-License-Identifier: GPL-2.0-only
"""morpheus.prometheus.MorpheusCollector in a prometheus_client registry."""

from __future__ import annotations

import json

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client import exposition as text_exposition
from prometheus_client import parser as text_parser
from prometheus_client.openmetrics import exposition as om_exposition
from prometheus_client.openmetrics import parser as om_parser

import morpheus
from morpheus.prometheus import MorpheusCollector
from _support import run_python


def registry_with_collector() -> CollectorRegistry:
    registry = CollectorRegistry()
    # The service's own metric beside Morpheus's.
    Counter("requests", "Requests served.", registry=registry).inc()
    registry.register(MorpheusCollector())
    return registry


def kinds(fams) -> dict:
    return {f.name: f.type for f in fams}


def test_the_collector_adds_the_endpoints_families_with_their_names():
    own = kinds(om_parser.text_string_to_metric_families(morpheus.openmetrics()))
    text = om_exposition.generate_latest(registry_with_collector()).decode()
    served = kinds(om_parser.text_string_to_metric_families(text))
    assert served.pop("requests") == "counter"
    assert served == own
    assert "morpheus_runtime_hint_response_seconds_bucket{le=\"+Inf\"}" in text


def test_the_collector_output_parses_in_the_prometheus_text_format():
    text = text_exposition.generate_latest(registry_with_collector()).decode()
    served = kinds(text_parser.text_string_to_metric_families(text))
    assert served["morpheus_runtime_hint_response_seconds"] == "histogram"
    assert served["morpheus_runtime_yields"] == "counter"
    assert served["morpheus_runtime_mode"] == "gauge"


def test_the_collector_reads_the_figures_at_each_scrape():
    code = """
        import json, time
        import morpheus
        from prometheus_client import CollectorRegistry
        from morpheus.prometheus import MorpheusCollector

        registry = CollectorRegistry()
        registry.register(MorpheusCollector())

        def budget_yields():
            return registry.get_sample_value(
                "morpheus_runtime_yields_total", {"cause": "budget"})

        def spin(seconds):
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                pass

        before = budget_yields()
        morpheus.attach_worker(budget_ms=1)
        spin(0.02)
        for _ in range(3):
            morpheus.checkpoint()
            spin(0.005)
        print(json.dumps({"before": before, "after": budget_yields(),
                          "worker_label": "worker=" in str(list(registry.collect()))}))
    """
    import json

    r = json.loads(run_python(code).stdout.splitlines()[-1])
    assert r["before"] == 0 and r["after"] > 0, r
    assert r["worker_label"] is False


PER_WORKER_CODE = """
    import json
    import morpheus
    from prometheus_client import CollectorRegistry
    from morpheus.prometheus import MorpheusCollector

    morpheus.attach_worker()
    morpheus.checkpoint()

    def labelled(**kw):
        registry = CollectorRegistry()
        registry.register(MorpheusCollector(**kw))
        return any("worker" in s.labels for m in registry.collect() for s in m.samples)

    print(json.dumps({"default": labelled(), "on": labelled(per_worker=True),
                      "off": labelled(per_worker=False),
                      "text_on": "worker=" in morpheus.openmetrics(per_worker=True),
                      "text_default": "worker=" in morpheus.openmetrics()}))
"""


def test_the_collector_can_turn_per_worker_samples_on_and_off():
    # Not configured: off unless asked for.
    out = run_python(PER_WORKER_CODE, MORPHEUS_METRICS_PER_WORKER=None).stdout
    r = json.loads(out.splitlines()[-1])
    assert r == {"default": False, "on": True, "off": False,
                 "text_on": True, "text_default": False}, r
    # Configured on: the default follows, False still leaves them out.
    out = run_python(PER_WORKER_CODE, MORPHEUS_METRICS_PER_WORKER="1").stdout
    r = json.loads(out.splitlines()[-1])
    assert r == {"default": True, "on": True, "off": False,
                 "text_on": True, "text_default": True}, r


def test_the_collector_refuses_a_per_worker_that_is_not_a_bool():
    with pytest.raises(TypeError, match="per_worker must be True, False or None, not 'yes'"):
        MorpheusCollector(per_worker="yes")
