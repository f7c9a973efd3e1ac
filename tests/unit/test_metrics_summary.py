"""Latency percentiles from Prometheus histogram buckets, as the dashboard shows them."""

import pytest

from services.metrics import quantile

INF = float("inf")


def test_quantile_interpolates_inside_the_bucket_it_falls_in():
    # 100 requests: 50 under 1 ms, 40 more under 5 ms, 10 more under 25 ms.
    buckets = [(0.001, 50), (0.005, 90), (0.025, 100), (INF, 100)]
    assert quantile(buckets, 0.5) == pytest.approx(0.001)
    assert quantile(buckets, 0.7) == pytest.approx(0.001 + 0.004 * 20 / 40)
    assert quantile(buckets, 0.95) == pytest.approx(0.005 + 0.020 * 5 / 10)


def test_quantile_without_samples_or_beyond_the_last_bucket():
    assert quantile([(0.001, 0), (INF, 0)], 0.5) is None
    assert quantile([], 0.5) is None
    # Everything slower than the last finite bound: that bound is all the histogram knows.
    assert quantile([(0.001, 0), (10.0, 1), (INF, 5)], 0.99) == 10.0
