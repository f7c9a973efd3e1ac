"""bench.load reads the service's own request durations from /metrics: per route, the requests
and the mean time inside the service between two readings."""

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from bench.load import connection_split, in_app_ms, request_seconds
from services.metrics import LATENCY_BUCKETS


def test_in_app_means_per_route_between_two_readings():
    registry = CollectorRegistry()
    seconds = Histogram(
        "http_request_duration_seconds",
        "",
        ["method", "route"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    seconds.labels("GET", "/recommendations/home").observe(0.010)
    seconds.labels("GET", "/metrics").observe(0.5)
    before = request_seconds(generate_latest(registry).decode())
    seconds.labels("GET", "/recommendations/home").observe(0.002)
    seconds.labels("GET", "/recommendations/home").observe(0.004)
    seconds.labels("POST", "/interactions").observe(0.020)
    seconds.labels("GET", "/interactions").observe(0.010)  # methods of one route add up
    seconds.labels("GET", "/metrics").observe(0.5)
    after = request_seconds(generate_latest(registry).decode())

    assert in_app_ms(before, after) == {
        "/interactions": {"requests": 2.0, "mean_ms": 15.0},
        "/recommendations/home": {"requests": 2.0, "mean_ms": 3.0},
    }


def test_connection_split_counts_each_workers_connections():
    ss_output = (
        'ESTAB 0 0 127.0.0.1:8000 127.0.0.1:51000 users:(("python",pid=11,fd=20))\n'
        'ESTAB 0 0 127.0.0.1:8000 127.0.0.1:51002 users:(("python",pid=12,fd=21))\n'
        'ESTAB 0 0 127.0.0.1:8000 127.0.0.1:51004 users:(("python",pid=12,fd=22))\n'
    )
    assert connection_split(ss_output, [11, 12, 13]) == [2, 1, 0]
