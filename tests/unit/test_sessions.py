"""Session splitting, the session index, co-click pair counting and session-kNN on small logs
with known answers."""

import numpy as np

from ml.train_coclick import co_click_rules
from ml.train_sessions import session_index, split_sessions
from services.sessions import SessionIndex, SessionKnnParams, last_occurrences, session_knn_scores


def _index(sessions: list[list[int]], n_items: int) -> dict[str, np.ndarray]:
    session_of_click = np.repeat(np.arange(len(sessions)), [len(s) for s in sessions])
    return session_index(session_of_click, np.concatenate(sessions), n_items)


def test_sessions_split_on_gap_and_are_numbered_by_recency():
    users = np.array([0, 0, 0, 0, 1, 1])
    times = np.array([0, 60, 10_000, 10_060, 5_000, 5_030], dtype=float)
    order, session = split_sessions(users, times)
    by_click = dict(zip(order.tolist(), session.tolist(), strict=True))
    assert by_click[0] == by_click[1] != by_click[2] == by_click[3]  # 30-minute gap splits
    # Ends at 60 s, 5,030 s and 10,060 s: numbered oldest to newest.
    assert (by_click[0], by_click[4], by_click[2]) == (0, 1, 2)


def test_session_index_keeps_last_click_of_each_item_and_drops_single_item_sessions():
    arrays = _index([[1, 2, 1, 3], [4], [2, 3]], n_items=5)
    indptr, items = arrays["sessions_session_indptr"], arrays["sessions_session_items"]
    assert len(indptr) == 3  # the one-item session cannot link items
    assert items[indptr[0] : indptr[1]].tolist() == [2, 1, 3]
    item_indptr = arrays["sessions_item_indptr"]
    sessions_of_3 = arrays["sessions_item_sessions"][item_indptr[3] : item_indptr[4]]
    positions_of_3 = arrays["sessions_item_positions"][item_indptr[3] : item_indptr[4]]
    assert sessions_of_3.tolist() == [0, 1] and positions_of_3.tolist() == [3, 2]


def test_last_occurrences():
    assert last_occurrences(np.array([5, 6, 5, 7])).tolist() == [6, 5, 7]


def test_co_click_counts_pairs_with_an_absolute_session_threshold():
    # 1 and 2 together in three sessions (a planted pair), 1 and 3 once.
    arrays = _index([[1, 2], [2, 1], [1, 2, 4], [1, 3], [4, 5]], n_items=6)

    def rules_with(min_sessions: int):
        triplet, count = co_click_rules(
            arrays["sessions_session_indptr"],
            arrays["sessions_session_items"],
            6,
            min_sessions=min_sessions,
            min_confidence=0.0,
            min_lift=0.0,
        )
        indptr, indices = triplet["indptr"], triplet["indices"]
        return (lambda item: indices[indptr[item] : indptr[item + 1]].tolist()), count

    of, count = rules_with(2)
    assert of(1) == [2] and of(2) == [1]  # 1-3 and 1-4 seen once only
    assert of(3) == [] and count == 2
    loose, _ = rules_with(1)
    assert 3 in loose(1)


def test_session_knn_finds_the_planted_neighbour_session():
    # Past sessions: the planted one (10, 11, 12, 13) matches the current visit (10, 11) best
    # and goes on to 12 then 13; noise sessions share only one item each.
    sessions = [[10, 11, 12, 13], [10, 20], [11, 21], [30, 31], [10, 22]]
    index = SessionIndex.from_arrays(_index(sessions, n_items=40))
    items, scores = session_knn_scores(index, np.array([10, 11]), SessionKnnParams(neighbors=10))
    ranked = [i for i in items.tolist() if i not in (10, 11)]
    assert ranked[0] == 12  # the planted session's next click
    assert 13 in ranked
    assert 30 not in items.tolist() and 31 not in items.tolist()
    assert np.all(np.diff(scores) <= 0)


def test_session_knn_weighs_the_latest_click_most():
    sessions = [[1, 5], [2, 6]]
    index = SessionIndex.from_arrays(_index(sessions, n_items=10))
    latest_2, _ = session_knn_scores(index, np.array([1, 2]))
    latest_1, _ = session_knn_scores(index, np.array([2, 1]))
    assert latest_2.tolist().index(6) < latest_2.tolist().index(5)
    assert latest_1.tolist().index(5) < latest_1.tolist().index(6)


def test_session_knn_unknown_or_empty_session_gives_nothing():
    index = SessionIndex.from_arrays(_index([[1, 2]], n_items=3))
    assert len(session_knn_scores(index, np.array([], np.int64))[0]) == 0
    assert len(session_knn_scores(index, np.array([7]))[0]) == 0
