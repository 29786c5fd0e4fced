"""This process's counters, gauges and one histogram: plain integers, free to bump.

Everything an operator scrapes from ``GET /metrics`` is counted here, by the code
that sees it happen (the room, the session, the journal, the transports, the
fan-out). A metric is a module-level object holding a plain ``int`` (no lock, no
registry lookup, no label resolution on the hot path), so counting costs one
attribute increment::

    from collab.core import metrics

    metrics.UPDATES_RECEIVED.value += 1          # the hot path: one increment
    metrics.CONNECTIONS_CLOSED.inc(str(code))     # a labelled counter
    metrics.STORE_COMMIT_SECONDS.observe(0.004)  # a histogram (per commit, not per update)

Only :mod:`collab.http.metrics` turns these into the Prometheus text format; no
Prometheus library is imported below it. Counters never go down; gauges go up
and down. The objects are shared by everything in the process (two servers in one
test process count into the same ones; compare before and after).

With several worker processes, each one's :func:`snapshot` is written to a shared
directory and :func:`merge` adds them up (``collab.http.metrics`` does both):
counters and histograms are summed over every worker that ever ran, gauges over
the live ones (``REDIS_UP`` takes their minimum: 1 only when every worker is
connected).

Adding a metric: declare it below with a name that follows Prometheus' conventions
(``collab_`` prefix, ``_total`` for counters, base units such as ``_seconds`` and
``_bytes``, no per-document labels), and list it in ``docs/operations.md``.
"""

from __future__ import annotations

import bisect
from typing import Any, Literal

__all__ = [
    "ALL",
    "BYTES_IN",
    "BYTES_OUT",
    "CONNECTIONS_CLOSED",
    "CONNECTIONS_OPEN",
    "CONNECTIONS_OPENED",
    "DELIVERIES_SENT",
    "DOCUMENTS_LOADED",
    "HANDSHAKES_REFUSED",
    "REDIS_PUBLISHED",
    "REDIS_RESYNCS",
    "REDIS_UP",
    "STORE_COMMITS_FAILED",
    "STORE_COMMIT_SECONDS",
    "UPDATES_COMMITTED",
    "UPDATES_PENDING",
    "UPDATES_RECEIVED",
    "Counter",
    "Gauge",
    "Histogram",
    "LabeledCounter",
    "Metric",
    "merge",
    "snapshot",
]


class Counter:
    """A count that only grows. Bump ``value`` directly on hot paths, or :meth:`inc`."""

    __slots__ = ("help", "name", "value")
    kind = "counter"

    def __init__(self, name: str, help: str) -> None:
        self.name = name
        self.help = help
        self.value = 0

    def inc(self, amount: int = 1) -> None:
        """Add ``amount`` (never negative)."""
        self.value += amount


class Gauge:
    """A value that goes up and down (things open, queued, loaded now).

    ``merge`` says how workers' values combine: ``"sum"`` (connections open in the
    whole server) or ``"min"`` (an up/down flag: up only when every worker is).
    An ``optional`` gauge is left out of the exposition until someone :meth:`set`\\ s
    it (``REDIS_UP`` exists only when Redis is configured).
    """

    __slots__ = ("exposed", "help", "merge", "name", "value")
    kind = "gauge"

    def __init__(
        self,
        name: str,
        help: str,
        *,
        merge: Literal["sum", "min"] = "sum",
        optional: bool = False,
    ) -> None:
        self.name = name
        self.help = help
        self.merge = merge
        self.value = 0
        self.exposed = not optional

    def inc(self, amount: int = 1) -> None:
        self.value += amount

    def dec(self, amount: int = 1) -> None:
        self.value -= amount

    def set(self, value: int) -> None:
        """Set the value (and expose an optional gauge from now on)."""
        self.value = value
        self.exposed = True


class LabeledCounter:
    """A counter per value of one label (a close code, an HTTP status): few values only."""

    __slots__ = ("help", "label", "name", "values")
    kind = "labeled_counter"

    def __init__(self, name: str, help: str, label: str) -> None:
        self.name = name
        self.help = help
        self.label = label
        self.values: dict[str, int] = {}

    def inc(self, label_value: str, amount: int = 1) -> None:
        """Add ``amount`` to the counter of ``label_value``."""
        self.values[label_value] = self.values.get(label_value, 0) + amount


class Histogram:
    """Observations counted into fixed buckets (upper bounds, in seconds), plus their sum."""

    __slots__ = ("buckets", "count", "counts", "help", "name", "sum")
    kind = "histogram"

    def __init__(self, name: str, help: str, buckets: tuple[float, ...]) -> None:
        self.name = name
        self.help = help
        self.buckets = buckets
        #: Per bucket (not cumulative), plus one for observations above the last bound.
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """Count one observation of ``value``."""
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1


Metric = Counter | Gauge | LabeledCounter | Histogram

CONNECTIONS_OPEN = Gauge("collab_connections_open", "Editor connections (sessions) open now.")
CONNECTIONS_OPENED = Counter(
    "collab_connections_opened_total", "Editor connections that joined a document."
)
CONNECTIONS_CLOSED = LabeledCounter(
    "collab_connections_closed_total",
    "Editor connections ended, by WebSocket close code (1006: dropped without a close).",
    "code",
)
HANDSHAKES_REFUSED = LabeledCounter(
    "collab_handshakes_refused_total",
    "WebSocket upgrades (and HTTP fallback sessions) refused before opening, by HTTP status.",
    "status",
)
DOCUMENTS_LOADED = Gauge("collab_documents_loaded", "Documents held in memory now.")
UPDATES_RECEIVED = Counter(
    "collab_updates_received_total",
    "Document updates (sync update and step 2 messages) received from editors.",
)
DELIVERIES_SENT = Counter(
    "collab_deliveries_sent_total",
    "Document updates forwarded to editors (one per recipient).",
)
BYTES_IN = Counter(
    "collab_received_bytes_total", "Bytes of messages received from editors (payloads)."
)
BYTES_OUT = Counter("collab_sent_bytes_total", "Bytes of messages sent to editors (payloads).")
UPDATES_PENDING = Gauge(
    "collab_updates_pending", "Updates accepted but not yet durable (queued for the store)."
)
UPDATES_COMMITTED = Counter(
    "collab_updates_committed_total", "Updates made durable by store commits."
)
STORE_COMMIT_SECONDS = Histogram(
    "collab_store_commit_duration_seconds",
    "Time of one group commit to the store (successful or not).",
    (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
STORE_COMMITS_FAILED = Counter(
    "collab_store_commits_failed_total", "Group commits that failed (and are retried)."
)
REDIS_PUBLISHED = Counter(
    "collab_redis_published_total", "Messages published to Redis (updates and presence)."
)
REDIS_RESYNCS = Counter(
    "collab_redis_resyncs_total", "Document resyncs through Redis (state vector exchanges)."
)
REDIS_UP = Gauge(
    "collab_redis_up",
    "1 while the Redis connection is up, 0 while it is down (absent without Redis).",
    merge="min",
    optional=True,
)

#: Every metric, in exposition order.
ALL: tuple[Metric, ...] = (
    CONNECTIONS_OPEN,
    CONNECTIONS_OPENED,
    CONNECTIONS_CLOSED,
    HANDSHAKES_REFUSED,
    DOCUMENTS_LOADED,
    UPDATES_RECEIVED,
    DELIVERIES_SENT,
    BYTES_IN,
    BYTES_OUT,
    UPDATES_PENDING,
    UPDATES_COMMITTED,
    STORE_COMMIT_SECONDS,
    STORE_COMMITS_FAILED,
    REDIS_PUBLISHED,
    REDIS_RESYNCS,
    REDIS_UP,
)


def snapshot(metrics: tuple[Metric, ...] = ALL) -> dict[str, Any]:
    """The current values, as JSON-able data keyed by metric name.

    Counters and gauges are numbers (an optional gauge not yet set is absent),
    labelled counters ``{label value: count}``, histograms
    ``{"counts": [...], "sum": s, "count": n}``.
    """
    out: dict[str, Any] = {}
    for metric in metrics:
        if isinstance(metric, Counter):
            out[metric.name] = metric.value
        elif isinstance(metric, Gauge):
            if metric.exposed:
                out[metric.name] = metric.value
        elif isinstance(metric, LabeledCounter):
            out[metric.name] = dict(metric.values)
        else:
            out[metric.name] = {
                "counts": list(metric.counts),
                "sum": metric.sum,
                "count": metric.count,
            }
    return out


def merge(
    live: list[dict[str, Any]],
    dead: list[dict[str, Any]] = [],  # noqa: B006 (never mutated)
    metrics: tuple[Metric, ...] = ALL,
) -> dict[str, Any]:
    """Combine the snapshots of several processes into one, shaped like :func:`snapshot`.

    ``live`` are the snapshots of running processes, ``dead`` those of exited ones:
    counters and histograms add up over both (what a worker counted stays counted);
    gauges combine over ``live`` only (``"sum"`` or ``"min"``, as the gauge says).
    Values missing from a snapshot count as nothing.
    """
    out: dict[str, Any] = {}
    everyone = live + dead
    for metric in metrics:
        name = metric.name
        if isinstance(metric, Counter):
            out[name] = sum(int(s.get(name, 0)) for s in everyone)
        elif isinstance(metric, Gauge):
            values = [int(s[name]) for s in live if name in s]
            if values:
                out[name] = sum(values) if metric.merge == "sum" else min(values)
        elif isinstance(metric, LabeledCounter):
            labelled: dict[str, int] = {}
            for s in everyone:
                for key, value in dict(s.get(name, {})).items():
                    labelled[key] = labelled.get(key, 0) + int(value)
            out[name] = labelled
        else:
            counts = [0] * (len(metric.buckets) + 1)
            total, count = 0.0, 0
            for s in everyone:
                data = s.get(name)
                if not data or len(data["counts"]) != len(counts):
                    continue
                counts = [a + int(b) for a, b in zip(counts, data["counts"], strict=True)]
                total += float(data["sum"])
                count += int(data["count"])
            out[name] = {"counts": counts, "sum": total, "count": count}
    return out
