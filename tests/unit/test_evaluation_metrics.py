"""Ranking metrics of ml.evaluate on hand-computed examples."""

import math

import numpy as np
import pandas as pd
import pytest

from ml.evaluate import (
    hit_rate,
    intra_list_diversity,
    ndcg,
    novelty,
    reciprocal_rank,
    temporal_split,
)


def test_hit_rate_mrr_and_ndcg_by_hand():
    ranked = [7, 3, 9, 1]
    relevant = {9, 1, 42}
    assert hit_rate(ranked, relevant) == 1.0
    assert hit_rate(ranked, {42}) == 0.0
    assert hit_rate(ranked, {1}, k=3) == 0.0  # rank 4 is outside the top 3
    assert reciprocal_rank(ranked, relevant) == pytest.approx(1 / 3)
    # Hits at ranks 3 and 4: DCG = 1/log2(4) + 1/log2(5); ideal: 3 relevant at ranks 1..3.
    dcg = 1 / math.log2(4) + 1 / math.log2(5)
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg(ranked, relevant) == pytest.approx(dcg / ideal)
    assert ndcg([9, 1, 42], relevant) == pytest.approx(1.0)
    assert ndcg([], relevant) == 0.0


def test_intra_list_diversity_is_the_share_of_pairs_in_different_categories():
    assert intra_list_diversity(["a", "a", "a"]) == 0.0
    assert intra_list_diversity(["a", "b", "c"]) == 1.0
    # a, a, b: pairs (a,a) same, (a,b) x2 different -> 2 of 3 pairs differ
    assert intra_list_diversity(["a", "a", "b"]) == pytest.approx(2 / 3)
    assert intra_list_diversity(["a"]) == 0.0


def test_novelty_is_mean_self_information():
    share = np.array([0.5, 0.25, 0.125])
    assert novelty([0, 2], share) == pytest.approx((1 + 3) / 2)
    assert novelty([], share) == 0.0


def test_temporal_split_cuts_at_the_last_days():
    day = 86400.0
    events = pd.DataFrame({"epoch": [0, 5 * day, 8 * day, 10 * day], "user_id": list("abcd")})
    split = temporal_split(events, test_days=3)
    assert split.cutoff.timestamp() == 7 * day
    assert split.train["user_id"].tolist() == ["a", "b"]
    assert split.test["user_id"].tolist() == ["c", "d"]
