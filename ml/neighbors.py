"""Top-K neighbour lists stored as CSR triplets (indptr, indices, scores) over product positions."""

import numpy as np
import scipy.sparse as sp


def top_k_per_row(similarity: sp.csr_matrix, k: int, row_offset: int = 0) -> list[np.ndarray]:
    """Best k columns of every row, skipping the row's own item (column row_offset + row).

    Returns per-row arrays of column indices and of scores, best first; equal scores in column
    order, so the lists do not depend on how the matrix was built (the Spark path's equal the
    local path's).
    """
    similarity = similarity.tocsr()
    columns, scores = [], []
    for row in range(similarity.shape[0]):
        start, end = similarity.indptr[row], similarity.indptr[row + 1]
        row_columns = similarity.indices[start:end]
        row_scores = similarity.data[start:end]
        keep = (row_columns != row_offset + row) & (row_scores > 0)
        row_columns, row_scores = row_columns[keep], row_scores[keep]
        if len(row_scores) > k:
            # Everything scoring at least the k-th best, ties at the boundary included.
            kth = -np.partition(-row_scores, k - 1)[k - 1]
            best = row_scores >= kth
            row_columns, row_scores = row_columns[best], row_scores[best]
        order = np.lexsort((row_columns, -row_scores))[:k]
        columns.append(row_columns[order])
        scores.append(row_scores[order])
    return [columns, scores]


def to_csr_triplet(columns: list[np.ndarray], scores: list[np.ndarray]) -> dict[str, np.ndarray]:
    lengths = np.fromiter((len(c) for c in columns), dtype=np.int64, count=len(columns))
    indptr = np.zeros(len(columns) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    return {
        "indptr": indptr,
        "indices": np.concatenate(columns).astype(np.int32) if columns else np.zeros(0, np.int32),
        "scores": np.concatenate(scores).astype(np.float32) if scores else np.zeros(0, np.float32),
    }


def chunked_top_k(
    left: sp.csr_matrix, right_t: sp.csr_matrix, k: int, chunk_rows: int = 2000, progress=None
) -> dict[str, np.ndarray]:
    """Top-k of left @ right_t computed a block of rows at a time (never a dense N x N)."""
    columns: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    for start in range(0, left.shape[0], chunk_rows):
        block = left[start : start + chunk_rows] @ right_t
        block_columns, block_scores = top_k_per_row(block, k, row_offset=start)
        columns.extend(block_columns)
        scores.extend(block_scores)
        if progress is not None:
            progress.update(min(chunk_rows, left.shape[0] - start))
    return to_csr_triplet(columns, scores)


def empty_triplet(n_rows: int) -> dict[str, np.ndarray]:
    """Neighbour lists with no neighbours (a model with nothing to learn from yet)."""
    return {
        "indptr": np.zeros(n_rows + 1, dtype=np.int64),
        "indices": np.zeros(0, dtype=np.int32),
        "scores": np.zeros(0, dtype=np.float32),
    }


def prefixed(prefix: str, triplet: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A triplet's arrays named as a version stores them: cf_indptr, coclick_scores, ..."""
    return {f"{prefix}_{key}": value for key, value in triplet.items()}
