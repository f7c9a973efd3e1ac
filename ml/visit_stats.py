"""How visits look: the event log's (simulated or real) beside a session benchmark's.

    python -m ml.visit_stats [--sessions ../shared/data/diginetica]

Per visit of two or more clicks (a visit ends after 30 minutes without an event): clicks per
visit, the share of consecutive clicks that stay in the sub-category (the log only: the
benchmark has no categories) and the share of clicks on a product already clicked in the visit.
"""

import argparse
import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import numpy as np
import pandas as pd

from config.settings import get_settings
from database.server import database_url
from database.training import fetch_catalog, fetch_events
from ml.evaluate_sessions import load_sessions
from ml.train_sessions import SESSION_GAP_SECONDS


def visit_stats(visits: list[np.ndarray], categories: list[np.ndarray] | None = None) -> dict:
    """Statistics of visits given as arrays of item codes (and of their sub-category codes)."""
    kept = [i for i, v in enumerate(visits) if len(v) >= 2]
    lengths = np.array([len(visits[i]) for i in kept])
    repeats = sum(len(visits[i]) - len(np.unique(visits[i])) for i in kept)
    stats = {
        "visits": len(kept),
        "clicks_per_visit_mean": round(float(lengths.mean()), 2),
        "clicks_per_visit_median": float(np.median(lengths)),
        "re_click_share": round(float(repeats / lengths.sum()), 3),
    }
    if categories is not None:
        stays = np.concatenate([categories[i][:-1] == categories[i][1:] for i in kept])
        stats["same_sub_category_share"] = round(float(stays.mean()), 3)
    return stats


def log_visits(events: pd.DataFrame, catalog: pd.DataFrame) -> tuple[list, list]:
    """The log's clicks cut into visits: item codes and sub-category codes per visit."""
    clicks = events[events["event_type"] == "product_click"].sort_values(["user_id", "epoch"])
    sub = catalog.set_index("id")["sub_category"]
    item = pd.factorize(clicks["product_id"])[0]
    category = pd.factorize(clicks["product_id"].map(sub).fillna(""))[0]
    new_visit = (clicks["user_id"] != clicks["user_id"].shift()) | (
        clicks["epoch"].diff() > SESSION_GAP_SECONDS
    )
    starts = np.flatnonzero(new_visit.to_numpy())
    return np.split(item, starts[1:]), np.split(category, starts[1:])


async def _log_stats() -> dict:
    settings = get_settings()
    with database_url(settings.database_url, settings.pgdata_dir) as url:
        conn = await asyncpg.connect(url)
        try:
            catalog = await fetch_catalog(conn=conn)
            since = datetime.now(UTC) - timedelta(days=settings.training_window_days)
            events = await fetch_events(conn=conn, since=since)
        finally:
            await conn.close()
    return visit_stats(*log_visits(events, catalog))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=Path, help="a session benchmark folder as well")
    args = parser.parse_args()
    rows = {"event log": asyncio.run(_log_stats())}
    if args.sessions is not None:
        rows[args.sessions.name] = visit_stats(load_sessions(args.sessions).train)
    for name, stats in rows.items():
        print(name, stats)


if __name__ == "__main__":
    main()
