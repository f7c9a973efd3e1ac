"""Trending scores: exponentially time-decayed event counts, with a catalog-popularity prior."""

import numpy as np

EVENT_WEIGHTS = {"product_click": 1.0}


def decayed_scores(
    item_positions: np.ndarray,
    weights: np.ndarray,
    age_hours: np.ndarray,
    n_items: int,
    decay_rate: float,
) -> np.ndarray:
    """score(p) = sum over p's events of weight x decay_rate ** age_hours."""
    contributions = weights * np.power(decay_rate, np.maximum(age_hours, 0.0))
    return np.bincount(item_positions, weights=contributions, minlength=n_items).astype(np.float32)


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
