"""A/B variants of the home ranking: which configuration a user gets, stable across requests and
workers (a hash of the user id, not a random draw), so a shop can compare variants live."""

import hashlib
from dataclasses import dataclass

from config.settings import Settings


@dataclass(frozen=True)
class RankingVariant:
    name: str
    ranker: str  # learned | weighted
    weights: dict[str, float]  # clicked, search, diverse


def variants_of(settings: Settings) -> list[tuple[RankingVariant, float]]:
    """The configured variants with their shares; one "default" variant when none is set."""
    defaults = {
        "clicked": settings.weight_clicked,
        "search": settings.weight_search,
        "diverse": settings.weight_diverse,
    }
    if not settings.ab_variants:
        return [(RankingVariant("default", settings.home_ranker, defaults), 1.0)]
    return [
        (RankingVariant(v.name, v.ranker, defaults | (v.weights or {})), v.share)
        for v in settings.ab_variants
    ]


def bucket(user_id: str, salt: str) -> float:
    """A number in [0, 1) fixed by the user id and the salt, uniform over users."""
    digest = hashlib.sha256(f"{salt}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8]) / 2**64


def assign_variant(
    user_id: str, variants: list[tuple[RankingVariant, float]], salt: str
) -> RankingVariant:
    if len(variants) == 1:  # no test running: no hash to compute for every request and event
        return variants[0][0]
    point = bucket(user_id, salt)
    cumulative = 0.0
    for variant, share in variants:
        cumulative += share
        if point < cumulative:
            return variant
    return variants[-1][0]  # shares add up to 1 up to rounding
