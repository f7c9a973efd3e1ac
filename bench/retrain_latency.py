"""Latency of the home feed while the daily retraining runs, against idle.

    python -m bench.retrain_latency [--dir data/bench] [--workers 2] [--connections 8]

Starts uvicorn on the prepared benchmark data (bench/prepare.py), measures /recommendations/home
with wrk for 20 s, then starts a retrain through POST /admin/jobs/retrain (a child process at
RETRAIN_NICE) and measures home in 20 s rounds until the job has finished. Prints p50/p95/p99
idle and during the retrain, and the job's duration and outcome from /admin/status.
"""

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import httpx

from bench.load import _sample_data, _wrk
from bench.prepare import bench_environment
from bench.server import server_environment, start_server
from database.server import database_url

KEY = "bench-admin-key"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("data/bench"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    env = bench_environment(args.dir)
    with database_url(env.get("DATABASE_URL"), Path(env["PGDATA_DIR"])) as db_url:
        data = Path(tempfile.mkdtemp()) / "bench-data.txt"
        data.write_text(asyncio.run(_sample_data(db_url)))
        server_env = server_environment(env, db_url, ADMIN_API_KEY=KEY)
        url, server = start_server(server_env, args.workers)
        try:
            _wrk(url, data, "home", 5, args.connections, 1)  # warm-up
            idle = _wrk(url, data, "home", 20, args.connections, 1)
            headers = {"X-API-Key": KEY}
            started = time.perf_counter()
            httpx.post(f"{url}/admin/jobs/retrain", headers=headers).raise_for_status()
            during = []
            while True:
                during.append(_wrk(url, data, "home", 20, args.connections, 1))
                status = httpx.get(f"{url}/admin/status", headers=headers, timeout=30).json()
                run = status["jobs"]["retrain"]["last_run"]
                if run and run["outcome"] != "running":
                    break
            job_seconds = time.perf_counter() - started
        finally:
            server.terminate()
            server.wait(timeout=60)
    worst = max(during, key=lambda r: r["p95_ms"])
    report = {"idle": idle, "during_retrain": during, "retrain": run, "wall_seconds": job_seconds}
    print(json.dumps(report, indent=2, default=str))
    rounds = ", ".join(f"{r['p95_ms']:.1f}" for r in during)
    print(
        f"home p95 idle {idle['p95_ms']:.1f} ms ({idle['rps']:.0f} req/s); during the retrain "
        f"{rounds} ms (worst round {worst['p95_ms']:.1f} ms at {worst['rps']:.0f} req/s); "
        f"retrain {run['outcome']} in {run['seconds']:.0f} s"
    )


if __name__ == "__main__":
    main()
