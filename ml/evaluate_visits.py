"""The home feed in the middle of a visit: does the next page follow what the shopper is doing?

For test visits with two or more clicks, the history is everything before a random click of the
visit (the visit's earlier clicks and searches included), and the truth is the click after it.
The default feed (with its in-visit parts) is compared with the same learned ranking once the
visit is over (what the ranker alone gives), the session feed and popularity.
"""

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from config.settings import Settings
from ml.train_ranker import history_events
from ml.train_sessions import SESSION_GAP_SECONDS
from services.catalog import Catalog
from services.feeds import VISIT_GAP, Filters, click_sequence, home_feed, session_feed
from services.models import ModelBundle, TrendingScores

K = 10


def visit_cases(
    train: pd.DataFrame, test: pd.DataFrame, history_days: float, max_cases: int, seed: int
) -> list[tuple[pd.DataFrame, float, str]]:
    """(history before the cut, the cut's epoch, the next clicked product) for up to
    `max_cases` test visits with two or more clicks, one random cut in each."""
    events = pd.concat([train, test]).sort_values(["user_id", "epoch"], kind="stable")
    test = test.sort_values(["user_id", "epoch"], kind="stable")
    gap = test["epoch"].diff() > SESSION_GAP_SECONDS
    new_user = test["user_id"] != test["user_id"].shift()
    visit_of = (gap | new_user).cumsum()
    by_user = dict(tuple(events.groupby("user_id")))
    rng = np.random.default_rng(seed)
    candidates = []
    for _, visit in test.groupby(visit_of):
        clicks = np.flatnonzero((visit["event_type"] == "product_click").to_numpy())
        if len(clicks) >= 2:
            candidates.append((visit, clicks))
    picked = rng.permutation(len(candidates))[:max_cases]
    cases = []
    for index in sorted(picked.tolist()):
        visit, clicks = candidates[index]
        at = int(rng.integers(1, len(clicks)))  # the click to predict (never the first)
        target = visit.iloc[clicks[at]]
        cut = float(visit.iloc[clicks[at] - 1]["epoch"]) if clicks[at] > 0 else target["epoch"]
        user_events = by_user[target["user_id"]]
        history = user_events[
            (user_events["epoch"] <= cut) & (user_events["epoch"] >= cut - history_days * 86400)
        ]
        cases.append((history, cut, target["product_id"]))
    return cases


def evaluate_visits(
    *,
    catalog: Catalog,
    bundle: ModelBundle,
    trending: TrendingScores,
    train: pd.DataFrame,
    test: pd.DataFrame,
    settings: Settings,
    max_cases: int,
    seed: int,
    score,  # (name, ranked positions, relevant positions) -> None
) -> None:
    weights = {
        "clicked": settings.weight_clicked,
        "search": settings.weight_search,
        "diverse": settings.weight_diverse,
    }
    by_trending = np.argsort(-trending.scores)
    for history, cut, next_product in visit_cases(
        train, test, settings.history_days, max_cases, seed
    ):
        target = catalog.position_of.get(next_product)
        events = history_events(history)
        seen = {catalog.position_of.get(e["product_id"]) for e in events if e["product_id"]}
        if target is None or target in seen:
            continue  # the feed leaves clicked products out: a re-click cannot be predicted
        relevant = {target}
        now = datetime.fromtimestamp(cut, UTC) + timedelta(seconds=1)
        for name, at in (
            ("learned ranker with the visit's parts (default)", now),
            ("learned ranker alone (the visit over)", now + 2 * VISIT_GAP),
        ):
            feed = home_feed(
                catalog=catalog,
                bundle=bundle,
                trending=trending,
                events=events,
                user_id=str(history["user_id"].iloc[-1]),
                weights=weights,
                boost_weight=settings.trending_boost,
                n=K,
                filters=Filters(),
                exclude_seen=True,
                now=at,
                max_per_sub_category=settings.home_max_per_sub_category,
            )
            score(name, [c.position for c in feed.items[:K]], relevant)
        session = session_feed(
            catalog=catalog,
            bundle=bundle,
            trending=trending,
            clicked=click_sequence(catalog, events),
            n=K,
            filters=Filters(),
            exclude_seen=True,
        )
        score("session feed", [c.position for c in session.items[:K]], relevant)
        popular = [int(p) for p in by_trending[: K + len(seen)] if p not in seen]
        score("popularity", popular[:K], relevant)
