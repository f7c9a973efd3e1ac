"""Catalog-popularity prior: what "trending" means before any clicks (the click-based trending
scores live in the database: database/trending.py)."""

import numpy as np


def popularity_prior(ratings: np.ndarray, rating_counts: np.ndarray) -> np.ndarray:
    """Bayesian-average rating x log(1 + rating count), scaled to 0..1. NaN ratings count as none.

    The Bayesian average pulls items with few ratings towards the catalog mean, so a single
    5-star review does not outrank thousands of 4.4s.
    """
    counts = np.nan_to_num(rating_counts.astype(np.float64), nan=0.0)
    rated = ~np.isnan(ratings) & (counts > 0)
    if not rated.any():
        return np.zeros(len(ratings), dtype=np.float32)
    mean_rating = float(np.average(ratings[rated], weights=counts[rated]))
    confidence = float(np.median(counts[rated]))
    safe_ratings = np.where(rated, ratings, mean_rating)
    bayesian = (confidence * mean_rating + counts * safe_ratings) / (confidence + counts)
    score = bayesian * np.log1p(counts)
    return (score / score.max()).astype(np.float32) if score.max() > 0 else score.astype(np.float32)
