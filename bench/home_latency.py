"""The home pipeline at scale, without HTTP: training time and peak memory of every event source
and the learned ranker, then the latency of one home request at a time (the user's events read
from their table, candidates, features, ranker, mixer).

    PGDATA_DIR=/tmp/bench/pgdata python -m bench.home_latency [--users 1000] [--models DIR]

Reads the benchmark database (bench/prepare.py: 551,783 products, 5M events). Product embeddings
are not trained here (an hour at this size, and the home feed does not use them), so this runs
in minutes; bench/load.py measures the whole service over HTTP. With --models DIR the trained
sources and ranker are written there, and a later run with the same DIR loads them (memory-mapped,
as serving does) instead of training again: for timing changes to the request path.
"""

import argparse
import asyncio
import gc
import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import numpy as np

from config.settings import get_settings
from database.interactions import recent_user_events
from database.server import database_url
from database.training import fetch_catalog, fetch_events
from ml.train import train_arrays, train_ranker_file
from ml.train_ranker import trending_at
from services.artifacts import load_version, write_version
from services.catalog import Catalog
from services.feeds import Filters, home_feed
from services.models import bundle_from_arrays
from services.ranking import RANKER_FILE, Ranker, ranker_files
from services.synonyms import Synonyms

SOURCES = ("content", "cf", "coclick", "sessions", "ease", "profiles")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _percentiles(values: list[float]) -> str:
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return f"p50 {p50:.1f} ms, p95 {p95:.1f} ms, p99 {p99:.1f} ms"


def _trained(catalog: Catalog, events, settings, now, folder: Path) -> tuple[dict, bool]:
    """(arrays, has a ranker): loaded from `folder` when a run wrote them there, else trained
    and written there."""
    written = sorted(p for p in folder.glob("*") if (p / "manifest.json").exists())
    if written:
        _, arrays = load_version(written[-1])
        print(f"models loaded from {written[-1]}")
        return arrays, (written[-1] / RANKER_FILE).exists()
    clicks = events[events["event_type"] == "product_click"]
    started = time.perf_counter()
    arrays, seconds, counts = train_arrays(
        catalog.frame, clicks, settings, now, models=SOURCES, events=events
    )
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items())
    print(
        f"sources: {time.perf_counter() - started:.1f} s ({steps}), {counts}, "
        f"peak RSS {_peak_rss_mb():,.0f} MB"
    )
    started = time.perf_counter()
    trained_ranker = folder / RANKER_FILE
    ranking = train_ranker_file(catalog, events, settings, now, arrays, trained_ranker)
    print(
        f"ranker: {time.perf_counter() - started:.1f} s, {ranking.users} users, "
        f"{ranking.rows:,} rows, candidate recall {ranking.candidate_recall:.3f}, "
        f"peak RSS {_peak_rss_mb():,.0f} MB"
    )
    files = ranker_files(trained_ranker) if ranking.booster else {}
    write_version(folder, arrays, inputs={"events": len(events)}, files=files)
    return arrays, ranking.booster is not None


async def run(users: int, folder: Path) -> None:
    settings = get_settings()
    with database_url(settings.database_url, settings.pgdata_dir) as url:
        conn = await asyncpg.connect(url)
        try:
            now = datetime.now(UTC)
            started = time.perf_counter()
            frame = await fetch_catalog(conn=conn)
            events = await fetch_events(
                conn=conn, since=now - timedelta(days=settings.training_window_days)
            )
            print(
                f"load: {len(frame):,} products, {len(events):,} events in "
                f"{time.perf_counter() - started:.1f} s, peak RSS {_peak_rss_mb():,.0f} MB"
            )
            clicks = events[events["event_type"] == "product_click"]
            catalog = Catalog.from_frame(frame)
            arrays, has_ranker = _trained(catalog, events, settings, now, folder)
            bundle = bundle_from_arrays(
                arrays,
                len(catalog),
                catalog.position_of,
                version="bench",
                folder=folder,
                created_at=now,
                synonyms=Synonyms.load(settings.synonyms_path),
                ranker=Ranker(ranker_file(folder)) if has_ranker else None,
            )
            trending = trending_at(catalog, clicks, now, settings.trending_decay_rate)
            active = clicks["user_id"].drop_duplicates()
            sample = active.sample(min(users, len(active)), random_state=1).tolist()
            # As the service does once it has loaded: the catalog's millions of long-lived
            # objects out of every garbage collection (else periodic pauses of ~250 ms here).
            gc.collect()
            gc.freeze()
            for ranker in ("learned", "weighted"):
                total, compute = [], []
                for user in sample:
                    began = time.perf_counter()
                    rows = await recent_user_events(
                        conn=conn, user_id=user, since=now - timedelta(days=settings.history_days)
                    )
                    read = time.perf_counter()
                    home_feed(
                        catalog=catalog,
                        bundle=bundle,
                        trending=trending,
                        events=[dict(r) for r in rows],
                        user_id=user,
                        weights={"clicked": 0.5, "search": 0.4, "diverse": 0.1},
                        boost_weight=settings.trending_boost,
                        n=20,
                        filters=Filters(),
                        exclude_seen=True,
                        now=now,
                        ranker=ranker,
                        max_per_sub_category=settings.home_max_per_sub_category,
                    )
                    done = time.perf_counter()
                    total.append((done - began) * 1000)
                    compute.append((done - read) * 1000)
                print(
                    f"home ({ranker}), {len(sample)} known users one at a time: "
                    f"with the history read {_percentiles(total)}; ranking alone "
                    f"{_percentiles(compute)}"
                )
        finally:
            await conn.close()


def ranker_file(folder: Path) -> Path:
    written = sorted(p for p in folder.glob("*") if (p / "manifest.json").exists())
    return written[-1] / RANKER_FILE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=1000, help="known users timed")
    parser.add_argument("--models", type=Path, help="keep (or reuse) the trained models here")
    args = parser.parse_args()
    if args.models is not None:
        args.models.mkdir(parents=True, exist_ok=True)
        asyncio.run(run(args.users, args.models))
        return
    with tempfile.TemporaryDirectory(prefix="home-latency-") as work:
        asyncio.run(run(args.users, Path(work)))


if __name__ == "__main__":
    main()
