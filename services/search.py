"""Lexical retrieval over the TF-IDF index trained with the content model."""

import re

import numpy as np

from ml.train_content_model import TOKEN_PATTERN
from services.models import ModelBundle

_TOKEN = re.compile(TOKEN_PATTERN)


def query_terms(query: str) -> list[str]:
    """Tokens as the TF-IDF vectorizer sees them (lowercase, same token pattern)."""
    return _TOKEN.findall(query.lower())


def lexical_search(
    bundle: ModelBundle, query: str, limit: int = 50
) -> list[tuple[int, float, list[str]]]:
    """Products scoring highest on the query's terms: (catalog position, score, matched terms)."""
    arrays = bundle.arrays
    indptr, indices, data, idf = (
        arrays["tfidf_indptr"],
        arrays["tfidf_indices"],
        arrays["tfidf_data"],
        arrays["tfidf_idf"],
    )
    terms = [t for t in dict.fromkeys(query_terms(query)) if t in bundle.vocabulary]
    if not terms:
        return []
    # Vectorised over the postings of every term: a common term can match a large share of
    # the catalog, which a Python loop would pay for on every request.
    columns = [bundle.vocabulary[t] for t in terms]
    rows = np.concatenate([indices[indptr[c] : indptr[c + 1]] for c in columns])
    weights = np.concatenate(
        [np.asarray(data[indptr[c] : indptr[c + 1]]) * idf[c] for c in columns]
    )
    candidates, inverse = np.unique(rows, return_inverse=True)
    scores = np.bincount(inverse, weights=weights)
    best = np.argsort(-scores, kind="stable")[: limit * 2]
    results = []
    for slot in best.tolist():
        row = int(candidates[slot])
        position = int(bundle.to_catalog[row])
        if position < 0:
            continue
        matched = [t for t, c in zip(terms, columns, strict=True) if _has(indptr, indices, c, row)]
        results.append((position, float(scores[slot]), matched))
        if len(results) == limit:
            break
    return results


def _has(indptr: np.ndarray, indices: np.ndarray, column: int, row: int) -> bool:
    """Whether `row` is in the postings of `column` (postings are sorted: binary search)."""
    postings = indices[indptr[column] : indptr[column + 1]]
    slot = np.searchsorted(postings, row)
    return bool(slot < len(postings) and postings[slot] == row)
