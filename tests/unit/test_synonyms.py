"""Solr-format synonyms: parsing, equivalence vs one-way rules, multi-word longest match."""

import pytest

from config.settings import Settings
from services.synonyms import Synonyms

RULES = """
# a comment
earbuds, earphones, in-ear headphones
tv => television, tv
smart tv, android tv
Fridge, REFRIGERATOR   # trailing comment
"""


def test_equivalent_terms_expand_to_each_other():
    synonyms = Synonyms.parse(RULES)
    for typed in ("earbuds", "earphones", "in-ear headphones"):
        expanded = synonyms.expand(typed)
        assert expanded.concepts[0].alternatives == ["earbuds", "earphones", "in-ear headphones"]
    assert synonyms.expand("earphones").expanded_terms() == ["earbuds", "in-ear headphones"]


def test_one_way_rule_applies_one_way_only():
    synonyms = Synonyms.parse(RULES)
    assert synonyms.expand("tv").expanded_terms() == ["television"]
    assert synonyms.expand("television").expansions == []


def test_longest_entry_wins_and_case_is_ignored():
    synonyms = Synonyms.parse(RULES)
    expanded = synonyms.expand("  Smart   TV 55 inch ")
    assert [c.typed for c in expanded.concepts] == ["smart tv", "55", "inch"]
    assert expanded.concepts[0].alternatives == ["smart tv", "android tv"]
    assert synonyms.expand("FRIDGE").expanded_terms() == ["refrigerator"]


def test_unmatched_words_stay_as_typed():
    expanded = Synonyms.parse(RULES).expand("blue kurta")
    assert [(c.typed, c.alternatives) for c in expanded.concepts] == [
        ("blue", ["blue"]),
        ("kurta", ["kurta"]),
    ]
    assert expanded.expansions == []


@pytest.mark.parametrize("line", ["a => b => c", "=> television", "tv =>", " , "])
def test_malformed_lines_are_rejected_with_their_number(line):
    with pytest.raises(ValueError, match="line 2"):
        Synonyms.parse(f"ok, fine\n{line}\n")


def test_shipped_list_parses_and_covers_the_catalog():
    text = Settings().synonyms_path.read_text()
    rules = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert len(rules) >= 100
    synonyms = Synonyms.parse(text)
    for typed, expected in [
        ("earbuds", "earphones"),
        ("fridge", "refrigerator"),
        ("sneakers", "casual shoes"),
        ("kurti", "kurta"),
        ("atta", "wheat flour"),
        ("suitcase", "trolley bag"),
    ]:
        assert expected in synonyms.expand(typed).expanded_terms(), typed
