"""Past sessions for session-kNN, and the sessions themselves cut from the click log.

Arrays (see services/sessions.py): sessions_session_indptr / _session_items (each session's
distinct items in the order of their last click) and the inverted index sessions_item_indptr /
_item_sessions / _item_positions. Memory grows with the number of clicks, never sessions x items.
"""

import numpy as np

from services.sessions import SESSION_ARRAYS

SESSION_GAP_SECONDS = 30 * 60
MAX_SESSION_LENGTH = 50  # a crawler's or a very long session: only its latest distinct items


def split_sessions(
    user_positions: np.ndarray,
    epoch_seconds: np.ndarray,
    gap_seconds: float = SESSION_GAP_SECONDS,
) -> tuple[np.ndarray, np.ndarray]:
    """Order clicks by user and time and number their sessions (a new session after
    `gap_seconds` without a click). Returns (order, session number of each ordered click);
    sessions are numbered in the order of their last click, so a larger number is more recent."""
    order = np.lexsort((epoch_seconds, user_positions))
    users, times = user_positions[order], epoch_seconds[order]
    new_session = np.ones(len(order), dtype=bool)
    new_session[1:] = (users[1:] != users[:-1]) | (np.diff(times) > gap_seconds)
    session = np.cumsum(new_session) - 1
    if len(order) == 0:
        return order, session
    ends = np.zeros(session[-1] + 1)
    np.maximum.at(ends, session, times)
    recency_rank = np.empty(len(ends), np.int64)
    recency_rank[np.argsort(ends, kind="stable")] = np.arange(len(ends))
    return order, recency_rank[session]


def session_index(
    session_of_click: np.ndarray, items: np.ndarray, n_items: int, min_length: int = 2
) -> dict[str, np.ndarray]:
    """Index past sessions for session-kNN.

    Args:
        session_of_click: session number of every click (larger = more recent).
        items: clicked item of every click, in click order within each session.
        n_items: size of the item space.
        min_length: sessions with fewer distinct items cannot link items and are left out.
    Returns:
        the SESSION_ARRAYS, prefixed "sessions_".
    """
    session_of_click = np.asarray(session_of_click, np.int64)
    items = np.asarray(items, np.int64)
    step = np.arange(len(items))
    # Keep each item's last click in its session: sort by (session, item, step), take the last.
    order = np.lexsort((step, items, session_of_click))
    s, i, t = session_of_click[order], items[order], step[order]
    last = np.ones(len(s), dtype=bool)
    last[:-1] = (s[1:] != s[:-1]) | (i[1:] != i[:-1])
    s, i, t = s[last], i[last], t[last]
    # Back to click order within each session.
    order = np.lexsort((t, s))
    s, i = s[order], i[order]
    # Only the latest MAX_SESSION_LENGTH items of a session.
    _, first, sizes = np.unique(s, return_index=True, return_counts=True)
    rank_from_end = np.repeat(first + sizes, sizes) - np.arange(len(s))
    keep = rank_from_end <= MAX_SESSION_LENGTH
    s, i = s[keep], i[keep]
    sessions, sizes = np.unique(s, return_counts=True)
    long_enough = np.repeat(sizes >= min_length, sizes)
    s, i = s[long_enough], i[long_enough]
    # Renumber the kept sessions 0..n-1 (the order, oldest to newest, is unchanged).
    sessions, s = np.unique(s, return_inverse=True)
    sizes = np.bincount(s, minlength=len(sessions))
    session_indptr = np.zeros(len(sessions) + 1, np.int64)
    np.cumsum(sizes, out=session_indptr[1:])
    positions = np.arange(len(s)) - np.repeat(session_indptr[:-1], sizes) + 1
    # Inverted index: per item, its sessions in ascending (oldest first) order.
    by_item = np.lexsort((s, i))
    item_indptr = np.zeros(n_items + 1, np.int64)
    np.cumsum(np.bincount(i, minlength=n_items), out=item_indptr[1:])
    values = (
        session_indptr,
        i.astype(np.int32),
        item_indptr,
        s[by_item].astype(np.int32),
        positions[by_item].astype(np.int16 if MAX_SESSION_LENGTH < 2**15 else np.int32),
    )
    return {f"sessions_{name}": value for name, value in zip(SESSION_ARRAYS, values, strict=True)}
