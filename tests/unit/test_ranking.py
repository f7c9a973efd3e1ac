"""The learned ranker's pieces: features, save -> load round trip, load order of native libs."""

import subprocess
import sys

import numpy as np

from ml.train_ranker import RankerExamples, fit_ranker
from services.ranking import FEATURES, Ranker


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
