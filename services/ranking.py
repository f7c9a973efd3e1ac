"""The learned home ranker: candidates from every source, one feature row per candidate, a
LightGBM LambdaRank model to order them. Training (ml/train_ranker.py) calls these very functions
on a past cut-off, so serving and training compute features the same way.
"""

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import lightgbm
import numpy as np

from services.catalog import Catalog
from services.recommender import Candidate, Source

RANKER_FILE = "ranker.txt"  # LightGBM's own text format: no pickle
SOURCES = (
    "session",
    "coclick",
    "cf",
    "content",
    "ease",
    "search",
    "popular",
    "category_popular",
)
POPULAR_CANDIDATES = 100
FEATURES = (
    *(f"{s}_score" for s in SOURCES),
    *(f"{s}_rank" for s in SOURCES),
    "sources",
    "trending",
    "catalog_popularity",
    "log_clicks",
    "sub_category_click_share",
    "rating",
    "log_rating_count",
    "discount_ratio",
    "category_share",
    "sub_category_share",
    "same_sub_category_as_last",
    "brand_share",
    "price_distance",
    "log_history",
)
NO_RANK = 1000.0


@dataclass
class UserHistory:
    """What the ranker needs to know about one user, from the events read at request time."""

    sequence: list[int]  # catalog positions of the latest clicks, oldest first
    seen: set[int]  # every product clicked in the history window
    category_share: dict[str, float]
    sub_category_share: dict[str, float]
    brand_share: dict[str, float]
    price_tier: float  # mean price tier of the clicked products (nan: no price known)
    clicks: int


def user_history(catalog: Catalog, clicked_newest_first: list[int], limit: int = 20):
    """The user's click history summarised for the ranker (clicks newest first)."""
    total = max(len(clicked_newest_first), 1)

    def shares(values: np.ndarray) -> dict[str, float]:
        return {k: v / total for k, v in Counter(values[p] for p in clicked_newest_first).items()}

    tiers = catalog.price_tier[clicked_newest_first] if clicked_newest_first else np.zeros(0)
    tiers = tiers[~np.isnan(tiers)]
    return UserHistory(
        sequence=clicked_newest_first[:limit][::-1],
        seen=set(clicked_newest_first),
        category_share=shares(catalog.main_category),
        sub_category_share=shares(catalog.sub_category),
        brand_share=shares(catalog.brand),
        price_tier=float(tiers.mean()) if len(tiers) else float("nan"),
        clicks=len(clicked_newest_first),
    )


def feature_rows(
    catalog: Catalog,
    sources: dict[str, Source],
    history: UserHistory,
    boost: np.ndarray,
    log_clicks: np.ndarray | None,
) -> tuple[list[Candidate], np.ndarray]:
    """One candidate per product found by any source (seen products left out) and its features
    in FEATURES order."""
    merged: dict[int, Candidate] = {}
    for source in sources.values():
        for position, candidate in source.items():
            if position in history.seen:
                continue
            found = merged.setdefault(position, Candidate(position, 0.0, []))
            found.reasons.extend(r for r in candidate.reasons if r not in found.reasons)
    positions = np.fromiter(merged, np.int64, len(merged))
    by_position = np.argsort(positions)
    sorted_positions = positions[by_position]
    columns: dict[str, np.ndarray] = {}
    for name in SOURCES:
        source = sources.get(name, {})
        scores = np.zeros(len(positions))
        ranks = np.full(len(positions), NO_RANK)
        if source and len(positions):
            found = np.fromiter(source.keys(), np.int64, len(source))
            found_scores = np.fromiter((c.score for c in source.values()), float, len(source))
            order = np.lexsort((found, -found_scores))  # best first, ties by position
            rank = np.empty(len(found))
            rank[order] = np.arange(len(found))
            top = found_scores[order[0]] or 1.0
            slot = np.minimum(np.searchsorted(sorted_positions, found), len(positions) - 1)
            present = sorted_positions[slot] == found  # seen products have no row
            rows = by_position[slot[present]]
            scores[rows] = found_scores[present] / top
            ranks[rows] = rank[present]
        columns[f"{name}_score"] = scores
        columns[f"{name}_rank"] = ranks
    columns["sources"] = sum((columns[f"{s}_rank"] < NO_RANK).astype(float) for s in SOURCES)
    columns["trending"] = boost[positions]
    columns["catalog_popularity"] = catalog.popularity[positions]
    columns["log_clicks"] = (
        log_clicks[positions] if log_clicks is not None else np.zeros(len(positions))
    )
    columns["sub_category_click_share"] = (
        sub_category_click_share(catalog, log_clicks)[positions]
        if log_clicks is not None
        else np.zeros(len(positions))
    )
    columns["rating"] = catalog.rating[positions]
    columns["log_rating_count"] = catalog.log_rating_count[positions]
    columns["discount_ratio"] = catalog.discount[positions]
    main = catalog.main_category[positions]
    sub = catalog.sub_category[positions]
    columns["category_share"] = np.array([history.category_share.get(c, 0.0) for c in main])
    columns["sub_category_share"] = np.array([history.sub_category_share.get(c, 0.0) for c in sub])
    last_sub = catalog.sub_category[history.sequence[-1]] if history.sequence else None
    columns["same_sub_category_as_last"] = (sub == last_sub).astype(float)
    columns["brand_share"] = np.array(
        [history.brand_share.get(b, 0.0) for b in catalog.brand[positions]]
    )
    # How far the price tier is from what the user usually looks at (-1: unknown).
    distance = np.abs(catalog.price_tier[positions] - history.price_tier)
    columns["price_distance"] = np.where(np.isnan(distance), -1.0, distance)
    columns["log_history"] = np.full(len(positions), np.log1p(history.clicks))
    matrix = np.column_stack([columns[f] for f in FEATURES]) if len(positions) else None
    return list(merged.values()), (matrix if matrix is not None else np.zeros((0, len(FEATURES))))


# The entry keeps the catalog and the clicks array: ids of freed objects are reused.
_share_cache: dict[tuple[int, int], tuple[Catalog, np.ndarray, np.ndarray]] = {}


def sub_category_click_share(catalog: Catalog, log_clicks: np.ndarray) -> np.ndarray:
    """Each product's share of its sub-category's clicks (the bestseller rank within a shelf),
    computed once per catalog and model version."""
    key = (id(catalog), id(log_clicks))
    cached = _share_cache.get(key)
    if cached is not None and cached[0] is catalog and cached[1] is log_clicks:
        return cached[2]
    clicks = np.expm1(np.asarray(log_clicks, np.float64))
    _, group = np.unique(catalog.sub_category.astype(str), return_inverse=True)
    totals = np.bincount(group, weights=clicks)
    share = np.where(totals[group] > 0, clicks / np.maximum(totals[group], 1e-9), 0.0)
    _share_cache.clear()  # only the serving version's is worth keeping
    _share_cache[key] = (catalog, log_clicks, share)
    return share


class Ranker:
    """A trained LambdaRank booster, read from its text file."""

    def __init__(self, path: Path):
        self.booster = lightgbm.Booster(model_file=str(path))
        if self.booster.num_feature() != len(FEATURES):
            raise ValueError(f"{path}: ranker has {self.booster.num_feature()} features")

    def rank(self, candidates: list[Candidate], features: np.ndarray) -> list[Candidate]:
        if not candidates:
            return []
        scores = self.booster.predict(features, num_threads=1)
        for candidate, score in zip(candidates, scores.tolist(), strict=True):
            candidate.score = float(score)
        return sorted(candidates, key=lambda c: (-c.score, c.position))
