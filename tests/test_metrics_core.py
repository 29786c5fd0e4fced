"""collab.core.metrics: counting, snapshots, and how workers' snapshots add up."""

from __future__ import annotations

from collab.core.metrics import Counter, Gauge, Histogram, LabeledCounter, Metric, merge, snapshot


def _family() -> tuple[Counter, Gauge, Gauge, LabeledCounter, Histogram]:
    return (
        Counter("t_things_total", "things"),
        Gauge("t_open", "open now"),
        Gauge("t_up", "up?", merge="min", optional=True),
        LabeledCounter("t_closed_total", "closed", "code"),
        Histogram("t_seconds", "durations", (0.01, 0.1, 1.0)),
    )


def test_histogram_counts_each_observation_in_its_bucket() -> None:
    hist = Histogram("t_seconds", "durations", (0.01, 0.1, 1.0))
    for value in (0.005, 0.01, 0.05, 0.5, 3.0, 4.0):
        hist.observe(value)
    # Upper bounds are inclusive (Prometheus' "le"); the last slot is above every bound.
    assert hist.counts == [2, 1, 1, 2]
    assert hist.count == 6
    assert abs(hist.sum - 7.565) < 1e-9


def test_snapshot_leaves_out_an_optional_gauge_until_it_is_set() -> None:
    things, open_, up, closed, hist = family = _family()
    metrics: tuple[Metric, ...] = family
    things.inc(3)
    open_.inc()
    closed.inc("1000")
    closed.inc("1000")
    closed.inc("4400")
    hist.observe(0.05)
    first = snapshot(metrics)
    assert first == {
        "t_things_total": 3,
        "t_open": 1,
        "t_closed_total": {"1000": 2, "4400": 1},
        "t_seconds": {"counts": [0, 1, 0, 0], "sum": 0.05, "count": 1},
    }
    up.set(0)
    assert snapshot(metrics)["t_up"] == 0


def test_merge_sums_counters_of_every_worker_and_gauges_of_live_ones() -> None:
    metrics: tuple[Metric, ...] = _family()
    worker = {
        "t_things_total": 5,
        "t_open": 2,
        "t_up": 1,
        "t_closed_total": {"1000": 1},
        "t_seconds": {"counts": [1, 0, 0, 0], "sum": 0.001, "count": 1},
    }
    other = {
        "t_things_total": 7,
        "t_open": 3,
        "t_up": 0,
        "t_closed_total": {"1000": 2, "1013": 1},
        "t_seconds": {"counts": [0, 0, 1, 1], "sum": 2.5, "count": 2},
    }
    gone = {
        "t_things_total": 100,
        "t_open": 50,
        "t_up": 1,
        "t_closed_total": {"1001": 4},
        "t_seconds": {"counts": [0, 1, 0, 0], "sum": 0.05, "count": 1},
    }
    merged = merge([worker, other], [gone], metrics)
    assert merged["t_things_total"] == 112
    assert merged["t_open"] == 5  # the dead worker's connections are gone
    assert merged["t_up"] == 0  # up only when every live worker is
    assert merged["t_closed_total"] == {"1000": 3, "1013": 1, "1001": 4}
    assert merged["t_seconds"]["counts"] == [1, 1, 1, 1]
    assert merged["t_seconds"]["count"] == 4
    # Without Redis nobody sets the optional gauge, and the merge does not invent it.
    del worker["t_up"], other["t_up"]
    assert "t_up" not in merge([worker, other], [gone], metrics)
