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
    scores: dict[int, float] = {}
    matched: dict[int, list[str]] = {}
    for term in dict.fromkeys(query_terms(query)):
        column = bundle.vocabulary.get(term)
        if column is None:
            continue
        start, end = indptr[column], indptr[column + 1]
        rows = indices[start:end]
        weights = np.asarray(data[start:end]) * idf[column]
        for row, weight in zip(rows.tolist(), weights.tolist(), strict=True):
            scores[row] = scores.get(row, 0.0) + weight
            matched.setdefault(row, []).append(term)
    best = sorted(scores, key=scores.__getitem__, reverse=True)
    results = []
    for row in best:
        position = int(bundle.to_catalog[row])
        if position >= 0:
            results.append((position, scores[row], matched[row]))
        if len(results) == limit:
            break
    return results
