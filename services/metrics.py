"""Prometheus metrics of the service (prometheus-client).

With several uvicorn workers set PROMETHEUS_MULTIPROC_DIR to an empty folder shared by them
(the Docker image does): every worker writes its samples there and /metrics adds them up.
"""

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess

# Buckets around the latency targets (home p95 <= 25 ms, similar <= 5 ms, search <= 30 ms).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)

REQUEST_SECONDS = Histogram(
    "http_request_duration_seconds",
    "Time to answer a request, per route template.",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
REQUESTS = Counter(
    "http_requests_total", "Requests answered, per route and status.", ["method", "route", "status"]
)
EVENTS_INGESTED = Counter(
    "recsys_events_ingested_total", "Interaction events stored.", ["event_type"]
)
EVENT_GROUP_SIZE = Histogram(
    "recsys_event_group_size",
    "Events stored per statement by a worker's group commit.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
HISTORY_READ_GROUP_SIZE = Histogram(
    "recsys_history_read_group_size",
    "Users' histories read per statement by a worker's grouped reads.",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
CONNECTIONS_CLOSED_TO_BALANCE = Counter(
    "recsys_connections_closed_to_balance_total",
    "Keep-alive connections a worker closed (Connection: close) because it served 2 or more"
    " connections above its sibling workers' mean (routers/worker_balance.py).",
)
HOME_RANKINGS = Counter(
    "recsys_home_rankings_total",
    "Learned home rankings by where they came from: prepared (by training, for these very"
    " events), shared (computed by a worker for the same history and stored) or computed for the"
    " request.",
    ["source"],
)
HISTORY_READS = Counter(
    "recsys_history_reads_total",
    "Home requests of users with a prepared ranking, by whether the user's table was read"
    " (read) or its history stamp showed no change since training (skipped).",
    ["result"],
)
QUERY_EMBEDDINGS = Counter(
    "recsys_query_embeddings_total",
    "Search query embeddings by where they came from: trained (the log's frequent queries),"
    " recent (this worker's LRU) or encoded now.",
    ["source"],
)
SEARCH_RETRIEVALS = Counter(
    "recsys_search_retrievals_total",
    "Search retrievals (lexical and semantic, fused) by where they came from: prepared (by"
    " training, for the log's frequent queries), recent (this worker's LRU) or searched now.",
    ["source"],
)
QUERY_ENCODE_SECONDS = Histogram(
    "recsys_query_encode_seconds",
    "Time to embed one uncached search query (ONNX encoder, off the event loop).",
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25),
)
MODEL_INFO = Gauge(
    "recsys_model_info",
    "1 for the artifact version a worker serves (label version).",
    ["version"],
    multiprocess_mode="liveall",
)
MODEL_CREATED = Gauge(
    "recsys_model_created_timestamp_seconds",
    "When the served version was trained (unix time); its age is time() - this.",
    multiprocess_mode="livemin",
)
MODEL_AGE = Gauge(
    "recsys_model_age_seconds",
    "Age of the served version when /metrics was read.",
    multiprocess_mode="livemax",
)
MODEL_LOAD_FAILURES = Counter(
    "recsys_model_load_failures_total", "Published versions a worker could not load."
)
JOB_SECONDS = Histogram(
    "recsys_job_duration_seconds",
    "Duration of job runs (trending, retrain, retention).",
    ["job"],
    buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 1800, 3600, 7200),
)
JOB_RUNS = Counter(
    "recsys_job_runs_total", "Job runs by outcome (succeeded, failed).", ["job", "outcome"]
)
JOB_LAST_SUCCESS = Gauge(
    "recsys_job_last_success_timestamp_seconds",
    "When each job last succeeded (unix time).",
    ["job"],
    multiprocess_mode="max",
)


def _registry() -> CollectorRegistry:
    """Every worker's samples in multiprocess mode, else this process's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def exposition() -> tuple[bytes, str]:
    """The metrics in Prometheus text format, from every worker when in multiprocess mode."""
    return generate_latest(_registry()), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    """Drop a stopped worker's live gauges (multiprocess mode only)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        prometheus_multiprocess.mark_process_dead(pid)


def quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """The q-quantile of a histogram from its cumulative (upper bound, count) buckets, linear
    inside the bucket it falls in (as PromQL's histogram_quantile); None without samples."""
    total = buckets[-1][1] if buckets else 0
    if total == 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound  # beyond the last finite bucket: its bound is all we know
            inside = count - lower_count
            return lower_bound + (bound - lower_bound) * ((rank - lower_count) / inside)
        lower_bound, lower_count = bound, count
    return lower_bound


def summary() -> dict:
    """What the dashboard shows, from the same samples as /metrics (all workers): per route the
    request count and latency p50/p95/p99 in ms since start, events stored by type, and where
    search query embeddings and learned home rankings came from."""
    buckets: dict[tuple[str, str], list[tuple[float, float]]] = {}
    events: dict[str, float] = {}
    embeddings: dict[str, float] = {}
    home_rankings: dict[str, float] = {}
    for family in _registry().collect():
        for sample in family.samples:
            if sample.name == "http_request_duration_seconds_bucket":
                key = (sample.labels["method"], sample.labels["route"])
                buckets.setdefault(key, []).append((float(sample.labels["le"]), sample.value))
            elif sample.name == "recsys_events_ingested_total":
                events[sample.labels["event_type"]] = sample.value
            elif sample.name == "recsys_query_embeddings_total":
                embeddings[sample.labels["source"]] = sample.value
            elif sample.name == "recsys_home_rankings_total":
                home_rankings[sample.labels["source"]] = sample.value
    routes = []
    for (method, route), rows in sorted(buckets.items(), key=lambda item: item[0][::-1]):
        rows.sort()
        percentiles = {f"p{q}_ms": quantile(rows, q / 100) for q in (50, 95, 99)}
        routes.append(
            {
                "method": method,
                "route": route,
                "requests": int(rows[-1][1]),
                **{k: None if v is None else round(v * 1000, 2) for k, v in percentiles.items()},
            }
        )
    return {
        "routes": routes,
        "events_ingested": {k: int(v) for k, v in events.items()},
        "query_embeddings": {k: int(v) for k, v in embeddings.items()},
        "home_rankings": {k: int(v) for k, v in home_rankings.items()},
    }
