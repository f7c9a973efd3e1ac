"""Load benchmark: the service under a mixed workload driven by wrk (Debian package `wrk`).

    python -m bench.load [--prepare] [--dir data/bench] [--workers 2] [--connections 32]
                         [--runs health,mixed,home,similar,search,post] [--alone-connections 16]
                         [--paced-connections 128] [--think-ms 60] [--reset-events]

With --prepare, builds the large data set first (bench/prepare.py). Then starts uvicorn with
--workers on a free port, warms up, and runs wrk with bench/mixed.lua: first the ceiling of a
trivial endpoint (/health), then the mixed workload (70 % home for known and new users, 15 %
similar products, 10 % search, 5 % POST /interactions), then each endpoint on its own
(--alone-connections; `post` is single-event POST /interactions). Also as runs: `home_known`
(known users only), `home_new` (users without history) and `search_unseen` (a query no training
embedded: the encoder every time), `skewed`: the mixed load with every connection opened while
all workers but the first are stopped (SIGSTOP for 0.5 s), so the first holds all of them at
the start (what BALANCE_WORKERS undoes), `mixed_reads`: the mixed load with similar products
instead of its POSTs (a click makes the user's next home ranking computed at request time: the
difference to `mixed` is what clicks cost), and `paced`: the mixed load from
--paced-connections that each wait a random think time (mean --think-ms) before every request,
as shoppers read a page between clicks. A closed loop keeps every connection's next request
waiting in the server, so its latency is the queue (connections / throughput); the paced run
tells the latency at a rate below the ceiling. After the runs, the service's own counters tell
how the load was served: home rankings prepared by training or computed, query embeddings
trained, recent or encoded, search retrievals prepared, recent or searched.
With --reset-events, the events each run stored (the POSTs) are deleted after it, so every run,
and a second call with another version of the code say, meets the same known users with the
same histories as training left them (benchmark data only: it deletes every event stored since
the call began); without it, a run's POSTs turn later runs' known users into users ranked at
request time.
Reports requests/s, p50/p95/p99, errors and the workers' RSS, as a markdown table and as JSON
(<dir>/load-<workers>w.json); per run also the CPU per request of the workers, the embedded
PostgreSQL and wrk (steadier than requests/s from one run to the next), per route the mean
time inside the service (the rest of a request's latency is its wait before a worker reads it),
and for the mixed and paced runs how the connections split between the workers (`ss`, five
times through the run).
wrk runs on the same machine and takes CPU from the server: read the mixed figure next to the
/health ceiling of the same run.
"""

import argparse
import json
import os
import re
import resource
import signal
import subprocess
import tempfile
import threading
from collections import Counter
from contextlib import contextmanager, nullcontext
from pathlib import Path
from urllib.parse import quote

import asyncpg
import httpx

from bench.prepare import bench_environment, prepare
from bench.server import server_environment, start_server
from bench.startup import _children, _memory_mb, _workers
from database.identifiers import qualified_user_table
from database.server import database_url
from database.training import fetch_history_stamps

LUA = Path(__file__).with_name("mixed.lua")


async def _sample_data(url: str) -> str:
    """Known users, products and real queries from the benchmark database, for the Lua script."""
    conn = await asyncpg.connect(url)
    try:
        users = await conn.fetch(
            "SELECT user_id FROM user_interaction_tables ORDER BY random() LIMIT 5000"
        )
        products = await conn.fetch("SELECT id FROM products ORDER BY random() LIMIT 20000")
        # Searches drawn from the log's search events, so a query comes back as often as
        # shoppers typed it (the log's own distribution: a few frequent, a long tail);
        # `search_unseen` is the other extreme, a query nobody typed before.
        queries = await conn.fetch(
            "SELECT query FROM interaction_events"
            " WHERE event_type = 'search_query' ORDER BY random() LIMIT 3000"
        )
    finally:
        await conn.close()
    if not users:
        raise SystemExit("no users in the benchmark database: run with --prepare")
    lines = ["#users", *(r["user_id"] for r in users), "#products", *(r["id"] for r in products)]
    lines += ["#queries", *(quote(r["query"]) for r in queries)]
    return "\n".join(lines) + "\n"


async def _database_now(url: str):
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval("SELECT now()")
    finally:
        await conn.close()


async def _history_stamps(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        return await fetch_history_stamps(conn=conn)
    finally:
        await conn.close()


async def _delete_events_since(url: str, since, stamps: dict[str, int]) -> int:
    """Delete the events stored since `since` from the log and from their users' tables, and
    put back the users' history stamps (`stamps`, read before): the POSTs of a run would
    otherwise turn the next run's known users into users with events training never saw
    (their home rankings computed, not prepared). The home rankings computed for those events
    go too: stored under stamps the next run's events will have again. Benchmark data only."""
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.execute(
                "UPDATE user_interaction_tables r SET history_stamp = s.stamp"
                " FROM unnest($1::text[], $2::bigint[]) AS s(user_id, stamp)"
                " WHERE r.user_id = s.user_id AND r.history_stamp <> s.stamp",
                list(stamps),
                list(stamps.values()),
            )
            tables = await conn.fetch(  # those that exist (USER_EVENTS_SOURCE=global_log: none)
                "SELECT DISTINCT r.table_name FROM interaction_events e"
                " JOIN user_interaction_tables r USING (user_id) WHERE e.timestamp >= $1"
                " AND to_regclass(format('user_events.%I', r.table_name)) IS NOT NULL",
                since,
            )
            deleted = await conn.execute(
                "DELETE FROM interaction_events WHERE timestamp >= $1", since
            )
            await conn.execute("TRUNCATE computed_home_rankings")
            for (table,) in tables:  # names from the registry, quoted by the one helper
                await conn.execute(
                    f'DELETE FROM {qualified_user_table(table)} WHERE "timestamp" >= $1',  # noqa: S608
                    since,
                )
    finally:
        await conn.close()
    return int(deleted.split()[-1])


def _wrk(
    url: str,
    data: Path,
    mode: str,
    seconds: int,
    connections: int,
    threads: int,
    think_ms: float = 0,
) -> dict:
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        url,
        "--",
        str(data),
        mode,
        str(think_ms),
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    result = json.loads(re.search(r"^RESULT (.*)$", output, re.MULTILINE).group(1))
    result["rps"] = round(result["requests"] / result["seconds"], 1)
    result["mode"] = mode
    return result


SERVED_COUNTERS = (
    "recsys_home_rankings_total",
    "recsys_connections_closed_to_balance_total",
    "recsys_query_embeddings_total",
    "recsys_search_retrievals_total",
)


def _served(url: str) -> dict[str, float]:
    """The counters (summed over the workers) of how requests were served, from /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(SERVED_COUNTERS)
    }


def _worker_memory_mb(server_pid: int) -> list[dict[str, float]]:
    """RSS and RssAnon of the uvicorn workers. RSS counts the pages of the memory-mapped
    artifacts, which all workers share; RssAnon is what each worker holds of its own."""
    return [_memory_mb(pid) for pid in _workers(server_pid)]


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU a process has used (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _postgres_pids(pgdata: Path) -> list[int]:
    """The embedded PostgreSQL's postmaster and its children (backends and helpers); none for a
    server given by DATABASE_URL."""
    try:
        postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
        return [postmaster, *_children(postmaster)]
    except (OSError, ValueError, IndexError):
        return []


class CpuMeter:
    """CPU used during a run by the uvicorn workers, the embedded PostgreSQL and wrk (a child
    of this process): per request, steadier than requests/s when the runs are noisy."""

    def __init__(self, server_pid: int, pgdata: Path | None):
        self.workers = _workers(server_pid)
        self.pgdata = pgdata

    def _now(self) -> dict[str, float]:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        postgres = _postgres_pids(self.pgdata) if self.pgdata else []
        return {
            "workers": sum(map(_cpu_seconds, self.workers)),
            "postgres": sum(map(_cpu_seconds, postgres)) if postgres else float("nan"),
            "wrk": children.ru_utime + children.ru_stime,
        }

    def start(self) -> None:
        self._started = self._now()

    def per_request_ms(self, requests: int) -> dict[str, float]:
        now = self._now()
        return {k: round((now[k] - self._started[k]) * 1000 / max(requests, 1), 3) for k in now}


def connection_split(ss_output: str, workers: list[int]) -> list[int]:
    """Connections held by each worker, most first, from `ss -p` output."""
    held = Counter(int(pid) for pid in re.findall(r"pid=(\d+)", ss_output))
    return sorted((held.get(worker, 0) for worker in workers), reverse=True)


@contextmanager
def _others_paused(workers: list[int], seconds: float = 0.5):
    """Every worker but the first stopped (SIGSTOP) for the first `seconds` of the block: the
    connections wrk opens meanwhile are all accepted by the first, the worst split there is."""
    for pid in workers[1:]:
        os.kill(pid, signal.SIGSTOP)
    resume = threading.Timer(seconds, lambda: [os.kill(p, signal.SIGCONT) for p in workers[1:]])
    resume.start()
    try:
        yield
    finally:
        resume.join()


class ConnectionSampler:
    """How the load's connections split between the workers, read SAMPLES times evenly through
    a run: the workers share one listening socket and the first to accept a burst of new
    connections takes more of them, a closed loop's p95 follows the busier worker, and the
    workers' balance (BALANCE_WORKERS) moves connections during the run."""

    SAMPLES = 5

    def __init__(self, url: str, workers: list[int]):
        self.port = url.rsplit(":", 1)[1]
        self.workers = workers
        self.splits: list[list[int]] = []
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    def _sample(self) -> None:
        command = ["ss", "-Htnp", "state", "established", f"( sport = :{self.port} )"]
        try:
            found = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            return  # no ss (iproute2) here: no split
        self.splits.append(connection_split(found, self.workers))

    def _run(self, interval: float) -> None:
        for _ in range(self.SAMPLES):
            if self._stopped.wait(interval):
                return
            self._sample()

    def start(self, run_seconds: float) -> None:
        self.splits = []
        self._stopped.clear()
        interval = run_seconds / (self.SAMPLES + 1)
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def stop(self) -> list[list[int]]:
        self._stopped.set()
        self._thread.join()
        return self.splits


REQUEST_SECONDS = re.compile(
    r'^http_request_duration_seconds_(sum|count)\{[^}]*route="([^"]+)"[^}]*\} (\S+)$', re.MULTILINE
)


def request_seconds(metrics_text: str) -> dict[tuple[str, str], float]:
    """Per (route, "sum" | "count"): the service's own request durations in a /metrics text,
    summed over methods."""
    found: dict[tuple[str, str], float] = {}
    for kind, route, value in REQUEST_SECONDS.findall(metrics_text):
        found[(route, kind)] = found.get((route, kind), 0.0) + float(value)
    return found


def _request_seconds(url: str) -> dict[tuple[str, str], float]:
    return request_seconds(httpx.get(f"{url}/metrics", timeout=10).text)


def in_app_ms(before: dict, after: dict) -> dict[str, dict[str, float]]:
    """Per route: requests and mean time inside the service during a run (from parsing the
    request to the response; without the time a request waits before a worker reads it)."""
    routes = {route for route, _ in after}
    means = {}
    for route in sorted(routes):
        count = after.get((route, "count"), 0) - before.get((route, "count"), 0)
        total = after.get((route, "sum"), 0) - before.get((route, "sum"), 0)
        if count > 0 and route != "/metrics":
            means[route] = {"requests": count, "mean_ms": round(total * 1000 / count, 2)}
    return means


RUNS = ("health", "mixed", "home", "similar", "search", "post")
MIXED_RUNS = ("mixed", "mixed_reads", "skewed", "paced")  # the runs of the mixed load


def run(
    env: dict[str, str],
    workers: int,
    connections: int,
    threads: int,
    seconds: int,
    runs: tuple[str, ...] = RUNS,
    alone_connections: int = 16,
    reset_events: bool = False,
    paced_connections: int = 128,
    think_ms: float = 60.0,
) -> dict:
    import asyncio

    pgdata = Path(env.get("PGDATA_DIR", "data/pgdata"))
    with database_url(env.get("DATABASE_URL"), pgdata) as db_url:
        data = Path(tempfile.mkdtemp()) / "bench-data.txt"
        data.write_text(asyncio.run(_sample_data(db_url)))
        started = asyncio.run(_database_now(db_url))
        url, server = start_server(server_environment(env, db_url), workers)
        stamps = asyncio.run(_history_stamps(db_url)) if reset_events else {}  # after migrations
        try:
            _wrk(url, data, "mixed", 5, connections, threads)  # warm-up: caches, query embeddings
            if reset_events:
                asyncio.run(_delete_events_since(db_url, started, stamps))
            results = {}
            meter = CpuMeter(server.pid, None if env.get("DATABASE_URL") else pgdata)
            sampler = ConnectionSampler(url, meter.workers)
            for mode in runs:
                run_began = asyncio.run(_database_now(db_url)) if reset_events else None
                durations = _request_seconds(url)
                meter.start()
                if mode in MIXED_RUNS:  # the mixed load in one of its forms, its split sampled
                    # skewed: every connection on the first worker; paced: shoppers who read
                    # between clicks; mixed_reads: no click, so no ranking computed after one.
                    paced = mode == "paced"
                    paused = _others_paused(meter.workers) if mode == "skewed" else nullcontext()
                    sampler.start(seconds)
                    with paused:
                        results[mode] = _wrk(
                            url,
                            data,
                            "mixed_reads" if mode == "mixed_reads" else "mixed",
                            seconds,
                            paced_connections if paced else connections,
                            threads,
                            think_ms if paced else 0,
                        )
                    results[mode]["connections_per_worker"] = sampler.stop()
                elif mode == "health":
                    results[mode] = _wrk(url, data, mode, 10, connections, threads)
                else:  # an endpoint alone
                    results[mode] = _wrk(url, data, mode, 10, alone_connections, threads)
                result = results[mode]
                result["cpu_ms_per_request"] = meter.per_request_ms(result["requests"])
                result["in_app"] = in_app_ms(durations, _request_seconds(url))
                if reset_events:  # every run meets the users as training left them
                    asyncio.run(_delete_events_since(db_url, run_began, stamps))
            memory = _worker_memory_mb(server.pid)
            served = _served(url)
        finally:
            server.terminate()
            server.wait(timeout=60)
            if reset_events:
                deleted = asyncio.run(_delete_events_since(db_url, started, stamps))
                print(f"deleted the {deleted:,} events stored during the runs")
    return {
        "workers": workers,
        "connections": connections,
        "alone_connections": alone_connections,
        "paced_connections": paced_connections,
        "think_ms": think_ms,
        "wrk_threads": threads,
        "cpus": os.cpu_count(),
        "worker_memory_mb": memory,
        "served": served,
        "runs": results,
    }


def markdown(report: dict) -> str:
    lines = [
        f"{report['workers']} uvicorn workers, wrk {report['wrk_threads']} threads "
        f"x {report['connections']} connections, {report['cpus']} CPUs shared by server and wrk; "
        f"worker memory (MB) {report['worker_memory_mb']}",
        "",
        "| run | requests/s | p50 ms | p95 ms | p99 ms | non-2xx | socket errors "
        "| CPU ms per request: workers / PostgreSQL / wrk |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in report["runs"].items():
        cpu = r["cpu_ms_per_request"]
        lines.append(
            f"| {name} | {r['rps']:,.0f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {r['non_2xx']} | {r['socket_errors']} "
            f"| {cpu['workers']:.3f} / {cpu['postgres']:.3f} / {cpu['wrk']:.3f} |"
        )
    for name in MIXED_RUNS:
        if name in report["runs"]:
            routes = report["runs"][name]["in_app"]
            means = ", ".join(f"{route} {v['mean_ms']:.1f}" for route, v in routes.items())
            lines += ["", f"{name}, mean ms inside the service per route: {means}"]
            splits = report["runs"][name].get("connections_per_worker")
            if splits:
                held = ", ".join("/".join(map(str, split)) for split in splits)
                lines.append(
                    f"{name}, connections per worker (busier first) during the run: {held}"
                )
    if "mixed" in report["runs"] and "health" in report["runs"]:
        mixed, health = report["runs"]["mixed"], report["runs"]["health"]
        lines.append("")
        lines.append(f"mixed / health ceiling: {mixed['rps'] / health['rps']:.2f}")
    lines += ["", *(f"{name}: {count:,.0f}" for name, count in report["served"].items())]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prepare", action="store_true", help="build the data set first")
    parser.add_argument("--dir", type=Path, default=Path("data/bench"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--seconds", type=int, default=30, help="length of the mixed run")
    parser.add_argument(
        "--runs",
        default=",".join(RUNS),
        help="comma-separated: health, mixed, endpoints alone (home, similar, search, post)",
    )
    parser.add_argument(
        "--alone-connections", type=int, default=16, help="connections for an endpoint alone"
    )
    parser.add_argument(
        "--paced-connections",
        type=int,
        default=128,
        help="connections of the `paced` run: the mixed load, each connection waiting a think "
        "time between its requests (a shop's shoppers rather than a closed loop)",
    )
    parser.add_argument(
        "--think-ms",
        type=float,
        default=60.0,
        help="mean think time of the `paced` run (exponential); its offered rate is about "
        "connections / (think time + latency)",
    )
    parser.add_argument(
        "--reset-events",
        action="store_true",
        help="delete the events each run stored after it (benchmark data only), so every run "
        "starts from the trained state",
    )
    args = parser.parse_args()
    env = (
        prepare(args.dir, 575_000, 100_000, 5_000_000)
        if args.prepare
        else bench_environment(args.dir)
    )
    report = run(
        env,
        args.workers,
        args.connections,
        args.threads,
        args.seconds,
        tuple(args.runs.split(",")),
        args.alone_connections,
        args.reset_events,
        args.paced_connections,
        args.think_ms,
    )
    out = args.dir / f"load-{args.workers}w.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(markdown(report))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
