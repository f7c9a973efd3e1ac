"""Time and peak memory of the event models' training, local engine against Spark (local mode),
as the log grows.

    python -m bench.training_engines --events 1000000 5000000 20000000 [--engines local spark]

For each size, synthetic clicks (bench.seed_clicks: Zipf-popular items, sessions of 2-6 clicks
in one sub-category, events / 50 users over 60 days, --products products) are written to
Parquet, then each engine fits item-CF, EASE, sessions and co-click rules (ml.train's
EVENT_MODELS: what differs between the engines; content, embeddings and profiles do not read
pairs of events) in a child process. Peak memory is the child's process tree (Python and, for
Spark, its JVM) sampled every 0.2 s. Prints one JSON line per run and a Markdown table.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from bench.seed_clicks import synthetic_clicks
from config.settings import Settings
from ml.export_events import write_events

SUB_CATEGORIES = 300


def product_ids(n: int) -> np.ndarray:
    return np.array([f"P{i:08d}" for i in range(n)], dtype="U10")


def write_log(path: Path, events: int, products: int) -> None:
    rng = np.random.default_rng(3)
    sub_categories = rng.integers(0, SUB_CATEGORIES, products).astype(str)
    users, items, epochs = synthetic_clicks(
        product_ids(products), sub_categories, events, max(events // 50, 1), 60
    )
    write_events(
        pd.DataFrame(
            {
                "user_id": np.char.add("u", users.astype(str)),
                "event_type": "product_click",
                "product_id": items,
                "query": "",
                "epoch": epochs,
            }
        ),
        path,
    )


def _tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += int(status.split("VmRSS:")[1].split()[0]) * 1024
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, IndexError, ProcessLookupError):
            continue
    return total


def measure(engine: str, parquet: Path, products: int, now: float) -> dict:
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.training_engines",
            "--run",
            engine,
            str(parquet),
            str(products),
            str(now),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    peak = 0

    def sample() -> None:
        nonlocal peak
        while child.poll() is None:
            peak = max(peak, _tree_rss(child.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = child.communicate()
    sampler.join()
    if child.returncode != 0:
        raise SystemExit(f"{engine} on {parquet} failed ({child.returncode})")
    return json.loads(output.strip().splitlines()[-1]) | {"peak_rss_mb": round(peak / 2**20)}


def run(engine: str, parquet: Path, products: int, now: datetime) -> None:
    """In the child: fit the event models once, on the training window ending at `now` (the
    same for both engines), and print the timings as JSON."""
    from ml.train import EVENT_MODELS, local_event_models

    settings = Settings()
    ids = product_ids(products)
    started = time.perf_counter()
    if engine == "local":
        clicks = pd.read_parquet(parquet)
        load = time.perf_counter() - started
        _, steps, counts = local_event_models(ids, clicks, settings)(now, EVENT_MODELS)
    else:
        from ml.spark_training import SparkEventModels, spark_session

        spark = spark_session(settings.spark_driver_memory)
        load = time.perf_counter() - started
        _, steps, counts = SparkEventModels(spark, spark.read.parquet(str(parquet)), ids, settings)(
            now, EVENT_MODELS
        )
        spark.stop()
    total = time.perf_counter() - started
    print(
        json.dumps(
            {
                "engine": engine,
                "seconds": round(total, 1),
                "start_or_load_seconds": round(load, 1),
                "steps": {k: round(v, 1) for k, v in steps.items()},
                "sessions": counts.get("sessions"),
                "rules": counts.get("co_click_rules"),
            }
        )
    )


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--run":
        now = datetime.fromtimestamp(float(sys.argv[5]), UTC)
        run(sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]), now)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument(
        "--engines", nargs="+", choices=("local", "spark"), default=["local", "spark"]
    )
    parser.add_argument("--products", type=int, default=100_000)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for events in args.events:
            parquet = Path(folder) / f"events-{events}.parquet"
            write_log(parquet, events, args.products)
            now = datetime.now(UTC).timestamp()
            for engine in args.engines:
                result = measure(engine, parquet, args.products, now) | {"events": events}
                print(json.dumps(result), flush=True)
                rows.append(result)
            parquet.unlink()
    print(f"\n{os.cpu_count()} cores, {args.products:,} products, users = events / 50\n")
    print(
        "| events | engine | seconds | of which start/load | peak RSS MB | steps (s) "
        "| sessions | co-click rules |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        steps = ", ".join(f"{k} {v}" for k, v in r["steps"].items())
        print(
            f"| {r['events']:,} | {r['engine']} | {r['seconds']} | {r['start_or_load_seconds']} "
            f"| {r['peak_rss_mb']:,} | {steps} | {r['sessions']:,} | {r['rules']:,} |"
        )


if __name__ == "__main__":
    main()
