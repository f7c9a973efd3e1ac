"""Two serving replicas on one database and one artifacts folder, as a shop scales out:

    python -m bench.replicas [--dir data/bench] [--workers 1] [--seconds 20]

Starts two uvicorn servers on two ports (each with --workers), then checks what a second
replica must not break and measures what it adds:

1. jobs run one at a time: the hourly trending job is started on both replicas at the same
   moment (POST /admin/jobs/trending); the job's advisory lock lets one run, the other answers
   409 or runs after it (an admin request always runs; a scheduled run is also skipped when one
   succeeded in the same period), and no two runs in `job_runs` overlap;
2. models swap on both: `current` is pointed at another version on disk (the one before it),
   and each replica's /ready shows it within MODEL_RELOAD_SECONDS;
3. throughput adds up: wrk with the mixed workload against one replica, then against both at
   once (half the connections each), beside /health of one replica.

Needs a prepared data set with at least two trained versions (run `ml.train` twice).
"""

import argparse
import asyncio
import json
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx

from bench.load import _sample_data, _wrk
from bench.prepare import bench_environment
from bench.server import server_environment, start_server
from database.server import database_url
from services.artifacts import current_version_folder, publish

ADMIN_KEY = "bench-replicas"


def _versions(artifacts: Path) -> list[Path]:
    return sorted(
        p.resolve()
        for p in artifacts.iterdir()
        if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")
    )


async def _trending_runs(url: str, since: datetime) -> dict:
    """How many trending runs started since `since`, and how many overlapped another."""
    conn = await asyncpg.connect(url)
    try:
        runs = await conn.fetch(
            "SELECT started_at, finished_at FROM job_runs"
            " WHERE job = 'trending' AND started_at >= $1 ORDER BY started_at",
            since,
        )
    finally:
        await conn.close()
    overlapping = sum(
        later["started_at"] < (earlier["finished_at"] or later["started_at"])
        for earlier, later in zip(runs, runs[1:], strict=False)
    )
    return {"runs": len(runs), "overlapping": overlapping}


def _jobs_run_once(urls: list[str], db_url: str) -> dict:
    since = datetime.now(UTC)
    with ThreadPoolExecutor(len(urls)) as pool:
        answers = list(
            pool.map(
                lambda url: (
                    httpx.post(
                        f"{url}/admin/jobs/trending", headers={"X-API-Key": ADMIN_KEY}, timeout=10
                    ).status_code
                ),
                urls,
            )
        )
    time.sleep(5)  # the run finishes in the background
    return {"answers": answers, **asyncio.run(_trending_runs(db_url, since))}


def _models_swap(urls: list[str], artifacts: Path, timeout: float = 60) -> dict:
    current = current_version_folder(artifacts)
    other = [v for v in _versions(artifacts) if v != current]
    if not other:
        raise SystemExit("needs two trained versions on disk: run ml.train once more")
    target = other[-1]
    started = time.perf_counter()
    publish(artifacts, target)
    seen: dict[str, float] = {}
    try:
        while len(seen) < len(urls) and time.perf_counter() - started < timeout:
            for url in urls:
                if url not in seen:
                    ready = httpx.get(f"{url}/ready", timeout=2).json()
                    if target.name in json.dumps(ready):
                        seen[url] = round(time.perf_counter() - started, 1)
            time.sleep(0.2)
    finally:
        publish(artifacts, current)  # back to the version it had
    return {"version": target.name, "seconds_until_served": list(seen.values())}


def _throughput(urls: list[str], data: Path, seconds: int, connections: int) -> dict:
    one = _wrk(urls[0], data, "mixed", seconds, connections, 2)
    health = _wrk(urls[0], data, "health", 10, connections, 2)
    with ThreadPoolExecutor(len(urls)) as pool:
        both = list(
            pool.map(
                lambda url: _wrk(url, data, "mixed", seconds, connections // len(urls), 1), urls
            )
        )
    return {
        "health_one_replica": health["rps"],
        "mixed_one_replica": {"rps": one["rps"], "p95_ms": one["p95_ms"]},
        "mixed_both": {
            "rps": round(sum(r["rps"] for r in both), 1),
            "p95_ms": max(r["p95_ms"] for r in both),
            "per_replica": [r["rps"] for r in both],
            "non_2xx": sum(r["non_2xx"] for r in both),
        },
    }


def run(env: dict[str, str], workers: int, seconds: int, connections: int) -> dict:
    artifacts = Path(env["ARTIFACTS_DIR"])
    with database_url(env.get("DATABASE_URL"), Path(env["PGDATA_DIR"])) as db_url:
        data = Path(tempfile.mkdtemp()) / "bench-data.txt"
        data.write_text(asyncio.run(_sample_data(db_url)))
        server_env = server_environment(
            env, db_url, ADMIN_API_KEY=ADMIN_KEY, MODEL_RELOAD_SECONDS="2"
        )
        servers: list[subprocess.Popen] = []
        urls = []
        try:
            for _ in range(2):
                url, server = start_server(server_env, workers)
                urls.append(url)
                servers.append(server)
            return {
                "workers_per_replica": workers,
                "jobs": _jobs_run_once(urls, db_url),
                "models": _models_swap(urls, artifacts),
                "throughput": _throughput(urls, data, seconds, connections),
            }
        finally:
            for server in servers:
                server.terminate()
                server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("data/bench"))
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers per replica")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    report = run(bench_environment(args.dir), args.workers, args.seconds, args.connections)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
