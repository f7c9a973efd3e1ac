"""The semantic path's weight in reciprocal rank fusion, and the searches it is learned from."""

import numpy as np
import pandas as pd

from ml.train_search_fusion import search_click_pairs
from services.search import LexicalHit, Retrieved, reciprocal_rank_fusion


def _top(retrieved: Retrieved, weight: float) -> list[int]:
    fused = reciprocal_rank_fusion(retrieved, k=60, semantic_weight=weight)
    return fused.positions[np.lexsort((fused.positions, -fused.scores))].tolist()


def test_the_semantic_weight_decides_between_the_paths_best_items():
    # Product 1 is lexical's best (a full match), product 2 semantic's best; product 3 both
    # found further down.
    retrieved = Retrieved(
        lexical=[LexicalHit(1, 5.0, ["usb cable"], 1.0), LexicalHit(3, 2.0, ["cable"], 0.5)],
        semantic=[(2, 0.9), (3, 0.8)],
    )
    assert _top(retrieved, 1.0)[:2] == [3, 1]  # found by both: first with equal weights
    assert _top(retrieved, 0.1) == [1, 3, 2]  # a small weight: the exact match leads
    assert _top(retrieved, 2.0)[:2] == [3, 2]  # a large weight: the semantic best before it
    fused = reciprocal_rank_fusion(retrieved, k=60, semantic_weight=0.1)
    assert fused.semantic.tolist() == [False, True, True]  # positions 1, 3, 2 in slot order


def test_search_click_pairs_are_a_search_then_the_same_users_click_within_a_session():
    minute = 60.0
    events = pd.DataFrame(
        [
            ("u1", "search_query", None, "cable", 0.0),
            ("u1", "product_click", "P1", None, 2 * minute),  # pairs with "cable"
            ("u1", "search_query", None, "lamp", 3 * minute),
            ("u1", "product_click", "P2", None, 3 * minute + 4 * 3600),  # a later session
            ("u2", "search_query", None, "mug", 10.0),  # followed by u3's click: no pair
            ("u3", "product_click", "P3", None, 20.0),
            ("u3", "search_query", None, "desk", 30.0),
            ("u3", "search_query", None, "chair", 40.0),  # a search, not a click, follows desk
            ("u3", "product_click", "P4", None, 50.0),
        ],
        columns=["user_id", "event_type", "product_id", "query", "epoch"],
    )
    pairs = search_click_pairs(events.sample(frac=1.0, random_state=3))  # any input order
    assert sorted(zip(pairs["query"], pairs["clicked"], strict=True)) == [
        ("cable", "P1"),
        ("chair", "P4"),
    ]
    assert search_click_pairs(events.iloc[:0]).empty
