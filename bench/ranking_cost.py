"""The CPU a computed home ranking costs, without HTTP, and a digest of what it ranked:

    python -m bench.ranking_cost [--dir data/bench] [--users 400] [--repeat 3]

A known user whose events changed since the last training is ranked at request time (sources,
features, LightGBM, exploration picks: services/feeds.learned_ranking), every candidate given
its reasons and the ranking put in the form shared with the other workers; every other known
user reads the ranking training prepared. This ranks the first `--users` users with history (by
id) of the served version, in one process, each `--repeat` times, and prints the time per user
and a digest of every ranking (positions, scores, reasons and the shared form). Run it from two
checkouts on the same data: equal digests mean a change to the ranking path left every ranking
exactly as it was; equal digests without the scores, that every ranking kept its products, their
order and their reasons (scores may differ in their last bits: another order of summation).
"""

import argparse
import asyncio
import gc
import hashlib
import json
import os
import time
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import numpy as np

from bench.prepare import bench_environment
from config.settings import get_settings
from database.interactions import recent_user_events
from database.server import database_url
from main import load_catalog  # the serving catalog, loaded as a worker loads it
from services.artifacts import current_version_folder
from services.catalog import Catalog
from services.feeds import Filters, category_history, clicked_positions, learned_ranking
from services.home_rankings import PAGE, shared_ranking
from services.models import load_bundle


async def _catalog_and_histories(url: str, users: int, since: datetime):
    conn = await asyncpg.connect(url)
    try:
        catalog: Catalog = await load_catalog(conn)
        user_ids = [
            row[0]
            for row in await conn.fetch(
                "SELECT user_id FROM user_interaction_tables ORDER BY user_id LIMIT $1", users
            )
        ]
        histories = [
            (user_id, events)
            for user_id in user_ids
            if (events := await recent_user_events(conn=conn, user_id=user_id, since=since))
        ]
    finally:
        await conn.close()
    return catalog, histories


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("data/bench"))
    parser.add_argument("--users", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    env = bench_environment(args.dir)
    os.environ.update(env)
    folder = current_version_folder(Path(env["ARTIFACTS_DIR"]))
    manifest = json.loads((folder / "manifest.json").read_text())
    # Rankings decay with the events' age: ranked as at the version's training, the same data
    # gives the same digest whenever it runs.
    now = datetime.fromisoformat(manifest["created_at"])
    since = now - timedelta(days=get_settings().history_days)
    with database_url(env.get("DATABASE_URL"), Path(env["PGDATA_DIR"])) as url:
        catalog, histories = asyncio.run(_catalog_and_histories(url, args.users, since))
    bundle = load_bundle(folder, len(catalog), catalog.position_of)
    if bundle.ranker is None:
        raise SystemExit(f"{folder}: no learned ranker")

    def rank_all(keep: bool) -> list:
        """Each user's ranking as a request computes it: ranked, its reasons completed and put
        in the form shared with the other workers (services/home_rankings.shared_ranking); kept
        for the digest, else dropped at once as a request drops it."""
        rankings = []
        for user_id, events in histories:
            seen = set(clicked_positions(catalog, events))
            ranking = learned_ranking(
                catalog=catalog,
                bundle=bundle,
                trending=None,
                events=events,
                history_categories=category_history(catalog, bundle, user_id, seen),
                now=now,
                exclude_seen=True,
                filters=Filters(),
                n=PAGE,
            )
            done = ranking.completed()
            shared = shared_ranking(done, sorted(seen), catalog.ids)
            if keep:
                rankings.append((done, shared))
        return rankings

    rankings = rank_all(keep=True)  # also warms caches and lazily built tables
    # As a worker after start-up (main.py): what was loaded is out of the collector's sight, and
    # no request keeps its ranking (kept ones would make every collection walk them).
    gc.collect()
    gc.freeze()
    times = []
    for _ in range(args.repeat):
        started = time.process_time()
        rank_all(keep=False)
        times.append((time.process_time() - started) * 1000 / len(histories))
    digest, order = hashlib.sha256(), hashlib.sha256()
    for done, shared in rankings:
        digest.update(shared)
        for candidate in done.ranked + done.explore:
            reasons = [(r.signal, r.anchor, r.text) for r in candidate.reasons]
            digest.update(repr((candidate.position, candidate.score, reasons)).encode())
            order.update(repr((candidate.position, reasons)).encode())
    print(
        f"{len(histories)} users of version {bundle.version}: CPU per ranking "
        f"{' / '.join(f'{t:.2f}' for t in times)} ms (median {np.median(times):.2f}); "
        f"digest {digest.hexdigest()[:16]}, without the scores {order.hexdigest()[:16]}"
    )


if __name__ == "__main__":
    main()
