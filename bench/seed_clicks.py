"""Append N synthetic clicks to the global event log with COPY, to time training at scale.

    python -m bench.seed_clicks --events 5000000 --users 100000 --days 60

Only the global log (`interaction_events`) is written: training reads nothing else. Items are drawn
with a Zipf-like popularity and sessions of 2-8 clicks stay within one sub-category, so co-click
rules and CF neighbours have structure to find. (The behaviour simulator of issue 6 will replace
this with a realistic one.)
"""

import argparse
import asyncio
import time
from datetime import UTC, datetime

import asyncpg
import numpy as np

from config.settings import get_settings
from database.server import database_url
from database.training import fetch_catalog


def synthetic_clicks(catalog_ids, sub_categories, n_events, n_users, days, seed=5):
    rng = np.random.default_rng(seed)
    codes, groups = np.unique(sub_categories, return_inverse=True)
    members = [np.flatnonzero(groups == g) for g in range(len(codes))]
    n_sessions = n_events // 4
    session_users = rng.integers(0, n_users, n_sessions)
    session_groups = rng.choice(len(codes), n_sessions, p=_zipf(len(codes), rng))
    session_start = datetime.now(UTC).timestamp() - rng.random(n_sessions) * days * 86400
    lengths = rng.integers(2, 7, n_sessions)
    users = np.repeat(session_users, lengths)
    offsets = np.concatenate([np.arange(n) for n in lengths]) * 60.0
    epochs = np.repeat(session_start, lengths) + offsets
    items = np.empty(len(users), dtype=np.int64)
    group_of_click = np.repeat(session_groups, lengths)
    for g in np.unique(group_of_click):
        where = np.flatnonzero(group_of_click == g)
        pool = members[g]
        popularity = _zipf(len(pool), rng)
        items[where] = pool[rng.choice(len(pool), len(where), p=popularity)]
    return users, np.asarray(catalog_ids)[items], epochs


def _zipf(n, rng):
    weights = 1.0 / np.arange(1, n + 1) ** 1.1
    rng.shuffle(weights)
    return weights / weights.sum()


async def _main(n_events: int, n_users: int, days: int) -> None:
    settings = get_settings()
    with database_url(settings.database_url, settings.pgdata_dir) as url:
        conn = await asyncpg.connect(url)
        try:
            catalog = await fetch_catalog(conn=conn)
            users, products, epochs = synthetic_clicks(
                catalog["id"].to_numpy(),
                catalog["sub_category"].to_numpy(),
                n_events,
                n_users,
                days,
            )
            started = time.perf_counter()
            records = (
                (f"sim_{u}", "product_click", p, None, datetime.fromtimestamp(e, UTC), f"sim{i}")
                for i, (u, p, e) in enumerate(
                    zip(users.tolist(), products.tolist(), epochs.tolist(), strict=True)
                )
            )
            await conn.copy_records_to_table(
                "interaction_events",
                records=records,
                columns=["user_id", "event_type", "product_id", "query", "timestamp", "event_id"],
            )
            print(f"copied {len(users):,} clicks in {time.perf_counter() - started:.1f} s")
        finally:
            await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=60)
    args = parser.parse_args()
    asyncio.run(_main(args.events, args.users, args.days))


if __name__ == "__main__":
    main()
