"""Candidate sources as arrays: neighbours of several anchors gathered at once, summed, with
the strongest anchor as the reason."""

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from services.models import bundle_from_arrays
from services.sources import aggregate, neighbor_items
from services.synonyms import Synonyms


def _bundle(neighbours: dict[int, list[tuple[int, float]]], product_ids: list[str], catalog):
    """A bundle whose co-click model has the given neighbour lists (artifact positions)."""
    indptr, indices, scores = [0], [], []
    for row in range(len(product_ids)):
        for position, score in neighbours.get(row, []):
            indices.append(position)
            scores.append(score)
        indptr.append(len(indices))
    arrays = {
        "product_ids": np.array(product_ids),
        "tfidf_vocabulary": np.array(["x"]),
        "coclick_indptr": np.array(indptr, np.int64),
        "coclick_indices": np.array(indices, np.int64),
        "coclick_scores": np.array(scores, np.float32),
    }
    position_of = {pid: i for i, pid in enumerate(catalog)}
    return bundle_from_arrays(
        arrays,
        len(catalog),
        position_of,
        version="t",
        folder=Path("."),
        created_at=datetime.now(UTC),
        synonyms=Synonyms({}),
    )


def test_aggregate_sums_per_product_and_keeps_the_strongest_anchor():
    items = aggregate(
        np.array([7, 3, 7, 3]),
        np.array([0.2, 0.5, 0.9, 0.5]),
        np.array([0, 0, 1, 1]),
        ["A", "B"],
        "co_click",
        "often clicked with {}",
    )
    assert items.positions.tolist() == [3, 7]
    assert np.allclose(items.scores, [1.0, 1.1])
    # Product 7: B gave 0.9 against A's 0.2. Product 3: a tie, the first anchor wins.
    assert [items.reason(row).anchor for row in range(2)] == ["A", "B"]
    assert items.reason(1).text == "often clicked with B"


def test_neighbours_of_several_anchors_scaled_by_each_anchor_and_its_weight():
    catalog = ["P0", "P1", "P2", "P3", "P4"]
    # Trained on P0..P4 plus a product gone from the catalog since (artifact row 5).
    bundle = _bundle(
        {0: [(1, 0.8), (2, 0.4), (5, 0.3)], 3: [(2, 1.0), (4, 0.5)]},
        [*catalog, "GONE"],
        catalog,
    )
    items = neighbor_items(bundle, "coclick", np.array([0, 3]), np.array([1.0, 0.5]), ["P0", "P3"])
    scores = dict(zip(items.positions.tolist(), items.scores.tolist(), strict=True))
    # P1: 0.8 / 0.8 x 1; P2: 0.4 / 0.8 x 1 + 1.0 / 1.0 x 0.5; P4: 0.5 / 1.0 x 0.5.
    assert scores == {1: 1.0, 2: 1.0, 4: 0.25}
    anchors = {int(p): items.reason(row).anchor for row, p in enumerate(items.positions)}
    assert anchors == {1: "P0", 2: "P0", 4: "P3"}
    # At most `per_anchor` neighbours of each anchor.
    first_only = neighbor_items(
        bundle, "coclick", np.array([0, 3]), np.array([1.0, 1.0]), ["P0", "P3"], per_anchor=1
    )
    assert first_only.positions.tolist() == [1, 2]


def test_an_anchor_without_neighbours_or_unknown_to_the_model_adds_nothing():
    catalog = ["P0", "P1", "P2"]
    bundle = _bundle({0: [(1, 1.0)]}, ["P0", "P1"], catalog)  # P2 is newer than the model
    items = neighbor_items(bundle, "coclick", np.array([1, 2]), np.array([1.0, 1.0]), ["a", "b"])
    assert len(items) == 0
