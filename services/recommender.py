"""Hybrid ranking as pure functions: plain data in, ranked list out."""

import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Reason:
    # similar | co_click | collaborative | search | trending | popular | best_value | explore
    signal: str
    anchor: str | None  # product id, search term or category the item is there because of
    text: str


@dataclass
class Candidate:
    position: int  # catalog position
    score: float
    reasons: list[Reason] = field(default_factory=list)


Source = dict[int, Candidate]


def add_candidate(source: Source, position: int, score: float, reason: Reason) -> None:
    """Accumulate evidence for one item within one source (several anchors add up)."""
    candidate = source.get(position)
    if candidate is None:
        source[position] = Candidate(position, score, [reason])
        return
    candidate.score += score
    if reason not in candidate.reasons:
        candidate.reasons.append(reason)


def normalise(source: Source) -> Source:
    """Scale a source's scores to 0..1 so sources with different scales can be weighted."""
    top = max((c.score for c in source.values()), default=0.0)
    if top <= 0:
        return {}
    return {p: Candidate(p, c.score / top, list(c.reasons)) for p, c in source.items()}


def hybrid_merge(
    sources: dict[str, Source],
    weights: dict[str, float],
    *,
    boost: np.ndarray | None = None,
    boost_weight: float = 0.0,
    exclude: Iterable[int] = (),
    keep: Callable[[int], bool] | None = None,
) -> list[Candidate]:
    """Weighted merge of normalised sources; an item found by several sources keeps its best
    weighted score and the reasons of all of them. `boost` (0..1 per catalog position, e.g.
    trending) adds boost_weight x boost to items that are already candidates.

    Returns candidates ranked by score (ties broken by position, so the order is deterministic).
    """
    excluded = set(exclude)
    merged: dict[int, Candidate] = {}
    for name, source in sources.items():
        weight = weights.get(name, 0.0)
        if weight <= 0:
            continue
        for position, candidate in normalise(source).items():
            if position in excluded or (keep is not None and not keep(position)):
                continue
            score = weight * candidate.score
            best = merged.get(position)
            if best is None:
                merged[position] = Candidate(position, score, list(candidate.reasons))
                continue
            best.score = max(best.score, score)
            best.reasons.extend(r for r in candidate.reasons if r not in best.reasons)
    if boost is not None and boost_weight > 0:
        for candidate in merged.values():
            candidate.score += boost_weight * float(boost[candidate.position])
    return sorted(merged.values(), key=lambda c: (-c.score, c.position))


def under_represented_categories(
    history_categories: Iterable[str] | Mapping[str, float], all_categories: Iterable[str]
) -> list[str]:
    """Categories ordered from least to most present in the user's history (unseen first).
    The history is a list of categories or a mapping of category -> weight."""
    counts = Counter(history_categories)
    return sorted(all_categories, key=lambda category: (counts[category], category))


def diverse_candidates(
    history_categories: Iterable[str] | Mapping[str, float],
    top_by_category: dict[str, np.ndarray],
    n: int,
    rng: random.Random,
) -> Source:
    """n items sampled at random from popular products of the categories least represented in
    the user's history (the least represented half of the categories)."""
    ordered = under_represented_categories(history_categories, top_by_category)
    pool = ordered[: max(1, len(ordered) // 2)]
    source: Source = {}
    for rank in range(n):
        category = rng.choice(pool)
        items = top_by_category[category]
        if len(items) == 0:
            continue
        position = int(items[rng.randrange(min(len(items), 50))])
        reason = Reason("explore", category, f"explore {category}")
        add_candidate(source, position, 1.0 / (1 + rank), reason)
    return source


def mix(
    ranked: list[Candidate],
    diverse: list[Candidate],
    *,
    diverse_share: float,
    max_per_sub_category: int,
    sub_category: np.ndarray,
    n: int,
) -> list[Candidate]:
    """The page the shopper sees: the ranked list with `diverse_share` of the first n slots
    given to exploration picks (evenly spread, never the first slot), and no more than
    `max_per_sub_category` items of one sub-category among them (the rest move down). A pick
    may come from lower down the ranked list: it moves up, it is not repeated.

    Returns all of `ranked` (and the diverse picks used), the first n mixed, then the rest.
    """
    per_sub: dict = {}
    head: list[Candidate] = []
    held_back: list[Candidate] = []
    for at, candidate in enumerate(ranked):
        if len(head) >= n:
            held_back += ranked[at:]  # the head is full: the rest keep their order
            break
        key = sub_category[candidate.position]
        count = per_sub.get(key, 0)
        if count >= max_per_sub_category:
            held_back.append(candidate)
            continue
        per_sub[key] = count + 1
        head.append(candidate)
    slots = int(round(diverse_share * n))
    in_head = {c.position for c in head}
    picks: list[Candidate] = []
    for candidate in diverse:
        if len(picks) == slots:
            break
        if candidate.position not in in_head:
            picks.append(candidate)
            in_head.add(candidate.position)
    if picks:
        picked = {c.position for c in picks}
        held_back = [c for c in held_back if c.position not in picked]
        step = max(2, n // len(picks))
        for i, pick in enumerate(picks):
            head.insert(min(len(head), step * (i + 1) - 1), pick)
    return head + held_back
