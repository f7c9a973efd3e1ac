"""hybrid_merge and diversity sampling: pure functions, no HTTP, no database."""

import random

import numpy as np

from services.recommender import (
    Candidate,
    Reason,
    Share,
    add_candidate,
    compose,
    diverse_candidates,
    hybrid_merge,
    normalise,
    under_represented_categories,
)


def _source(scores: dict[int, float], signal: str) -> dict[int, Candidate]:
    source = {}
    for position, score in scores.items():
        add_candidate(source, position, score, Reason(signal, None, signal))
    return source


def test_normalise_scales_to_one():
    normalised = normalise(_source({1: 10.0, 2: 5.0}, "a"))
    assert normalised[1].score == 1.0 and normalised[2].score == 0.5
    assert normalise({}) == {}


def test_sources_are_normalised_before_weighting():
    # Raw scales differ 1000x; after normalisation the weights alone decide.
    big = _source({1: 1000.0}, "big")
    small = _source({2: 1.0}, "small")
    ranked = hybrid_merge({"big": big, "small": small}, {"big": 0.4, "small": 0.6})
    assert [c.position for c in ranked] == [2, 1]
    assert [round(c.score, 6) for c in ranked] == [0.6, 0.4]


def test_zero_weight_source_contributes_nothing():
    ranked = hybrid_merge(
        {"a": _source({1: 1.0}, "a"), "b": _source({2: 5.0, 1: 5.0}, "b")}, {"a": 1.0, "b": 0.0}
    )
    assert [c.position for c in ranked] == [1]
    assert [r.signal for r in ranked[0].reasons] == ["a"]


def test_dedupe_keeps_best_score_and_merges_reasons():
    a = _source({1: 1.0, 2: 0.5}, "a")
    b = _source({2: 1.0}, "b")
    ranked = hybrid_merge({"a": a, "b": b}, {"a": 0.5, "b": 0.4})
    by_position = {c.position: c for c in ranked}
    assert len(ranked) == 2
    assert by_position[2].score == max(0.5 * 0.5, 0.4 * 1.0)
    assert {r.signal for r in by_position[2].reasons} == {"a", "b"}


def test_accumulating_evidence_within_a_source():
    source = {}
    add_candidate(source, 7, 0.5, Reason("similar", "A", "similar to A"))
    add_candidate(source, 7, 0.25, Reason("similar", "B", "similar to B"))
    assert source[7].score == 0.75 and len(source[7].reasons) == 2


def test_exclude_keep_and_boost():
    source = _source({1: 1.0, 2: 0.9, 3: 0.8, 4: 0.7}, "a")
    boost = np.array([0, 0, 0, 0, 1.0])
    ranked = hybrid_merge(
        {"a": source}, {"a": 1.0}, boost=boost, boost_weight=0.5, exclude={1}, keep=lambda p: p != 3
    )
    assert [c.position for c in ranked] == [4, 2]


def test_under_represented_categories_first():
    order = under_represented_categories(["shoes", "shoes", "audio"], ["audio", "shoes", "toys"])
    assert order == ["toys", "audio", "shoes"]


def test_diversity_slots_come_from_under_represented_categories():
    top = {
        "shoes": np.arange(0, 10),
        "audio": np.arange(10, 20),
        "toys": np.arange(20, 30),
        "books": np.arange(30, 40),
    }
    history = ["shoes"] * 5 + ["audio"] * 2
    picked = diverse_candidates(history, top, 8, random.Random(1))
    categories = {r.anchor for c in picked.values() for r in c.reasons}
    assert categories <= {"toys", "books"}
    assert all(r.signal == "explore" for c in picked.values() for r in c.reasons)


def test_diversity_is_deterministic_with_a_seed():
    top = {f"c{n}": np.arange(n * 10, n * 10 + 10) for n in range(6)}
    first = diverse_candidates(["c0"], top, 5, random.Random(42))
    again = diverse_candidates(["c0"], top, 5, random.Random(42))
    assert list(first) == list(again)
    assert [c.score for c in first.values()] == [c.score for c in again.values()]


def test_under_represented_accepts_profile_weights():
    order = under_represented_categories({"audio": 2.5, "shoes": 0.1}, ["audio", "shoes", "toys"])
    assert order == ["toys", "shoes", "audio"]


def test_compose_caps_a_sub_category_and_gives_each_share_its_slots():
    others = [f"sub{i}" for i in range(10)]
    sub_category = np.array(["phones"] * 8 + others + ["toys"] * 2, dtype=object)
    groups = np.arange(20)
    ranked = [Candidate(p, 1.0 - p / 100) for p in range(18)]  # 8 phones, then 10 others
    diverse = [Candidate(18, 1.0), Candidate(19, 1.0)]
    shares = [Share("ranked", 0.8, ranked), Share("explore", 0.2, diverse)]
    page = compose(
        shares, n=10, product_group=groups, sub_category=sub_category, max_per_sub_category=3
    )
    first = [c.position for c in page[:10]]
    assert sum(sub_category[p] == "phones" for p in first) == 3
    assert {18, 19} <= set(first) and first[0] != 18  # exploration, never the top slot
    assert len(page) == 11  # the page and one more: a next page exists
    whole = compose(
        shares, n=20, product_group=groups, sub_category=sub_category, max_per_sub_category=3
    )
    assert sorted(c.position for c in whole) == list(range(20))  # nothing lost, held back below
    assert first[:3] == [0, 1, 2] or first[:2] == [0, 1]
    # The cap holds per block of ten: the held-back phones lead the next block.
    longer = compose(
        shares, n=20, product_group=groups, sub_category=sub_category, max_per_sub_category=3
    )
    assert [c.position for c in longer[:10]] == first  # pages join


def test_compose_shows_a_product_once_and_follows_the_shares():
    sub_category = np.array([f"s{i}" for i in range(40)], dtype=object)
    groups = np.arange(40) // 2  # listings 2k and 2k+1 are one product
    visit = [Candidate(p, 1.0) for p in range(0, 20)]
    ranked = [Candidate(p, 1.0) for p in range(39, 19, -1)] + [Candidate(1, 1.0)]
    page = compose(
        [Share("clicked", 0.5, visit), Share("ranked", 0.5, ranked)],
        n=10,
        product_group=groups,
        sub_category=sub_category,
        max_per_sub_category=4,
        exclude_groups={0},  # listing 0's product was clicked already
    )[:10]
    assert len({groups[c.position] for c in page}) == 10
    assert 0 not in {groups[c.position] for c in page}
    assert sum(c.position < 20 for c in page) == 5  # half from the visit
    for n in range(1, 30):  # any page length: the same order
        longer = compose(
            [Share("clicked", 0.5, visit), Share("ranked", 0.5, ranked)],
            n=n,
            product_group=groups,
            sub_category=sub_category,
            max_per_sub_category=4,
        )
        shorter = compose(
            [Share("clicked", 0.5, visit), Share("ranked", 0.5, ranked)],
            n=n + 7,
            product_group=groups,
            sub_category=sub_category,
            max_per_sub_category=4,
        )
        assert [c.position for c in longer[:n]] == [c.position for c in shorter[:n]]
