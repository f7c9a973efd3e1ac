"""The learned ranker's pieces: features, save -> load round trip, load order of native libs."""

import subprocess
import sys

import numpy as np

from ml.train_ranker import RankerExamples, fit_ranker
from services.ranking import FEATURES, Ranker, feature_rows


def test_ranker_learns_a_planted_feature_and_round_trips(tmp_path):
    rng = np.random.default_rng(3)
    examples = RankerExamples(users=120)
    column = FEATURES.index("coclick_score")
    for _ in range(120):
        features = rng.random((40, len(FEATURES)))
        label = np.zeros(40, np.float32)
        label[int(np.argmax(features[:, column]))] = 1  # the clicked one: the top co-click score
        examples.features.append(features)
        examples.labels.append(label)
    result = fit_ranker(examples)
    assert result.booster is not None and result.users == 120
    path = tmp_path / "ranker.txt"
    result.booster.save_model(str(path))
    ranker = Ranker(path)
    features = rng.random((40, len(FEATURES)))
    predicted = ranker.booster.predict(features)
    assert int(np.argmax(predicted)) == int(np.argmax(features[:, column]))


def test_too_few_users_means_no_ranker():
    examples = RankerExamples(users=10)
    examples.features.append(np.zeros((3, len(FEATURES))))
    examples.labels.append(np.array([1, 0, 0], np.float32))
    result = fit_ranker(examples)
    assert result.booster is None and "need" in result.reason


def test_lightgbm_works_after_the_vector_index_is_imported():
    # usearch loaded before lightgbm breaks lightgbm's number formatting: services loads lightgbm
    # first. A fresh interpreter, so this test's own import order does not hide it.
    code = (
        "import services.vector_index, lightgbm, numpy as np; "
        "lightgbm.Dataset(np.random.rand(20, 3), np.zeros(20)).construct()"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_feature_rows_give_each_source_its_normalised_score_and_rank():
    import pandas as pd

    from services.catalog import Catalog
    from services.ranking import user_history
    from services.sources import ScoredItems

    frame = pd.DataFrame(
        {
            "id": [f"P{i:09d}" for i in range(5)],
            "name": ["acme phone", "acme case", "zeta phone", "zeta case", "acme tv"],
            "main_category": ["tech"] * 5,
            "sub_category": ["phones", "cases", "phones", "cases", "tvs"],
            "image": "",
            "link": "",
            "ratings": [4.0, np.nan, 3.0, 5.0, 4.5],
            "no_of_ratings": [10.0, np.nan, 5.0, 1.0, 100.0],
            "discount_price": [100.0, 10.0, np.nan, 12.0, 500.0],
            "actual_price": [120.0, 20.0, 90.0, 12.0, 600.0],
            "discount_ratio": [0.167, 0.5, np.nan, 0.0, 0.167],
        }
    )
    catalog = Catalog(frame, np.linspace(0, 1, 5).astype(np.float32))
    coclick = ScoredItems(
        np.array([1, 3]), np.array([4.0, 2.0]), np.array([0, 1]), ["P1", "P2"], "co_click", "{}"
    )
    session = ScoredItems(
        np.array([0, 3]), np.array([1.0, 0.5]), np.array([0, 0]), ["P0"], "session", "{}"
    )
    history = user_history(catalog, [0])  # product 0 was clicked: no row for it
    found = feature_rows(
        catalog, {"coclick": coclick, "session": session}, history, np.zeros(5), None
    )
    features = found.features
    candidates = found.candidates(np.arange(len(found)), np.zeros(len(found)))
    rows = {c.position: features[i] for i, c in enumerate(candidates)}
    assert set(rows) == {1, 3}
    column = {name: FEATURES.index(name) for name in FEATURES}
    assert rows[1][column["coclick_score"]] == 1.0 and rows[1][column["coclick_rank"]] == 0
    assert rows[3][column["coclick_score"]] == 0.5 and rows[3][column["coclick_rank"]] == 1
    # In session, the seen product 0 still counts for the scale and the rank of the others.
    assert rows[3][column["session_score"]] == 0.5 and rows[3][column["session_rank"]] == 1
    assert rows[1][column["session_rank"]] == 1000.0 and rows[1][column["sources"]] == 1
    assert rows[3][column["sources"]] == 2
    assert rows[3][column["same_sub_category_as_last"]] == 0.0
    assert rows[3][column["category_share"]] == 1.0
    # Every source that found a candidate gives a reason, naming its strongest anchor.
    reasons = {c.position: [(r.signal, r.anchor) for r in c.reasons] for c in candidates}
    assert reasons[3] == [("co_click", "P2"), ("session", "P0")]
    assert reasons[1] == [("co_click", "P1")]
    # With one nomination per source: co-click's best (1) and session's best unseen (3); the
    # seen product 0 takes no slot, and the features of a nominee are the same.
    nominated = feature_rows(
        catalog,
        {"coclick": coclick, "session": session},
        history,
        np.zeros(5),
        None,
        per_source=1,
    )
    assert sorted(nominated.positions.tolist()) == [1, 3]
    np.testing.assert_array_equal(nominated.features, features)
    only_coclick = feature_rows(
        catalog, {"coclick": coclick}, history, np.zeros(5), None, per_source=1
    )
    assert only_coclick.positions.tolist() == [1]
    assert only_coclick.features[0][column["coclick_rank"]] == 0
