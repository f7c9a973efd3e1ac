"""The daily training's last step: the learned home ranking of every active user, computed with
the serving code on the new version, for home requests to read (services/home_rankings.py)."""

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from database.interactions import HISTORY_LIMIT
from ml.train_ranker import history_events, trending_at
from services.catalog import Catalog
from services.feeds import Filters, category_history, clicked_positions, learned_ranking
from services.home_rankings import PAGE, PreparedRanking, PreparedUser, history_fingerprint, pack
from services.models import bundle_from_arrays
from services.ranking import Ranker
from services.synonyms import Synonyms


def ranker_trending(catalog: Catalog, clicks: pd.DataFrame, now: datetime, rate: float):
    """The trending scores the version's ranker reads (version rows): those at training time,
    as the ranker was trained and evaluated with them."""
    return trending_at(catalog, clicks, now, rate).scores


def prepare_home_rankings(
    *,
    catalog: Catalog,
    arrays: dict[str, np.ndarray],
    ranker_path: Path,
    events: pd.DataFrame,
    now: datetime,
    max_users: int,
    history_stamps: dict[str, int] | None = None,
    progress: bool = False,
) -> tuple[dict[str, np.ndarray], int]:
    """Arrays of the home rankings of the `max_users` most recently active users in `events`
    (the history window as of `now`), and how many users they hold. `arrays` are the new
    version's, with its ranker_trending; the catalog is the one it was trained on.
    `history_stamps`: the users' stamps read with `events` (none: requests read the tables)."""
    bundle = bundle_from_arrays(
        arrays,
        len(catalog),
        catalog.position_of,
        version="prepare-home",
        folder=ranker_path.parent,
        created_at=now,
        synonyms=Synonyms({}),
        ranker=Ranker(ranker_path),
    )
    latest = events.groupby("user_id")["epoch"].max().sort_values(ascending=False)
    chosen = set(latest.index[:max_users])
    users = []
    groups = events[events["user_id"].isin(chosen)].groupby("user_id")
    for user_id, group in tqdm(groups, desc="home rankings", disable=not progress, unit="user"):
        user_events = history_events(group)[:HISTORY_LIMIT]
        seen = set(clicked_positions(catalog, user_events))
        ranking = learned_ranking(
            catalog=catalog,
            bundle=bundle,
            trending=None,
            events=user_events,
            history_categories=category_history(catalog, bundle, str(user_id), seen),
            now=now,
            exclude_seen=True,
            filters=Filters(),
            n=PAGE,
            reasons=True,
        )
        users.append(
            PreparedUser(
                user_id=str(user_id),
                fingerprint=history_fingerprint(user_events),
                stamp=(history_stamps or {}).get(str(user_id), -1),
                seen=sorted(seen),
                ranking=PreparedRanking(ranking.ranked, ranking.explore),
            )
        )
    return pack(users), len(users)
