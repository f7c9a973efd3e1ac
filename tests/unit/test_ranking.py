"""The learned ranker's pieces: features, save -> load round trip, load order of native libs."""

import subprocess
import sys

import numpy as np

from ml.train_ranker import RankerExamples, fit_ranker
from services.ranking import (
    FEATURES,
    NO_RANK,
    Ranker,
    compile_ranker,
    compiled_ranker_file,
    feature_rows,
    ranker_files,
)


def _planted_ranker(seed: int, column: str = "coclick_score"):
    """A ranker trained on users whose click is the candidate with the top `column`."""
    rng = np.random.default_rng(seed)
    examples = RankerExamples(users=120)
    at = FEATURES.index(column)
    for _ in range(120):
        features = rng.random((40, len(FEATURES)))
        label = np.zeros(40, np.float32)
        label[int(np.argmax(features[:, at]))] = 1
        examples.features.append(features)
        examples.labels.append(label)
    return fit_ranker(examples)


def test_ranker_learns_a_planted_feature_and_round_trips(tmp_path):
    result = _planted_ranker(3)
    assert result.booster is not None and result.users == 120
    path = tmp_path / "ranker.txt"
    result.booster.save_model(str(path))
    ranker = Ranker(path)
    rng = np.random.default_rng(4)
    column = FEATURES.index("coclick_score")
    found = 0
    for _ in range(20):  # new users: the one with the top co-click score comes first (15 seen)
        features = rng.random((40, len(FEATURES)))
        found += int(np.argmax(ranker.score(features))) == int(np.argmax(features[:, column]))
    assert found >= 12  # by chance: 0.5


def _rows_with_special_values(rows: int) -> np.ndarray:
    rng = np.random.default_rng(9)
    features = rng.random((rows, len(FEATURES)))
    kind = rng.random(features.shape)
    features[kind < 0.1] = np.nan
    features[(kind >= 0.1) & (kind < 0.2)] = NO_RANK
    return features


def test_compiled_ranker_scores_as_lightgbm_does(tmp_path):
    path = tmp_path / "ranker.txt"
    _planted_ranker(5).booster.save_model(str(path))
    compiled = compile_ranker(path)
    assert compiled is not None and compiled == compiled_ranker_file(path)
    assert set(ranker_files(path)) == {"ranker.txt", compiled.name}
    for ranker in (Ranker(path), _without_file(path)):  # the file training wrote, or compiled here
        assert ranker.compiled is not None
        features = _rows_with_special_values(500)
        expected = ranker.booster.predict(features, num_threads=1)
        np.testing.assert_allclose(ranker.score(features), expected, rtol=0, atol=1e-12)


def _without_file(path):
    compiled_ranker_file(path).unlink()
    return Ranker(path)


def test_a_compiled_file_of_another_model_is_not_used(tmp_path):
    # A stale or foreign file beside the model: LightGBM scores, not the wrong trees.
    other = tmp_path / "other" / "ranker.txt"
    other.parent.mkdir()
    _planted_ranker(6, "cf_score").booster.save_model(str(other))
    path = tmp_path / "ranker.txt"
    _planted_ranker(7).booster.save_model(str(path))
    compile_ranker(other).rename(compiled_ranker_file(path))
    ranker = Ranker(path)
    assert ranker.compiled is None
    features = _rows_with_special_values(50)
    np.testing.assert_array_equal(ranker.score(features), ranker.booster.predict(features))


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
