"""Item-to-item collaborative filtering: cosine between items' decayed user-interaction vectors.

python -m ml.train --only cf   (this model only; python -m ml.train trains all)
"""

import numpy as np
import scipy.sparse as sp
from sklearn.preprocessing import normalize

from ml.neighbors import chunked_top_k, empty_triplet


def interaction_matrix(
    user_positions: np.ndarray, item_positions: np.ndarray, weights: np.ndarray, n_items: int
) -> sp.csr_matrix:
    """Users x items matrix of summed (time-decayed) implicit weights."""
    n_users = int(user_positions.max()) + 1 if len(user_positions) else 0
    matrix = sp.coo_matrix(
        (weights.astype(np.float32), (user_positions, item_positions)), shape=(n_users, n_items)
    )
    return matrix.tocsr()  # duplicates are summed


def item_neighbors(user_items: sp.csr_matrix, k: int = 50) -> dict[str, np.ndarray]:
    """Top-k cosine neighbours of every item over the users who interacted with it."""
    n_items = user_items.shape[1]
    if user_items.shape[0] == 0:  # no events yet: no neighbours
        return empty_triplet(n_items)
    items = normalize(user_items.T.tocsr().astype(np.float32))  # items x users, unit rows
    return chunked_top_k(items, items.T.tocsr(), k, chunk_rows=5000)
