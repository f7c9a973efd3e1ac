"""EASE on a small log with a planted pattern: users who click 1 also click 2."""

import numpy as np
import scipy.sparse as sp

from ml.train_ease import ease_neighbors, fit_ease


def test_ease_learns_the_planted_item_pair_and_leaves_unseen_items_out():
    rows, cols = [], []
    for user in range(40):
        items = [1, 2] if user < 20 else [3, 4 + user % 3]
        rows += [user] * len(items)
        cols += items
    matrix = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(40, 10))
    model = fit_ease(matrix, l2=1.0)
    assert 0 not in model.items  # never clicked: not modelled
    items, scores = model.scores(np.array([1]))
    assert items[0] == 2 and scores[0] > 0
    triplet = ease_neighbors(model, n_items=10, k=3)
    of = lambda i: triplet["indices"][triplet["indptr"][i] : triplet["indptr"][i + 1]].tolist()  # noqa: E731
    assert of(1)[0] == 2 and of(2)[0] == 1
    assert of(0) == [] and 1 not in of(3)
    # Only the most clicked items are modelled when the cap is below the catalog.
    capped = fit_ease(matrix, l2=1.0, max_items=2)
    assert len(capped.items) == 2 and set(capped.items) <= {1, 2, 3}  # 20 clicks each
