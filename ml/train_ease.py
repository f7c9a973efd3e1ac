"""EASE (Steck 2019): a closed-form linear item-item model, B = I - P / diag(P) with
P = (XᵀX + λI)⁻¹, scoring a user's items as x_u B. A strong simple model of user histories: the
evaluation's baseline, and (its top weights per item) a candidate source of the home ranker.

Its cost is the dense n x n inverse: n = 10,000 items is 800 MB in float64 and seconds to a
minute on 2 cores; n = 550,000 would be 2.4 TB. So it is fitted on the EASE_MAX_ITEMS most
clicked items of the window only; the long tail beyond them is covered by item-CF, co-click and
session-kNN neighbour lists, whose cost grows with the clicks, not with items².
"""

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ml.neighbors import to_csr_triplet, top_k_per_row


@dataclass
class EaseModel:
    items: np.ndarray  # the modelled item ids (positions in the caller's item space)
    weights: np.ndarray  # len(items) x len(items), zero diagonal

    def scores(self, history: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(items, scores) for a user who clicked `history` (item ids), best first."""
        columns = np.flatnonzero(np.isin(self.items, history))
        if len(columns) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        scores = self.weights[columns].sum(axis=0)
        order = np.argsort(-scores, kind="stable")
        return self.items[order], scores[order]


def fit_ease(user_items: sp.csr_matrix, l2: float = 500.0, max_items: int = 10_000) -> EaseModel:
    """Fit on a binary users x items matrix (any weights are treated as clicked / not)."""
    binary = (user_items > 0).astype(np.float32).tocsc()
    items = modelled_items(np.asarray(binary.sum(axis=0)).ravel(), max_items)
    x = binary[:, items]
    return ease_from_gram(items, (x.T @ x).toarray(), l2)


def modelled_items(users_per_item: np.ndarray, max_items: int) -> np.ndarray:
    """The `max_items` items with the most users, most first (equal counts by position)."""
    items = np.flatnonzero(users_per_item > 0)
    return items[np.argsort(-users_per_item[items], kind="stable")[:max_items]]


def ease_from_gram(items: np.ndarray, gram: np.ndarray, l2: float) -> EaseModel:
    """EASE from the items' co-occurrence counts XᵀX (users who clicked both; the diagonal is
    each item's users), in the order of `items`."""
    gram = gram.astype(np.float64)
    gram[np.diag_indices_from(gram)] += l2
    inverse = np.linalg.inv(gram)
    weights = -inverse / np.diag(inverse)
    np.fill_diagonal(weights, 0.0)
    return EaseModel(items, weights.astype(np.float32))


def ease_neighbors(model: EaseModel, n_items: int, k: int = 50) -> dict[str, np.ndarray]:
    """Each modelled item's k largest positive weights as a neighbour list (CSR triplet over
    n_items; items outside the model have none)."""
    weights = np.where(model.weights > 0, model.weights, 0.0)
    if weights.shape[1] > k:
        top = np.argpartition(-weights, k, axis=1)[:, :k]
    else:
        top = np.tile(np.arange(weights.shape[1]), (weights.shape[0], 1))
    rows = np.repeat(np.arange(len(model.items)), top.shape[1])
    values = weights[rows, top.ravel()]
    keep = values > 0
    matrix = sp.csr_matrix(
        (values[keep], (model.items[rows[keep]], model.items[top.ravel()[keep]])),
        shape=(n_items, n_items),
    )
    columns, scores = top_k_per_row(matrix, k)
    return to_csr_triplet(columns, scores)
