"""Prepared home rankings read back from their arrays as training packed them: the same
candidates, scores and reasons, and a product gone from the catalog left out without moving
any other candidate's reasons."""

from datetime import UTC, datetime, timedelta

import numpy as np

from services.home_rankings import (
    HomeRankings,
    PreparedRanking,
    PreparedUser,
    pack,
    read_shared_ranking,
    shared_ranking,
)
from services.recommender import Candidate, Reason


def _user(user_id: str, ranked: list[int], explore: list[int]) -> PreparedUser:
    def candidate(position: int, rank: int) -> Candidate:
        reasons = [
            Reason("similar", f"B0{position:08d}", f"Similar to B0{position:08d} you viewed"),
            Reason("trending", None, "Trending now"),
        ][: position % 3]  # none, one or two reasons
        return Candidate(position, 1.0 / (rank + 1), reasons)

    ranking = PreparedRanking(
        [candidate(p, r) for r, p in enumerate(ranked)],
        [candidate(p, 100 + r) for r, p in enumerate(explore)],
    )
    return PreparedUser(user_id, (3, 1, 0), 7, seen=[0, 1], ranking=ranking)


def _read(rankings: HomeRankings, to_catalog: np.ndarray, user_id: str) -> PreparedRanking:
    read = rankings.unread_ranking(to_catalog, user_id)
    read.give_reasons(read.ranked + read.explore)
    return read


def _as_tuples(candidates: list[Candidate]) -> list[tuple]:
    return [(c.position, c.score, c.reasons) for c in candidates]


def test_read_back_as_packed():
    users = [_user("b", [5, 9, 2, 7], [11, 3]), _user("a", [4, 8], [])]
    arrays = pack(users)
    slots = {user_id: row for row, user_id in enumerate(arrays["home_user_ids"].tolist())}
    rankings = HomeRankings(arrays, slots)
    identity = np.arange(20)
    for user in users:
        read = _read(rankings, identity, user.user_id)
        assert _as_tuples(read.ranked) == _as_tuples(user.ranking.ranked)
        assert _as_tuples(read.explore) == _as_tuples(user.ranking.explore)
        assert read.seen == [0, 1]
    # Reasons are given only to the candidates asked for, once.
    read = rankings.unread_ranking(identity, "b")
    read.give_reasons(read.ranked[:1])
    read.give_reasons(read.ranked[:1])
    assert read.ranked[0].reasons == users[0].ranking.ranked[0].reasons
    assert read.ranked[1].reasons == []


def test_a_product_gone_from_the_catalog_is_left_out():
    user = _user("b", [5, 9, 2, 7], [11, 3])
    arrays = pack([user])
    rankings = HomeRankings(arrays, {"b": 0})
    to_catalog = np.arange(20)
    to_catalog[[9, 11]] = -1  # one ranked product and one exploration pick are gone
    read = _read(rankings, to_catalog, "b")
    kept = [c for c in user.ranking.ranked if c.position not in (9, 11)]
    assert _as_tuples(read.ranked) == _as_tuples(kept)
    assert _as_tuples(read.explore) == _as_tuples(user.ranking.explore[1:])


def test_the_history_must_be_the_one_ranked():
    rankings = HomeRankings(pack([_user("b", [5], [])]), {"b": 0})
    identity = np.arange(20)
    # The fingerprint (3, 1, 0): three events, the newest 1 µs after the epoch, the oldest at it.
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    events = [{"timestamp": epoch + timedelta(microseconds=t)} for t in (1, 1, 0)]
    assert rankings.ranking(identity, "b", events) is not None
    assert rankings.ranking(identity, "b", events[:2]) is None
    assert rankings.ranking(identity, "nobody", events) is None


def test_a_shared_ranking_reads_back_in_another_catalog_order():
    ranking = _user("a", [5, 9, 2, 7], [11, 3]).ranking
    ids = np.array([f"B0{p:08d}" for p in range(12)], dtype=object)
    payload = shared_ranking(ranking, [3, 9], ids)
    # Another worker's catalog: the same products, each one position further (a product
    # imported since this one loaded, first by id).
    position_of = {product_id: p + 1 for p, product_id in enumerate(ids)}
    read = read_shared_ranking(payload, position_of)
    assert read.seen == [4, 10]
    page = read.ranked[:2] + read.explore[:1]
    read.give_reasons(page)
    page[0].reasons.append(Reason("explore", "toys", "explore toys"))  # added by the mixer
    read.give_reasons(page)  # a second call gives nothing twice
    assert _as_tuples(page) == [
        (6, 1.0, ranking.ranked[0].reasons + [Reason("explore", "toys", "explore toys")]),
        *[(p + 1, s, r) for p, s, r in _as_tuples(ranking.ranked[1:2] + ranking.explore[:1])],
    ]
    assert [c.reasons for c in read.ranked[2:]] == [[], []]  # off the page: not made
    read.give_reasons(read.ranked + read.explore)
    assert _as_tuples(read.explore) == [(p + 1, s, r) for p, s, r in _as_tuples(ranking.explore)]


def test_a_shared_ranking_this_catalog_cannot_read_is_ignored():
    ranking = _user("a", [5, 9], [3]).ranking
    ids = np.array([f"B0{p:08d}" for p in range(12)], dtype=object)
    payload = shared_ranking(ranking, [3], ids)
    without_nine = {product_id: p for p, product_id in enumerate(ids) if p != 9}
    assert read_shared_ranking(payload, without_nine) is None  # a product gone: compute again
    assert read_shared_ranking(b"not json", {}) is None
    assert read_shared_ranking(b"[99, 1, [], [], [], [], []]", {}) is None  # another form
    assert read_shared_ranking(b'{"form": 1}', {}) is None


def test_a_shared_ranking_keeps_the_lists_of_a_visit_in_progress():
    ranking = _user("a", [5, 9, 2], [11]).ranking
    ranking.visit = {
        "clicked": [Candidate(4, 0.9, [Reason("session", "B000000003", "after B000000003")])],
        "search": [Candidate(8, 0.5, [Reason("search", "mat", "matches 'mat'")])],
    }
    ranking.newest = datetime(2026, 12, 1, 10, 30, tzinfo=UTC)
    ids = np.array([f"B0{p:08d}" for p in range(12)], dtype=object)
    read = read_shared_ranking(shared_ranking(ranking, [3], ids), {i: p for p, i in enumerate(ids)})
    assert [c.position for c in read.ranked] == [5, 9, 2]
    assert [c.position for c in read.explore] == [11]
    assert {name: [c.position for c in found] for name, found in read.visit.items()} == {
        "clicked": [4],
        "search": [8],
    }
    read.give_reasons(read.visit["clicked"])
    assert read.visit["clicked"][0].reasons == ranking.visit["clicked"][0].reasons
    assert read.newest == ranking.newest
