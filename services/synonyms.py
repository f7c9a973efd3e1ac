"""Query-time synonym expansion from a file in the Solr synonyms format.

    earbuds, earphones, in-ear headphones     equivalent: any of them expands to all of them
    tv => television, tv                      one-way: "tv" is rewritten; "television" is left alone

Entries may be several words; matching is case-insensitive and takes the longest entry first, so
"smart tv" wins over "tv" in "smart tv 55 inch".
"""

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from services.query_words import stems

_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
Phrase = tuple[str, ...]


def normalise_text(text: str) -> str:
    """Lowercase, Unicode-compatible form (full-width letters, ligatures), single spaces."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def words(text: str) -> Phrase:
    return tuple(_WORD.findall(normalise_text(text)))


@dataclass
class Concept:
    """One thing the shopper asked for: the words typed and the phrases that may stand for them
    (just the typed words when no synonym entry matched)."""

    typed: str
    alternatives: list[str]

    @property
    def expanded(self) -> bool:
        return self.alternatives != [self.typed]


@dataclass
class ExpandedQuery:
    words: Phrase
    concepts: list[Concept]

    @property
    def expansions(self) -> list[Concept]:
        return [c for c in self.concepts if c.expanded]

    def alternatives(self) -> list[str]:
        """Every phrase any concept may be matched by, typed or synonym."""
        return [a for c in self.concepts for a in c.alternatives]

    def expanded_terms(self) -> list[str]:
        """Phrases the query was expanded with (not those typed)."""
        return [a for c in self.expansions for a in c.alternatives if a != c.typed]


class Synonyms:
    def __init__(self, rules: dict[Phrase, list[Phrase]]):
        self.rules = rules
        self.longest = max((len(key) for key in rules), default=0)
        # An entry matches the query's words by stem too: "headphone" finds "headphones, ...".
        self.by_stem: dict[Phrase, list[Phrase]] = {}
        for key, targets in rules.items():
            known = self.by_stem.setdefault(stems(key), [])
            known.extend(t for t in targets if t not in known)

    @classmethod
    def parse(cls, text: str) -> "Synonyms":
        """Rules from Solr-format lines. Raises ValueError naming the line when one is malformed."""
        rules: dict[Phrase, list[Phrase]] = {}
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            if line.count("=>") > 1:
                raise ValueError(f"synonyms line {number}: more than one '=>'")
            if "=>" in line:
                left, right = (_entries(side) for side in line.split("=>"))
                sources, targets = left, right
            else:
                sources = targets = _entries(line)
            if not sources or not targets:
                raise ValueError(f"synonyms line {number}: empty side in {raw!r}")
            for source in sources:
                known = rules.setdefault(source, [])
                known.extend(t for t in targets if t not in known)
        return cls(rules)

    @classmethod
    def load(cls, path: Path) -> "Synonyms":
        return cls.parse(path.read_text(encoding="utf-8"))

    def expand(self, query: str) -> ExpandedQuery:
        """The query as concepts: every matched entry (longest first) with its alternatives,
        every other word on its own."""
        query_words = words(query)
        concepts: list[Concept] = []
        i = 0
        while i < len(query_words):
            for length in range(min(self.longest, len(query_words) - i), 0, -1):
                phrase = query_words[i : i + length]
                targets = self.rules.get(phrase) or self.by_stem.get(stems(phrase))
                if targets:
                    concepts.append(Concept(" ".join(phrase), [" ".join(t) for t in targets]))
                    i += length
                    break
            else:
                concepts.append(Concept(query_words[i], [query_words[i]]))
                i += 1
        return ExpandedQuery(query_words, concepts)


def _entries(side: str) -> list[Phrase]:
    return [entry for entry in (words(part) for part in side.split(",")) if entry]
