"""User profiles: decayed facet weights, checked by hand."""

import numpy as np
import pandas as pd
import pytest

from ml.train_profiles import build_profiles

DAY = 86400.0


def test_profile_weights_decay_with_age():
    catalog = pd.DataFrame(
        {
            "id": ["P000000001", "P000000002"],
            "main_category": ["shoes", "audio"],
            "sub_category": ["Sports Shoes", "Headphones"],
        }
    )
    now = 100 * DAY
    events = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u2"],
            "event_type": ["product_click", "product_click", "search_query", "product_click"],
            "product_id": ["P000000001", "P000000002", "", "P000000001"],
            "query": ["", "", "Running Shoes", ""],
            "epoch": [now, now - 14 * DAY, now - 14 * DAY, now],
        }
    )
    arrays = build_profiles(events, catalog, now, half_life_days=14)
    assert list(arrays["profile_user_ids"]) == ["u1", "u2"]

    def facet(name: str, user: int) -> dict[str, float]:
        indptr = arrays[f"profile_{name}_indptr"]
        vocabulary = arrays[f"profile_{name}_vocabulary"]
        span = slice(indptr[user], indptr[user + 1])
        return dict(
            zip(
                [str(vocabulary[i]) for i in arrays[f"profile_{name}_indices"][span]],
                arrays[f"profile_{name}_scores"][span].tolist(),
                strict=True,
            )
        )

    assert facet("category", 0) == pytest.approx({"shoes": 1.0, "audio": 0.5})
    assert facet("sub_category", 0) == pytest.approx({"Sports Shoes": 1.0, "Headphones": 0.5})
    assert facet("term", 0) == pytest.approx({"running": 0.5, "shoes": 0.5})
    assert facet("category", 1) == pytest.approx({"shoes": 1.0})
    assert facet("term", 1) == {}
    assert arrays["profile_term_indptr"].dtype == np.int64
