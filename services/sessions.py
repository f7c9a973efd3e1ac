"""Session-kNN over past sessions (STAN-style weighting of V-SKNN, Garg et al. 2019; Ludewig &
Jannach 2018): the current session's clicks are matched against similar past sessions, and the
items of the closest sessions are scored.

The index is plain arrays (memory-mapped artifacts), so a request is a few numpy slices:
    session_indptr / session_items     items of past session s, click order, each item once
    item_indptr / item_sessions / item_positions
                                       for each item, the sessions holding it (ascending id =
                                       older first) and its 1-based position there
Session ids are ordered by the session's end time, so a larger id is a more recent session.
"""

from dataclasses import dataclass

import numpy as np

from services.arrays import distinct_first_index, distinct_inverse


@dataclass(frozen=True)
class SessionKnnParams:
    neighbors: int = 100  # past sessions that vote
    sample: int = 500  # most recent sessions considered per clicked item
    position_decay: float = 2.0  # lambda1: weight exp((p - L) / l) of the p-th of L current clicks
    neighbor_decay: float = 4.0  # lambda3: weight exp(-|q - q_match| / l) of a neighbour's items
    max_clicks: int = 20  # only the latest clicks of a long session


@dataclass(frozen=True)
class SessionIndex:
    session_indptr: np.ndarray
    session_items: np.ndarray
    item_indptr: np.ndarray
    item_sessions: np.ndarray
    item_positions: np.ndarray

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str = "sessions_"):
        return cls(*(arrays[prefix + name] for name in SESSION_ARRAYS))

    @property
    def n_sessions(self) -> int:
        return len(self.session_indptr) - 1


SESSION_ARRAYS = (
    "session_indptr",
    "session_items",
    "item_indptr",
    "item_sessions",
    "item_positions",
)


def last_occurrences(items: np.ndarray) -> np.ndarray:
    """The distinct items of a click sequence in the order of their last click."""
    items = np.asarray(items)
    if len(items) == 0:
        return items
    reversed_items = items[::-1]
    _, first_in_reversed = distinct_first_index(reversed_items)
    keep = np.sort(len(items) - 1 - first_in_reversed)
    return items[keep]


def session_knn_scores(
    index: SessionIndex, clicks: np.ndarray, params: SessionKnnParams = SessionKnnParams()
) -> tuple[np.ndarray, np.ndarray]:
    """Score the items of the past sessions most similar to the current one.

    Args:
        index: the past sessions.
        clicks: the current session's clicked item ids (index item space), oldest first;
            repeated clicks count once, at their latest position.
        params: neighbourhood size, sampling and the two position decays.
    Returns:
        (items, scores), best first; items of the current session are included (the caller
        decides whether seen items may be recommended).
    """
    empty = np.zeros(0, np.int64), np.zeros(0, np.float32)
    current = last_occurrences(clicks)[-params.max_clicks :]
    current = current[(current >= 0) & (current < len(index.item_indptr) - 1)]
    length = len(current)
    if length == 0:
        return empty
    # Postings of every current item: its most recent `sample` sessions.
    starts = index.item_indptr[current]
    ends = index.item_indptr[current + 1]
    starts = np.maximum(starts, ends - params.sample)
    counts = ends - starts
    if counts.sum() == 0:
        return empty
    offsets = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
    sessions = index.item_sessions[offsets]
    neighbour_positions = index.item_positions[offsets]
    current_positions = np.repeat(np.arange(1, length + 1), counts)
    weights = np.exp((current_positions - length) / params.position_decay)

    unique_sessions, inverse = distinct_inverse(sessions)
    overlap = np.bincount(inverse, weights=weights, minlength=len(unique_sessions))
    sizes = index.session_indptr[unique_sessions + 1] - index.session_indptr[unique_sessions]
    similarity = overlap / np.sqrt(sizes * length)
    # Where the neighbour matched the most recent of the current clicks it shares.
    latest_match = np.zeros(len(unique_sessions), np.int64)
    np.maximum.at(latest_match, inverse, current_positions)
    match_position = np.zeros(len(unique_sessions), np.int64)
    is_latest = current_positions == latest_match[inverse]
    match_position[inverse[is_latest]] = neighbour_positions[is_latest]

    top = min(params.neighbors, len(unique_sessions))
    # Most similar first; among equals the more recent session (larger id) wins. Only the
    # sessions at least as similar as the top-th can be among the top: sorted alone (thousands
    # of sessions share a clicked item at 550k products, a hundred vote).
    if len(unique_sessions) > top:
        kth = np.partition(similarity, len(similarity) - top)[len(similarity) - top]
        pool = np.flatnonzero(similarity >= kth)
    else:
        pool = np.arange(len(unique_sessions))
    order = pool[np.lexsort((-unique_sessions[pool], -similarity[pool]))][:top]
    chosen = unique_sessions[order]
    chosen_similarity = similarity[order]
    chosen_match = match_position[order]

    starts = index.session_indptr[chosen]
    counts = index.session_indptr[chosen + 1] - starts
    offsets = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
    items = index.session_items[offsets]
    positions = offsets - np.repeat(starts, counts) + 1
    distance = np.abs(positions - np.repeat(chosen_match, counts))
    votes = np.repeat(chosen_similarity, counts) * np.exp(-distance / params.neighbor_decay)
    voted, inverse = distinct_inverse(items)
    scores = np.bincount(inverse, weights=votes, minlength=len(voted))
    keep = scores > 0
    voted, scores = voted[keep], scores[keep]
    order = np.lexsort((voted, -scores))
    return voted[order].astype(np.int64), scores[order].astype(np.float32)
