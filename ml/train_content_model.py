"""Content similarity: TF-IDF over product name + sub-category, top-K similar products each.

python -m ml.train --only content   (this model only; python -m ml.train trains all)
"""

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from ml.neighbors import to_csr_triplet
from services.search import TOKEN_PATTERN

# Repeating the sub-category gives it real weight next to the (longer) product name.
SUB_CATEGORY_REPEAT = 3


def product_text(name: str, sub_category: str) -> str:
    return f"{name} " + " ".join([sub_category] * SUB_CATEGORY_REPEAT)


def fit_tfidf(
    names: list[str], sub_categories: list[str]
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """TF-IDF matrix (rows L2-normalised), vocabulary (column -> term) and idf weights."""
    vectorizer = TfidfVectorizer(
        lowercase=True,
        token_pattern=TOKEN_PATTERN,
        sublinear_tf=True,
        min_df=1,
        max_df=0.5,  # words in half the catalog ("with", "for") carry no similarity
        dtype=np.float32,
    )
    texts = [product_text(n, s) for n, s in zip(names, sub_categories, strict=True)]
    matrix = vectorizer.fit_transform(texts).tocsr()
    vocabulary = np.array(vectorizer.get_feature_names_out(), dtype=str)
    return normalize(matrix), vocabulary, vectorizer.idf_.astype(np.float32)


def similar_products(
    matrix: sp.csr_matrix,
    sub_categories: list[str],
    main_categories: list[str],
    k: int = 50,
    progress=None,
) -> dict[str, np.ndarray]:
    """Top-k cosine neighbours of every product (CSR triplet), excluding the product itself.

    Neighbours are searched within the product's sub-category, or its main category when the
    sub-category has no more than k products. With the sub-category weighted into every vector
    the top-k lies there anyway; blocking turns one N x N problem (in a 550k catalog a row shares
    common words with ~200k others) into per-category ones, computed exactly, a dense block of
    rows at a time.
    """
    n = matrix.shape[0]
    columns: list[np.ndarray] = [np.zeros(0, np.int32)] * n
    scores: list[np.ndarray] = [np.zeros(0, np.float32)] * n
    main_groups = _groups(main_categories)
    for members in _groups(sub_categories).values():
        candidates = members
        if len(members) <= k:
            candidates = main_groups[main_categories[members[0]]]
        _top_k(matrix, members, candidates, k, columns, scores)
        if progress is not None:
            progress.update(len(members))
    return to_csr_triplet(columns, scores)


def _groups(labels: list[str]) -> dict[str, np.ndarray]:
    """Label -> sorted positions carrying it."""
    series = pd.Series(np.arange(len(labels)), index=labels)
    return {label: np.sort(group.to_numpy()) for label, group in series.groupby(level=0)}


def _top_k(matrix, rows, candidates, k, columns, scores, max_block_cells=20_000_000) -> None:
    keep = min(k, len(candidates) - 1)
    if keep < 1:
        return
    candidate_t = matrix[candidates].T.tocsr()
    block_rows = max(1, max_block_cells // len(candidates))
    for start in range(0, len(rows), block_rows):
        block_members = rows[start : start + block_rows]
        block = (matrix[block_members] @ candidate_t).toarray()
        own_slot = np.searchsorted(candidates, block_members)  # candidates are sorted
        block[np.arange(len(block_members)), own_slot] = -np.inf  # never its own neighbour
        best = np.argpartition(-block, keep - 1, axis=1)[:, :keep]
        best_scores = np.take_along_axis(block, best, axis=1)
        ranking = np.argsort(-best_scores, axis=1, kind="stable")
        best = np.take_along_axis(best, ranking, axis=1)
        best_scores = np.take_along_axis(best_scores, ranking, axis=1)
        for row, member in enumerate(block_members.tolist()):
            positive = best_scores[row] > 0
            columns[member] = candidates[best[row][positive]].astype(np.int32)
            scores[member] = best_scores[row][positive].astype(np.float32)
