# SPDX-License-Identifier: GPL-2.0-only
"""Morpheus's figures in a ``prometheus_client`` registry.

A service that already serves ``/metrics`` with ``prometheus_client`` adds
the runtime's families to it, under the names ``morpheus.openmetrics()``
uses (``morpheus_runtime_...``)::

    from prometheus_client import REGISTRY
    from morpheus.prometheus import MorpheusCollector

    REGISTRY.register(MorpheusCollector())

Per-worker samples (``morpheus_runtime_worker_yields{worker=...}``) appear
only with ``MORPHEUS_METRICS_PER_WORKER=1`` in the environment or
``MorpheusCollector(per_worker=True)``: worker numbers are label values
without bound.

``prometheus_client`` is not a dependency of the package: install it
yourself (``pip install prometheus-client``).
"""

from __future__ import annotations

from typing import Iterator, Optional

try:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "morpheus.prometheus needs the prometheus_client package: "
        "pip install prometheus-client"
    ) from e

from . import _morpheus as _native

__all__ = ["MorpheusCollector"]


class MorpheusCollector:
    """Collects the runtime's metric families at each scrape.

    They are read from the runtime's own OpenMetrics text, parsed by
    ``prometheus_client``'s OpenMetrics parser: the families, names, types,
    labels and values are the standalone exposition's, one definition for
    both. ``per_worker`` adds (True) or leaves out (False) the per-worker
    samples whatever the environment says; None (the default) follows
    ``MORPHEUS_METRICS_PER_WORKER``."""

    def __init__(self, per_worker: Optional[bool] = None) -> None:
        if per_worker is not None and not isinstance(per_worker, bool):
            raise TypeError(
                f"per_worker must be True, False or None, not {per_worker!r}"
            )
        self._per_worker = per_worker

    def collect(self) -> Iterator[Metric]:
        """The runtime's metric families now."""
        yield from text_string_to_metric_families(
            _native.openmetrics(self._per_worker)
        )
