"""Candidate sources of the home feed as arrays. Each source returns the products it proposes,
a score for each and which anchor (a clicked product, a past search, a category) proposed it
most strongly, which becomes the item's reason. A user's anchors are gathered from the
memory-mapped neighbour arrays in a few numpy calls: no Python per candidate."""

from dataclasses import dataclass, field

import numpy as np

from services.arrays import distinct, sorted_groups
from services.recommender import Candidate, Reason, Source, add_candidate

NEIGHBORS_PER_ANCHOR = 30
SESSION_CANDIDATES = 100
HISTORY_CANDIDATES = 100
# The item-item models a clicked product is an anchor in: signal and reason text.
NEIGHBOR_SIGNALS = {
    "content": ("similar", "similar to {}"),
    "coclick": ("co_click", "often clicked with {}"),
    "cf": ("collaborative", "shoppers who clicked {} also clicked"),
    "ease": ("item_model", "goes with {} for shoppers like you"),
}


def members(values: np.ndarray, sorted_rows: np.ndarray) -> np.ndarray:
    """Which of `values` are in `sorted_rows` (binary search: np.isin sorts both, and its
    fixed cost is tens of microseconds, paid per source on the request path)."""
    if len(sorted_rows) == 0:
        return np.zeros(len(values), bool)
    slots = np.minimum(np.searchsorted(sorted_rows, values), len(sorted_rows) - 1)
    return sorted_rows[slots] == values


@dataclass
class ScoredItems:
    """One source's candidates: distinct catalog positions (ascending), their scores, and per
    item the index in `anchor_names` of the anchor that contributed most (-1: none)."""

    positions: np.ndarray  # int64
    scores: np.ndarray  # float64
    anchors: np.ndarray  # int64
    anchor_names: list[str | None]
    signal: str
    text: str  # the reason's text, "{}" standing for the anchor
    _by_anchor: dict[int, Reason] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def empty(cls, signal: str = "", text: str = "") -> "ScoredItems":
        none = np.zeros(0, np.int64)
        return cls(none, np.zeros(0), none, [], signal, text)

    def __len__(self) -> int:
        return len(self.positions)

    def reason(self, row: int) -> Reason:
        return self.anchor_reason(int(self.anchors[row]))

    def anchor_reason(self, anchor: int) -> Reason:
        """The Reason of one anchor (-1: none), made once and shared by its items: a feed shows
        the reasons of a few items, not of every anchor."""
        reason = self._by_anchor.get(anchor)
        if reason is None:
            name = self.anchor_names[anchor] if anchor >= 0 else None
            reason = self._by_anchor[anchor] = Reason(self.signal, name, self.text.format(name))
        return reason

    def add_to(self, source: Source, scale: float = 1.0) -> None:
        """Add these items to a dict source (the weighted merge's form), scores x scale."""
        for position, score, anchor in zip(
            self.positions.tolist(), self.scores.tolist(), self.anchors.tolist(), strict=True
        ):
            add_candidate(source, position, score * scale, self.anchor_reason(anchor))

    def best(self, n: int) -> list[Candidate]:
        """The n best items as candidates, best first (ties by position)."""
        order = np.lexsort((self.positions, -self.scores))[:n]
        return [
            Candidate(int(self.positions[row]), float(self.scores[row]), [self.reason(int(row))])
            for row in order.tolist()
        ]

    def as_source(self, scale: float = 1.0) -> Source:
        source: Source = {}
        self.add_to(source, scale)
        return source


def aggregate(
    positions: np.ndarray,
    contributions: np.ndarray,
    anchors: np.ndarray,
    anchor_names: list[str | None],
    signal: str,
    text: str,
) -> ScoredItems:
    """Sum the contributions per product (several anchors add up) and keep, as the reason, the
    anchor that contributed most (ties: the first anchor)."""
    if len(positions) == 0:
        return ScoredItems.empty(signal, text)
    # One sort gives both the products and, per product, its biggest contribution first.
    order = np.lexsort((anchors, -contributions, positions))
    starts, inverse = sorted_groups(positions, order)
    products, firsts = positions[order][starts], order[starts]
    # bincount adds each product's contributions in their given order, as before.
    scores = np.bincount(inverse, weights=contributions, minlength=len(products))
    return ScoredItems(
        products.astype(np.int64),
        scores,
        anchors[firsts].astype(np.int64),
        anchor_names,
        signal,
        text,
    )


def neighbor_items(
    bundle,
    model: str,
    anchor_positions: np.ndarray,
    anchor_weights: np.ndarray,
    anchor_ids: list[str],
    per_anchor: int = NEIGHBORS_PER_ANCHOR,
) -> ScoredItems:
    """Neighbours in `model` of the anchors (catalog positions), each anchor's list scaled so its
    best neighbour scores the anchor's weight, summed over anchors.

    Args:
        bundle: the serving ModelBundle.
        anchor_weights: the anchors' recency weights.
        anchor_ids: product ids of the anchors, for the reasons.
    """
    signal, text = NEIGHBOR_SIGNALS[model]
    positions, scores, rows = bundle.neighbor_rows(model, anchor_positions, per_anchor)
    return aggregate(positions, anchor_weights[rows] * scores, rows, list(anchor_ids), signal, text)


def whole_history_items(
    bundle, model: str, clicked: np.ndarray, ids: np.ndarray, n: int = HISTORY_CANDIDATES
) -> ScoredItems:
    """The item-item model applied to the whole history, as EASE scores a user: its raw weights
    summed over every product clicked in the window (each once, however old), the best n kept.

    Args:
        clicked: catalog positions of the clicks (repeats allowed).
        ids: product id of every catalog position, for the reasons.
    """
    signal, text = NEIGHBOR_SIGNALS[model]
    anchors = distinct(clicked)
    positions, scores, rows = bundle.neighbor_rows(model, anchors, relative=False)
    items = aggregate(positions, scores, rows, list(ids[anchors]), signal, text)
    if len(items) <= n:
        return items
    best = np.sort(np.argpartition(-items.scores, n)[:n])  # positions stay ascending
    return ScoredItems(
        items.positions[best],
        items.scores[best],
        items.anchors[best],
        items.anchor_names,
        signal,
        text,
    )


def ranked_items(
    positions: np.ndarray, scores: np.ndarray, anchor: str | None, signal: str, text: str
) -> ScoredItems:
    """A ranked list (distinct positions, best first) as one source scaled to a best score of 1,
    all with the same anchor."""
    if len(positions) == 0:
        return ScoredItems.empty(signal, text)
    top = float(scores[0]) or 1.0
    order = np.argsort(positions, kind="stable")
    return ScoredItems(
        np.asarray(positions, np.int64)[order],
        np.asarray(scores, np.float64)[order] / top,
        np.zeros(len(positions), np.int64),
        [anchor],
        signal,
        text,
    )


def session_items(
    bundle, sequence: list[int], last_id: str | None, n: int = SESSION_CANDIDATES
) -> ScoredItems:
    """What session-kNN gives a click sequence (catalog positions, oldest first): its best n,
    scaled so the best scores 1."""
    text = "shoppers whose visit was like yours, up to {}"
    if not sequence:
        return ScoredItems.empty("session", text)
    positions, scores = bundle.session_neighbors(sequence)
    return ranked_items(positions[:n], scores[:n], last_id, "session", text)


def grouped_items(
    groups: list[tuple[str, float, np.ndarray]], boost: np.ndarray, signal: str, text: str
) -> ScoredItems:
    """Products of several groups (name, weight, positions), each scored weight x boost, summed
    when a product is in several groups."""
    if not groups:
        return ScoredItems.empty(signal, text)
    positions = np.concatenate([g[2] for g in groups]).astype(np.int64)
    weights = np.concatenate([np.full(len(g[2]), g[1]) for g in groups])
    anchors = np.concatenate([np.full(len(g[2]), i) for i, g in enumerate(groups)])
    return aggregate(
        positions, weights * boost[positions], anchors, [g[0] for g in groups], signal, text
    )
