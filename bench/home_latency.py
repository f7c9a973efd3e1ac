"""The home pipeline at scale, without HTTP: training time and peak memory of every event source
and the learned ranker, then the latency of one home request at a time (the user's events read
from their table, candidates, features, ranker, mixer).

    PGDATA_DIR=/tmp/bench/pgdata python -m bench.home_latency [--users 1000]

Reads the benchmark database (bench/prepare.py: 551,783 products, 5M events). Product embeddings
are not trained here (an hour at this size, and the home feed does not use them), so this runs
in minutes; bench/load.py measures the whole service over HTTP.
"""

import argparse
import asyncio
import resource
import time
from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np

from config.settings import get_settings
from database.interactions import recent_user_events
from database.server import database_url
from database.training import fetch_catalog, fetch_events
from ml.train import train_arrays, train_ranker_file
from ml.train_ranker import trending_at
from services.catalog import Catalog
from services.feeds import Filters, home_feed
from services.models import bundle_from_arrays
from services.ranking import RANKER_FILE, Ranker
from services.synonyms import Synonyms

SOURCES = ("content", "cf", "coclick", "sessions", "ease", "profiles")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _percentiles(values: list[float]) -> str:
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return f"p50 {p50:.1f} ms, p95 {p95:.1f} ms, p99 {p99:.1f} ms"


async def run(users: int, folder) -> None:
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
            started = time.perf_counter()
            arrays, seconds, counts = train_arrays(
                frame, clicks, settings, now, models=SOURCES, events=events
            )
            steps = ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items())
            print(
                f"sources: {time.perf_counter() - started:.1f} s ({steps}), {counts}, "
                f"peak RSS {_peak_rss_mb():,.0f} MB"
            )
            started = time.perf_counter()
            ranking = train_ranker_file(frame, events, settings, now, arrays, folder / RANKER_FILE)
            print(
                f"ranker: {time.perf_counter() - started:.1f} s, {ranking.users} users, "
                f"{ranking.rows:,} rows, candidate recall {ranking.candidate_recall:.3f}, "
                f"peak RSS {_peak_rss_mb():,.0f} MB"
            )
            catalog = Catalog.from_frame(frame)
            bundle = bundle_from_arrays(
                arrays,
                len(catalog),
                catalog.position_of,
                version="bench",
                folder=folder,
                created_at=now,
                synonyms=Synonyms.load(settings.synonyms_path),
                ranker=Ranker(folder / RANKER_FILE) if ranking.booster else None,
            )
            trending = trending_at(catalog, clicks, now, settings.trending_decay_rate)
            active = clicks["user_id"].drop_duplicates()
            sample = active.sample(min(users, len(active)), random_state=1).tolist()
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


def main() -> None:
    import tempfile
    from pathlib import Path

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=1000, help="known users timed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="home-latency-") as work:
        asyncio.run(run(args.users, Path(work)))


if __name__ == "__main__":
    main()
