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


@dataclass
class Share:
    """One part of a composed page: its share of the slots and its candidates, best first."""

    name: str
    share: float
    candidates: list[Candidate]


PAGE_BLOCK = 10  # the sub-category cap holds within each block of this many slots


def compose(
    shares: list[Share],
    *,
    n: int,
    product_group: np.ndarray,
    sub_category: np.ndarray,
    max_per_sub_category: int,
    exclude_groups: Iterable[int] = (),
) -> list[Candidate]:
    """A page made of shares: slot by slot, a share takes its next candidate in proportion to its
    part (D'Hondt's rule), so each share's order is kept and the first n slots hold each share's
    part (one exploration slot in ten at 0.1 comes tenth). A product (any listing of its
    group) appears once; no more than `max_per_sub_category` items of one sub-category in a block of
    PAGE_BLOCK slots (a capped candidate waits for the next block). A share with no candidate
    left gives its slots to the others. Slot k does not depend on n, so pages of the same
    shares join exactly.

    Returns the n composed items, then one more when a candidate is left (a next page exists).
    """
    live = [s for s in shares if s.share > 0 and s.candidates]
    total = sum(s.share for s in live) or 1.0
    taken_groups = set(exclude_groups)
    queues = [_ShareQueue(s.share / total, s.candidates, product_group, sub_category) for s in live]
    page: list[Candidate] = []
    per_sub: dict = {}
    while len(page) < n and queues:
        if len(page) % PAGE_BLOCK == 0:
            per_sub = {}
        # D'Hondt: the share with the most slots owed per slot taken (ties: the earlier share),
        # so a small share's slot comes at the end of its stretch, not before larger ones.
        order = sorted(range(len(queues)), key=lambda i: -queues[i].part / (queues[i].taken + 1))
        picked = None
        for capped in (True, False):  # all capped: the best share's next candidate anyway
            for i in order:
                picked = queues[i].next(taken_groups, per_sub, max_per_sub_category, capped)
                if picked is not None:
                    queues[i].taken += 1
                    break
            if picked is not None:
                break
        if picked is None:
            break
        candidate, group, sub = picked
        taken_groups.add(group)
        per_sub[sub] = per_sub.get(sub, 0) + 1
        page.append(candidate)
        queues = [q for q in queues if not q.exhausted()]
    for queue in queues:  # one more, if any is left: a next page exists
        left = queue.next(taken_groups, per_sub, max_per_sub_category, False)
        if left is not None:
            return [*page, left[0]]
    return page


class _ShareQueue:
    """A share's candidates in order, their product groups and sub-categories looked up a
    chunk at a time as the page reaches them (a share may hold hundreds; a page takes a few)."""

    CHUNK = 32

    def __init__(self, part: float, candidates: list[Candidate], product_group, sub_category):
        self.part = part
        self.taken = 0
        self._candidates = candidates
        self._product_group = product_group
        self._sub_category = sub_category
        self._entries: list[tuple] = []  # (candidate, group, sub-category) looked up so far
        self._at = 0
        self._waiting: list[tuple] = []  # capped in the current block

    def _look_up(self) -> bool:
        """The next chunk's entries; False when every candidate is looked up."""
        start = len(self._entries)
        chunk = self._candidates[start : start + self.CHUNK]
        if not chunk:
            return False
        positions = [c.position for c in chunk]
        self._entries += zip(
            chunk,
            self._product_group[positions].tolist(),
            self._sub_category[positions].tolist(),
            strict=True,
        )
        return True

    def next(self, taken_groups, per_sub, cap, capped):
        """The share's next (candidate, group, sub-category) not on the page yet (within the cap
        when `capped`)."""
        for i, entry in enumerate(self._waiting):
            if entry[1] in taken_groups:
                continue
            if not capped or per_sub.get(entry[2], 0) < cap:
                del self._waiting[i]
                return entry
        entries = self._entries
        while self._at < len(entries) or self._look_up():
            entry = entries[self._at]
            self._at += 1
            if entry[1] in taken_groups:
                continue
            if capped and per_sub.get(entry[2], 0) >= cap:
                self._waiting.append(entry)
                continue
            return entry
        return None

    def exhausted(self) -> bool:
        return self._at >= len(self._candidates) and not self._waiting
