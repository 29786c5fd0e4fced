"""The Prometheus text format of :class:`~collab.http.metrics.SharedMetrics`: the only
module that imports ``prometheus_client``.

:mod:`collab.http.metrics` imports it at the first scrape, so a server nobody scrapes
never loads prometheus_client.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from collab.core import metrics

if TYPE_CHECKING:
    from collab.http.metrics import SharedMetrics

__all__ = ["Exposition"]


class Exposition:
    """A registry holding the server's core metrics and this process's ``process_*`` ones."""

    def __init__(self, shared: SharedMetrics) -> None:
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_CoreCollector(shared))
        ProcessCollector(registry=self._registry)

    def render(self) -> bytes:
        """Every metric, now, in the classic text format."""
        return generate_latest(self._registry)


class _CoreCollector(Collector):
    """Metric families of :mod:`collab.core.metrics`, as merged by :class:`SharedMetrics`."""

    def __init__(self, shared: SharedMetrics) -> None:
        self._shared = shared

    def collect(self) -> Iterator[Metric]:
        values, workers = self._shared.collect()
        for metric in metrics.ALL:
            value = values.get(metric.name)
            if value is None:
                continue
            if isinstance(metric, metrics.Counter):
                yield CounterMetricFamily(metric.name, metric.help, value=value)
            elif isinstance(metric, metrics.Gauge):
                yield GaugeMetricFamily(metric.name, metric.help, value=value)
            elif isinstance(metric, metrics.LabeledCounter):
                family = CounterMetricFamily(metric.name, metric.help, labels=[metric.label])
                for label, count in sorted(value.items()):
                    family.add_metric([label], count)
                yield family
            else:
                yield _histogram(metric, value)
        yield GaugeMetricFamily(
            "collab_workers", "Server processes whose metrics this answer adds up.", workers
        )


def _histogram(metric: metrics.Histogram, value: dict[str, Any]) -> HistogramMetricFamily:
    cumulative, buckets = 0, []
    bounds = [*(repr(float(b)) for b in metric.buckets), "+Inf"]
    for bound, count in zip(bounds, value["counts"], strict=True):
        cumulative += count
        buckets.append((bound, float(cumulative)))
    return HistogramMetricFamily(metric.name, metric.help, buckets=buckets, sum_value=value["sum"])
