"""The learned home ranker: candidates from every source, one feature row per candidate, a
LightGBM LambdaRank model to order them. Training (ml/train_ranker.py) calls these very functions
on a past cut-off, so serving and training compute features the same way.
"""

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import lightgbm
import numpy as np

try:  # the ranker's trees compiled to machine code; LightGBM scores without it
    import lleaves
    import llvmlite.binding as llvm
except ImportError:  # pragma: no cover - a platform without llvmlite wheels
    lleaves = None

from services.arrays import distinct
from services.catalog import Catalog
from services.recommender import Candidate, Reason
from services.sources import ScoredItems, members

logger = logging.getLogger(__name__)
RANKER_FILE = "ranker.txt"  # LightGBM's own text format: no pickle
SOURCES = (
    "session",
    "coclick",
    "cf",
    "content",
    "ease",
    "ease_history",
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
    "week_log_clicks",
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
# Candidates each source nominates for the learned ranker (its best unseen items).
SOURCE_CANDIDATES = 50


@dataclass
class UserHistory:
    """What the ranker needs to know about one user, from the events read at request time."""

    sequence: list[int]  # catalog positions of the latest clicks, oldest first
    seen: set[int]  # every product clicked in the history window
    clicked: np.ndarray  # catalog positions of every click in the window, newest first
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

    clicked = np.asarray(clicked_newest_first, np.int64)
    tiers = catalog.price_tier[clicked]
    tiers = tiers[~np.isnan(tiers)]
    return UserHistory(
        sequence=clicked_newest_first[:limit][::-1],
        seen=set(clicked_newest_first),
        clicked=clicked,
        category_share=shares(catalog.main_category),
        sub_category_share=shares(catalog.sub_category),
        brand_share=shares(catalog.brand),
        price_tier=float(tiers.mean()) if len(tiers) else float("nan"),
        clicks=len(clicked_newest_first),
    )


@dataclass
class CandidateSet:
    """A user's candidates: catalog positions, one feature row each (FEATURES order), and the
    sources that found them (for the reasons)."""

    positions: np.ndarray
    features: np.ndarray
    sources: dict[str, ScoredItems]
    source_rows: dict[str, np.ndarray]  # per source: its row of each candidate, -1 if absent
    # Candidates made without their reasons yet: id(candidate) -> row.
    _pending: dict[int, int] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.positions)

    def candidates(
        self, rows: np.ndarray, scores: np.ndarray, reasons: bool = True
    ) -> list[Candidate]:
        """Candidate objects of the given rows (in that order) with these scores and a reason
        from every source that found them. With reasons=False they come without (the mixer
        does not need them) until `give_reasons` is called for the ones on the page."""
        made = [
            Candidate(position, score)
            for position, score in zip(
                self.positions[rows].tolist(), scores[rows].tolist(), strict=True
            )
        ]
        if reasons:
            for candidate, found in zip(made, self._reasons(rows), strict=True):
                candidate.reasons = found
        else:
            self._pending.update(zip(map(id, made), rows.tolist(), strict=True))
        return made

    def give_reasons(self, candidates: list[Candidate]) -> None:
        """The source reasons of those `candidates` made with reasons=False, before any reason
        added since (an exploration pick's)."""
        waiting = [c for c in candidates if id(c) in self._pending]
        rows = np.array([self._pending.pop(id(c)) for c in waiting], np.int64)
        for candidate, found in zip(waiting, self._reasons(rows), strict=True):
            candidate.reasons[:0] = found

    def _reasons(self, rows: np.ndarray) -> list[list[Reason]]:
        """The reasons of each of `rows`: one per source that found it, in source order, a
        reason given by two sources (two of one model) once. Read per source for all rows at
        once: a ranking shares the reasons of dozens of candidates."""
        found: list[list[Reason]] = [[] for _ in range(len(rows))]
        for name, items in self.sources.items():
            at = self.source_rows[name][rows]
            present = np.flatnonzero(at >= 0)
            if len(present) == 0:
                continue
            anchors = items.anchors[at[present]].tolist()
            for i, anchor in zip(present.tolist(), anchors, strict=True):
                reason = items.anchor_reason(anchor)
                if reason not in found[i]:
                    found[i].append(reason)
        return found


def _click_share(codes: np.ndarray, clicked: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """For each of `positions`, the share of the user's clicks on a product with its code (its
    category, sub-category or brand)."""
    of_clicks = np.sort(codes[clicked])
    wanted = codes[positions]
    counts = np.searchsorted(of_clicks, wanted, "right") - np.searchsorted(of_clicks, wanted)
    return counts / max(len(clicked), 1)


def _nominated(items, seen: np.ndarray, per_source: int | None) -> np.ndarray:
    """The positions of the best `per_source` items of a source that are not in `seen`
    (sorted)."""
    positions = items.positions
    if len(seen):
        unseen = ~members(positions, seen)
        positions, scores = positions[unseen], items.scores[unseen]
    else:
        scores = items.scores
    if per_source is None or len(positions) <= per_source:
        return positions
    best = np.argpartition(-scores, per_source - 1)[:per_source]
    return positions[best]


def feature_rows(
    catalog: Catalog,
    sources: dict[str, ScoredItems],
    history: UserHistory,
    boost: np.ndarray,
    log_clicks: np.ndarray | None,
    week_log_clicks: np.ndarray | None = None,
    per_source: int | None = None,
) -> CandidateSet:
    """One candidate per product among each source's best `per_source` (all when None; seen
    products left out) and its features in FEATURES order. A source's scores are scaled by its
    best item and ranked over all its items, seen ones included (they still tell how strong the
    others are)."""
    seen = np.sort(np.fromiter(history.seen, np.int64, len(history.seen)))
    # Each source nominates its best unseen items: the ranker's cost grows with the candidates,
    # and an item no source ranks in its top SOURCE_CANDIDATES is rarely in the top 10.
    found = [_nominated(items, seen, per_source) for items in sources.values() if len(items)]
    positions = distinct(np.concatenate(found)) if found else np.zeros(0, np.int64)
    columns: dict[str, np.ndarray] = {}
    source_rows: dict[str, np.ndarray] = {}
    for name in SOURCES:
        items = sources.get(name)
        scores = np.zeros(len(positions))
        ranks = np.full(len(positions), NO_RANK)
        at = np.full(len(positions), -1, np.int64)
        if items is not None and len(items) and len(positions):
            order = np.lexsort((items.positions, -items.scores))  # best first, ties by position
            rank = np.empty(len(items))
            rank[order] = np.arange(len(items))
            top = items.scores[order[0]] or 1.0
            # Both position lists are sorted: each candidate's slot in the source's list.
            slot = np.minimum(np.searchsorted(items.positions, positions), len(items) - 1)
            present = items.positions[slot] == positions
            at[present] = slot[present]
            scores[present] = items.scores[slot[present]] / top
            ranks[present] = rank[slot[present]]
        if items is not None:
            source_rows[name] = at
        columns[f"{name}_score"] = scores
        columns[f"{name}_rank"] = ranks
    columns["sources"] = sum((columns[f"{s}_rank"] < NO_RANK).astype(float) for s in SOURCES)
    columns["trending"] = boost[positions]
    columns["catalog_popularity"] = catalog.popularity[positions]
    no_clicks = np.zeros(len(positions))
    columns["log_clicks"] = log_clicks[positions] if log_clicks is not None else no_clicks
    columns["week_log_clicks"] = (
        week_log_clicks[positions] if week_log_clicks is not None else no_clicks
    )
    columns["sub_category_click_share"] = (
        sub_category_click_share(catalog, log_clicks)[positions]
        if log_clicks is not None
        else no_clicks
    )
    columns["rating"] = catalog.rating[positions]
    columns["log_rating_count"] = catalog.log_rating_count[positions]
    columns["discount_ratio"] = catalog.discount[positions]
    for feature, codes in (
        ("category_share", catalog.main_category_code),
        ("sub_category_share", catalog.sub_category_code),
        ("brand_share", catalog.brand_code),
    ):
        columns[feature] = _click_share(codes, history.clicked, positions)
    last = catalog.sub_category_code[history.sequence[-1]] if history.sequence else -1
    columns["same_sub_category_as_last"] = (catalog.sub_category_code[positions] == last).astype(
        float
    )
    # How far the price tier is from what the user usually looks at (-1: unknown).
    distance = np.abs(catalog.price_tier[positions] - history.price_tier)
    columns["price_distance"] = np.where(np.isnan(distance), -1.0, distance)
    columns["log_history"] = np.full(len(positions), np.log1p(history.clicks))
    matrix = (
        np.column_stack([columns[f] for f in FEATURES])
        if len(positions)
        else np.zeros((0, len(FEATURES)))
    )
    ordered = {name: sources[name] for name in sources if name in source_rows}
    return CandidateSet(positions, matrix, ordered, source_rows)


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
    group = catalog.sub_category_code + 1  # factorize's -1 (no sub-category) is a group too
    totals = np.bincount(group, weights=clicks)
    share = np.where(totals[group] > 0, clicks / np.maximum(totals[group], 1e-9), 0.0)
    if len(_share_cache) >= 2:  # the serving version's and the one being warmed
        _share_cache.pop(next(iter(_share_cache)))
    _share_cache[key] = (catalog, log_clicks, share)
    return share


class Ranker:
    """A trained LambdaRank booster, read from its text file, and scored by the same trees
    compiled to machine code (lleaves): ~5x less CPU than LightGBM's own tree walk on the
    ranker's real feature rows, a third of a ranking computed at request time. Training compiles
    it once (`compile_ranker`, a file beside the model per machine type); without that file it
    is compiled here (a second or two). LightGBM scores when the compiled trees cannot be had
    or disagree with it."""

    def __init__(self, path: Path):
        self.booster = lightgbm.Booster(model_file=str(path))
        if self.booster.feature_name() != list(FEATURES):
            raise ValueError(
                f"{path}: ranker trained on other features ({self.booster.num_feature()}, "
                f"serving computes {len(FEATURES)})"
            )
        self.compiled = _compiled(path, self.booster)

    def score(self, features: np.ndarray) -> np.ndarray:
        """The ranker's score of each feature row (higher: shown first)."""
        if len(features) == 0:
            return np.zeros(0)
        if self.compiled is not None:
            return self.compiled.predict(features, n_jobs=1)
        return self.booster.predict(features, num_threads=1)


def compiled_ranker_file(path: Path) -> Path | None:
    """Where `compile_ranker` keeps the model at `path` compiled for this kind of machine (its
    target triple: x86_64-unknown-linux-gnu, say); None without lleaves."""
    if lleaves is None:
        return None
    return path.with_name(f"{path.stem}.{llvm.get_process_triple()}.o")


def ranker_files(path: Path) -> dict[str, Path]:
    """The files of the ranker at `path` a version holds: the model and, when it was compiled
    (`compile_ranker`), its machine code."""
    compiled = compiled_ranker_file(path)
    return {p.name: p for p in (path, compiled) if p is not None and p.exists()}


def compile_ranker(path: Path) -> Path | None:
    """Compile the model at `path` for any CPU of this kind of machine, into the file workers
    load instead of compiling it themselves; that file, or None without lleaves."""
    target = compiled_ranker_file(path)
    if target is None:
        return None
    target.unlink(missing_ok=True)
    _lleaves_model(path, target)
    return target


def _lleaves_model(path: Path, cache: Path | None):
    """The model at `path` compiled for any CPU of this kind of machine: read from `cache` when
    that file exists, else compiled (and written there, given a path)."""
    model = lleaves.Model(model_file=str(path))
    model.compile(cache=None if cache is None else str(cache), **_ANY_CPU)
    return model


# The generic CPU of the machine type: a file compiled on one machine runs on another of its
# kind. Measured no slower than compiling for the host's own CPU.
_ANY_CPU = {"target_cpu": "generic", "target_cpu_features": ""}
# Agreement wanted between the compiled trees and LightGBM: they add the leaves in another
# order (differences ~1e-15 measured), a wrong or stale file differs by far more.
_AGREEMENT = 1e-9


def _compiled(path: Path, booster: lightgbm.Booster):
    """The model compiled (from `compile_ranker`'s file when there is one), if its scores agree
    with LightGBM's on probe rows; else None (LightGBM scores)."""
    if lleaves is None:
        return None
    cached = compiled_ranker_file(path)
    try:
        model = _lleaves_model(path, cached if cached.exists() else None)
        rows = _probe_rows(booster.num_feature())
        gap = np.abs(model.predict(rows, n_jobs=1) - booster.predict(rows, num_threads=1)).max()
    except Exception:
        logger.exception("%s: compiled ranker not used, LightGBM scores", path)
        return None
    if not gap <= _AGREEMENT:
        logger.error("%s: compiled ranker differs from LightGBM by %s: not used", path, gap)
        return None
    return model


def _probe_rows(features: int) -> np.ndarray:
    """Rows that take the trees down many paths: values over several orders of magnitude, with
    the special values the features hold (missing, 0, -1, NO_RANK)."""
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((512, features)) * 10 ** rng.uniform(-3, 3, (512, features))
    special = rng.random((512, features))
    rows[special < 0.1] = np.nan
    rows[(special >= 0.1) & (special < 0.2)] = 0.0
    rows[(special >= 0.2) & (special < 0.25)] = -1.0
    rows[(special >= 0.25) & (special < 0.3)] = NO_RANK
    return rows
