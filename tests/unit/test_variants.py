"""A/B variant assignment: stable per user, shares respected, settings validated."""

from collections import Counter

import pytest
from pydantic import ValidationError

from config.settings import Settings, Variant
from services.variants import assign_variant, variants_of


def _settings(**kwargs) -> Settings:
    return Settings(_env_file=None, **kwargs)


def test_without_a_test_everyone_gets_the_default_variant():
    [(variant, share)] = variants_of(_settings(home_ranker="weighted", weight_diverse=0.2))
    assert (variant.name, variant.ranker, share) == ("default", "weighted", 1.0)
    assert variant.weights == {"clicked": 0.5, "search": 0.4, "diverse": 0.2}


def test_assignment_is_stable_and_follows_the_shares():
    settings = _settings(
        ab_variants=[
            Variant(name="learned", share=0.7),
            Variant(name="spec", share=0.3, ranker="weighted", weights={"diverse": 0.3}),
        ]
    )
    variants = variants_of(settings)
    assert variants[1][0].weights == {"clicked": 0.5, "search": 0.4, "diverse": 0.3}
    users = [f"U{i}" for i in range(20_000)]
    counts = Counter(assign_variant(u, variants, "s1").name for u in users)
    assert abs(counts["learned"] / len(users) - 0.7) < 0.02
    again = [assign_variant(u, variants, "s1").name for u in users[:500]]
    assert again == [assign_variant(u, variants, "s1").name for u in users[:500]]
    reshuffled = [assign_variant(u, variants, "s2").name for u in users[:500]]
    assert reshuffled != again  # a new salt draws users anew


def test_shares_must_add_up_and_names_be_unique():
    with pytest.raises(ValidationError):
        _settings(ab_variants=[Variant(name="a", share=0.5), Variant(name="b", share=0.4)])
    with pytest.raises(ValidationError):
        _settings(ab_variants=[Variant(name="a", share=0.5), Variant(name="a", share=0.5)])
    parsed = Settings.model_validate({"ab_variants": [{"name": "only", "share": 1}]})
    assert parsed.ab_variants[0].ranker == "learned"
