"""Prepare the large benchmark data set, each step skipped when already done:

    python -m bench.prepare [--dir data/bench] [--products 575000] [--users 100000]
                            [--events 5000000]

1. raw catalog from the generator (575k raw rows -> ~550k products after cleaning), 2. cleaning,
3. import, 4. 5M events of 100k users from the behaviour simulator, 5. training (embeddings are
reused by text digest when a version of the same catalog exists: the first run encodes 550k
products, about an hour on 2 cores), 6. VACUUM (ANALYZE) (bench/vacuum.py: a freshly filled
database stalls its first load runs). Without DATABASE_URL an embedded PostgreSQL keeps its data
in <dir>/pgdata; artifacts go to <dir>/artifacts.
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path


def bench_environment(folder: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PGDATA_DIR", str(folder / "pgdata"))
    env.setdefault("ARTIFACTS_DIR", str(folder / "artifacts"))
    return env


def _step(name: str, command: list[str], env: dict[str, str], done: Path | None = None) -> None:
    if done is not None and done.exists():
        print(f"[prepare] {name}: done before ({done})")
        return
    started = time.perf_counter()
    print(f"[prepare] {name}: {' '.join(command)}", flush=True)
    subprocess.run([sys.executable, "-m", *command], env=env, check=True)
    print(f"[prepare] {name}: {time.perf_counter() - started:.1f} s", flush=True)
    if done is not None:
        done.touch()


def prepare(folder: Path, products: int, users: int, events: int) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    env = bench_environment(folder)
    raw, processed = folder / "raw.csv", folder / "processed.csv"
    _step("generate", ["ml.generate_catalog", "--rows", str(products), "--out", str(raw)], env, raw)
    _step(
        "clean",
        ["ml.clean_catalog", "--input", str(raw), "--output", str(processed)],
        env,
        processed,
    )
    _step("import", ["database.csv_importer", "--csv", str(processed)], env)
    _step(
        "simulate",
        ["ml.simulate", "--users", str(users), "--events", str(events), "--no-progress"],
        env,
        folder / ".simulated",
    )
    _step("train", ["ml.train", "--no-progress"], env, folder / ".trained")
    _step("vacuum", ["bench.vacuum"], env, folder / ".vacuumed")
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("data/bench"))
    parser.add_argument("--products", type=int, default=575_000, help="raw rows to generate")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=5_000_000)
    args = parser.parse_args()
    prepare(args.dir, args.products, args.users, args.events)


if __name__ == "__main__":
    main()
