"""Training prepares the lexical matches of the log's frequent searches; serving reads them
instead of matching again, and must find exactly what it would have computed. Search results
are cached per query for the bundle that found them only."""

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from config.settings import Settings
from ml.train import past_query_arrays, train_arrays
from services.catalog import Catalog
from services.feeds import SearchSettings, _fused, past_query_results
from services.models import bundle_from_arrays
from services.synonyms import Synonyms

NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def content(catalog_csv) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The test catalog and its content model's arrays (TF-IDF: what lexical search reads)."""
    catalog = pd.read_csv(catalog_csv, dtype={"id": str})
    no_clicks = pd.DataFrame(columns=["user_id", "event_type", "product_id", "query", "epoch"])
    settings = Settings(database_url="postgresql://unused")
    arrays, _, _ = train_arrays(catalog, no_clicks, settings, NOW, models=("content",))
    return catalog, arrays


def _bundle(catalog: pd.DataFrame, arrays: dict, leave_out: int | None = None):
    """A bundle of `arrays` over the catalog, without the product at row `leave_out`."""
    position_of = {pid: row for row, pid in enumerate(catalog["id"]) if row != leave_out}
    return bundle_from_arrays(
        arrays,
        len(catalog),
        position_of,
        version="same-version",
        folder=Path("."),
        created_at=NOW,
        synonyms=Synonyms({}),
    )


def test_prepared_past_queries_equal_what_serving_computes(content):
    catalog, arrays = content
    words = catalog["name"].str.split().str[1].str.lower().tolist()
    queries = [words[0]] * 3 + [f"{words[1]} {words[2]}"] * 2 + [words[3]]
    events = pd.DataFrame(
        {
            "user_id": "u1",
            "event_type": ["search_query"] * len(queries) + ["product_click"],
            "product_id": [None] * len(queries) + [catalog["id"][0]],
            "query": [*queries, None],
            "epoch": NOW.timestamp(),
        }
    )
    prepared = past_query_arrays(Catalog.from_frame(catalog), arrays, events, limit=2)
    # The most frequent first, at most `limit`.
    assert prepared["past_query_texts"].tolist() == [words[0], f"{words[1]} {words[2]}"]

    bundle = _bundle(catalog, arrays | prepared)
    matched = 0
    for query in prepared["past_query_texts"].tolist():
        positions, scores = bundle.past_query_matches(query)
        expected_positions, expected_scores = past_query_results(bundle, query)
        np.testing.assert_array_equal(positions, expected_positions)
        np.testing.assert_array_equal(scores, expected_scores)
        matched += len(positions) > 0
    assert matched == 2
    assert bundle.past_query_matches(words[3]) is None  # not among the 2 prepared

    # A product gone from the serving catalog drops out of the prepared lists.
    first = int(bundle.past_query_matches(words[0])[0][0])
    smaller = _bundle(catalog, arrays | prepared, leave_out=first)
    assert first not in smaller.past_query_matches(words[0])[0]


def test_search_retrieval_is_reused_for_the_same_bundle_only(content):
    catalog, arrays = content
    served = _bundle(catalog, arrays)
    search = SearchSettings(
        candidates=20, rrf_k=60, min_similarity=0.3, personal_boost=0.1, category_boost=1.0
    )
    query = catalog["name"][0].split()[1].lower()
    first = _fused(served, served.searched(query), None, search)
    assert len(first) and _fused(served, served.searched(query), None, search) is first
    # The same version over another catalog (products gone): searched again, not reused.
    top = int(first.positions[np.argmax(first.scores)])
    smaller = _bundle(catalog, arrays, leave_out=top)
    again = _fused(smaller, smaller.searched(query), None, search)
    assert again is not first and top not in again.positions
