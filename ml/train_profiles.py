"""Per-user profiles: time-decayed weights of main categories, sub-categories and search terms
over the recent window, from the global event log.

Stored as sorted user ids plus one CSR triplet per facet over a facet vocabulary, so a profile is a
binary search and two slices at request time.
"""

import numpy as np
import pandas as pd

from ml.neighbors import to_csr_triplet
from services.search import query_terms

FACETS = ("category", "sub_category", "term")


def build_profiles(
    events: pd.DataFrame, catalog: pd.DataFrame, now_epoch: float, half_life_days: float
) -> dict[str, np.ndarray]:
    """Args:
        events: user_id, event_type, product_id, query, epoch (seconds).
        catalog: id, main_category, sub_category.
        now_epoch: reference time; an event's weight is 0.5 ** (age / half_life).
    Returns:
        profile_user_ids and, per facet, profile_<facet>_vocabulary / _indptr / _indices / _scores.
    """
    weight = np.power(0.5, (now_epoch - events["epoch"].to_numpy()) / (half_life_days * 86400))
    events = events.assign(weight=weight)
    clicks = events[events["event_type"] == "product_click"].merge(
        catalog[["id", "main_category", "sub_category"]], left_on="product_id", right_on="id"
    )
    searches = events[events["event_type"] == "search_query"]
    terms = (
        searches.assign(term=searches["query"].map(query_terms))
        .explode("term")
        .dropna(subset=["term"])
    )
    facet_rows = {
        "category": clicks[["user_id", "main_category", "weight"]].set_axis(
            ["user_id", "value", "weight"], axis=1
        ),
        "sub_category": clicks[["user_id", "sub_category", "weight"]].set_axis(
            ["user_id", "value", "weight"], axis=1
        ),
        "term": terms[["user_id", "term", "weight"]].set_axis(
            ["user_id", "value", "weight"], axis=1
        ),
    }
    user_ids = np.array(sorted(set(events["user_id"])), dtype=str)
    arrays: dict[str, np.ndarray] = {"profile_user_ids": user_ids}
    for facet, rows in facet_rows.items():
        vocabulary = np.array(sorted(set(rows["value"])), dtype=str)
        summed = rows.groupby(["user_id", "value"], sort=True)["weight"].sum()
        per_user = {user: group for user, group in summed.groupby(level=0)}
        columns, scores = [], []
        for user in user_ids:
            group = per_user.get(user)
            if group is None:
                columns.append(np.zeros(0, np.int32))
                scores.append(np.zeros(0, np.float32))
                continue
            values = group.index.get_level_values(1).to_numpy(dtype=str)
            columns.append(np.searchsorted(vocabulary, values).astype(np.int32))
            scores.append(group.to_numpy(dtype=np.float32))
        arrays[f"profile_{facet}_vocabulary"] = vocabulary
        arrays |= {f"profile_{facet}_{k}": v for k, v in to_csr_triplet(columns, scores).items()}
    return arrays
