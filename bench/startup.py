"""Start-up (or restart) to ready, and the workers' memory, on a prepared data set:

    python -m bench.startup [--dir data/bench] [--workers 2] [--runs 3]

Starts uvicorn with --workers on a free port, as ops do, and measures the time from the process
start to the first `/ready` 200 and to every worker serving the current model version (their
heartbeats in `/admin/status`). Then it reads each worker's memory from /proc: RSS, and RssAnon,
the part that is not file-backed (the memory-mapped artifacts are file pages shared by all
workers, so RssAnon is what each extra worker really costs). The server is stopped with SIGTERM
between runs, so a run is a restart.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench.prepare import bench_environment
from bench.server import free_port, server_environment
from database.server import database_url

ADMIN_KEY = "bench-startup"


def _memory_mb(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    found = {}
    for field in ("VmRSS", "RssAnon", "RssFile"):
        kb = int(re.search(rf"^{field}:\s+(\d+)", status, re.MULTILINE).group(1))
        found[field] = round(kb / 1024, 1)
    return found


def _children(pid: int) -> list[int]:
    """A process's child processes."""
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _workers(server_pid: int) -> list[int]:
    """The uvicorn worker processes (not multiprocessing's resource tracker)."""
    workers = [
        pid
        for pid in _children(server_pid)
        if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    return workers or [server_pid]


def one_start(env: dict[str, str], workers: int, timeout: float = 600) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "uvicorn", "main:app", "--port", str(port)]
    command += ["--workers", str(workers), "--no-access-log", "--log-level", "warning"]
    started = time.perf_counter()
    server = subprocess.Popen(command, env=env, start_new_session=True)
    first_ready = all_serving = None
    try:
        deadline = started + timeout
        while time.perf_counter() < deadline and all_serving is None:
            if server.poll() is not None:
                raise RuntimeError("server exited during start-up")
            try:
                if first_ready is None and httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    first_ready = time.perf_counter() - started
                if first_ready is not None:
                    status = httpx.get(
                        f"{url}/admin/status", headers={"X-API-Key": ADMIN_KEY}, timeout=2
                    ).json()
                    current = status["artifacts"]["current"]
                    serving = [w for w in status["workers"] if w["model_version"] == current]
                    if current and len(serving) >= workers:
                        all_serving = time.perf_counter() - started
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        memory = [_memory_mb(pid) for pid in _workers(server.pid)]
    finally:
        server.terminate()
        server.wait(timeout=60)
    return {
        "first_ready_s": round(first_ready, 2) if first_ready else None,
        "all_workers_serving_s": round(all_serving, 2) if all_serving else None,
        "workers_memory_mb": memory,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("data/bench"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    env = bench_environment(args.dir)
    with database_url(env.get("DATABASE_URL"), Path(env["PGDATA_DIR"])) as url:
        server_env = server_environment(
            env,
            url,
            ADMIN_API_KEY=ADMIN_KEY,
            MODEL_RELOAD_SECONDS="0.5",  # heartbeats soon after start
        )
        runs = [one_start(server_env, args.workers) for _ in range(args.runs)]
    report = {"workers": args.workers, "cpus": os.cpu_count(), "runs": runs}
    out = args.dir / f"startup-{args.workers}w.json"
    out.write_text(json.dumps(report, indent=2))
    for run in runs:
        print(
            f"first /ready {run['first_ready_s']} s, all {args.workers} workers serving "
            f"{run['all_workers_serving_s']} s, memory per worker (MB) {run['workers_memory_mb']}"
        )
    print(f"written to {out}")


if __name__ == "__main__":
    main()
