"""The semantic path's weight in search fusion, learned from the log's searches that led to a click.

Reciprocal rank fusion adds 1 / (k + rank) per retrieval path; with equal weights the semantic
path can push down exact lexical matches. Whether it helps depends on the shop's queries (typed
product names favour lexical matching, paraphrases favour the embeddings), so training measures
it: for each search followed by a click in the same session, whether the clicked product is in
the fused top 10 under each candidate weight, and keeps the best. Few such searches (under
MIN_SEARCHES): the default weight 1.0, as before.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml.train_sessions import SESSION_GAP_SECONDS
from services.catalog import Catalog
from services.feeds import SearchSettings, retrieve
from services.models import ModelBundle
from services.search import reciprocal_rank_fusion

# Candidate semantic weights (lexical: 1). The smallest leaves the lexical order as it is (at
# k = 60 a semantic rank adds less than one lexical rank apart in the top 10) and orders only
# what words did not find: a shop whose shoppers type product words gets lexical search.
WEIGHTS = (0.01, 0.03, 0.1, 0.25, 0.5, 1.0, 2.0)
DEFAULT_WEIGHT = 1.0
MIN_SEARCHES = 100  # searches with a click below which the default is kept
MAX_SEARCHES = 5_000  # sampled beyond this: enough to tell the weights apart
TOP = 10


@dataclass
class FusionChoice:
    weight: float
    searches: int  # searches with a click the weights were compared on
    hit_rates: dict[float, float]  # weight -> share of those with the click in the top 10


def search_click_pairs(events: pd.DataFrame) -> pd.DataFrame:
    """Searches followed by the same user's click within a session gap: columns query and
    clicked (the product id). `events`: user_id, event_type, product_id, query, epoch."""
    ordered = events.sort_values(["user_id", "epoch"], kind="stable")
    following = ordered.shift(-1)
    pairs = ordered[
        (ordered["event_type"] == "search_query")
        & (following["event_type"] == "product_click")
        & (following["user_id"] == ordered["user_id"])
        & (following["epoch"] - ordered["epoch"] <= SESSION_GAP_SECONDS)
    ]
    # .loc, not assign(Series): on an empty frame assign would take the Series' whole index.
    return pd.DataFrame(
        {
            "query": pairs["query"].to_numpy(),
            "clicked": following.loc[pairs.index, "product_id"].to_numpy(),
        }
    )


def learn_semantic_weight(
    catalog: Catalog,
    bundle: ModelBundle,
    events: pd.DataFrame,
    settings: SearchSettings,
    seed: int = 0,
) -> FusionChoice:
    """The weight of WEIGHTS under which most searches with a click have it in the fused top
    10. `bundle`: the version being trained over `catalog`, with its vector index and query
    embeddings; only searches training embedded count (serving fuses with their embedding)."""
    pairs = search_click_pairs(events)
    if bundle.vector_index is None or not len(pairs):
        return FusionChoice(DEFAULT_WEIGHT, 0, {})
    # As serving retrieves them: typos corrected (ModelBundle.searched).
    pairs = pairs.assign(query=[bundle.searched(q).text for q in pairs["query"].tolist()])
    pairs = pairs[pairs["query"].isin(bundle.query_rows)]
    pairs = pairs[pairs["clicked"].isin(catalog.position_of)]
    if len(pairs) > MAX_SEARCHES:
        pairs = pairs.sample(MAX_SEARCHES, random_state=seed)
    if len(pairs) < MIN_SEARCHES:
        return FusionChoice(DEFAULT_WEIGHT, len(pairs), {})
    hits = dict.fromkeys(WEIGHTS, 0)
    retrieved = {}
    for query, clicked in zip(pairs["query"].tolist(), pairs["clicked"].tolist(), strict=True):
        if query not in retrieved:
            vector = bundle.cached_query_vector(query)
            retrieved[query] = retrieve(bundle, bundle.synonyms.expand(query), vector, settings)
        target = catalog.position_of[clicked]
        for weight in WEIGHTS:
            fused = reciprocal_rank_fusion(retrieved[query], settings.rrf_k, weight)
            top = np.lexsort((fused.positions, -fused.scores))[:TOP]
            hits[weight] += bool((fused.positions[top] == target).any())
    rates = {weight: hit / len(pairs) for weight, hit in hits.items()}
    # The default unless another weight does strictly better.
    best = max(WEIGHTS, key=lambda w: (rates[w], w == DEFAULT_WEIGHT))
    return FusionChoice(best, len(pairs), rates)
