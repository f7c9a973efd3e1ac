"""The catalog's words as a search matches them: a word finds every word of the catalog with its
stem (singular and plural, "headphone" and "headphones"), and a word the catalog does not know
is corrected to the closest one it does (one edit in a short word, two in a long one), unless it
is a word of the language ("cheap" is not a typo of "chap")."""

import threading
from collections import defaultdict

import numpy as np
import Stemmer
from rapidfuzz import distance, process

from services.lru import LRU

# A Stemmer may be used by one thread at a time (PyStemmer's rule): the event loop and the
# threads that build a version's tables (or train) each get their own.
_stemmers = threading.local()


def _stemmer() -> Stemmer.Stemmer:
    stemmer = getattr(_stemmers, "english", None)
    if stemmer is None:
        stemmer = _stemmers.english = Stemmer.Stemmer("english")
    return stemmer


# Edits a correction may make: none below 4 letters (too many short words are one edit
# apart), one up to 7 letters, two from 8.
SHORTEST_CORRECTED = 4
TWO_EDITS_FROM = 8
CORRECTIONS_CACHED = 20_000
# Search results for a query: a product with the very word typed is better evidence than one
# with another form of it (as a synonym is: services/search.py's SYNONYM_WEIGHT). Candidates for
# the home ranker from past searches take every form alike: the ranker orders them.
OTHER_FORM_WEIGHT = 0.8


def stems(words: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    return tuple(_stemmer().stemWords(list(words)))


class QueryWords:
    """One version's vocabulary (the lexical index's terms) by stem, with typo correction.
    `dictionary`: words of the language, never corrected."""

    def __init__(
        self,
        terms: list[str],
        document_frequency: np.ndarray,
        dictionary: frozenset[str] = frozenset(),
    ):
        self.terms = terms
        self.document_frequency = document_frequency
        self.dictionary = dictionary
        by_stem: dict[str, list[int]] = defaultdict(list)
        for column, stem in enumerate(_stemmer().stemWords(terms)):
            by_stem[stem].append(column)
        # The most frequent form first: it is the one a correction lands on.
        self.columns_of_stem = {
            stem: sorted(columns, key=lambda c: (-document_frequency[c], c))
            for stem, columns in by_stem.items()
        }
        self._corrections = LRU(CORRECTIONS_CACHED)

    def columns(self, term: str, other_forms: float = 1.0) -> list[tuple[int, float]]:
        """The index columns a query term matches, with weights: the word itself 1, its other
        forms (the same stem) `other_forms`; a word the catalog does not know, the word it is
        corrected to and its forms; [] when nothing is close."""
        forms = self.columns_of_stem.get(_stemmer().stemWord(term))
        if not forms:
            term = self.correction(term) or ""
            forms = self.columns_of_stem.get(_stemmer().stemWord(term)) if term else None
            if not forms:
                return []
        return [(c, 1.0 if self.terms[c] == term else other_forms) for c in forms]

    def knows(self, word: str) -> bool:
        return _stemmer().stemWord(word) in self.columns_of_stem

    def correction(self, word: str) -> str | None:
        """The catalog word closest to an unknown `word` (fewest edits, then most frequent), or
        None when the word is known, a word of the language, too short, or no word is close
        enough."""
        if len(word) < SHORTEST_CORRECTED or not word.isalpha() or self.knows(word):
            return None
        if word in self.dictionary:
            return None
        cached = self._corrections.get(word)
        if cached is not None:
            return cached or None
        edits = 2 if len(word) >= TWO_EDITS_FROM else 1
        close = process.extract(
            word, self.terms, scorer=distance.Levenshtein.distance, score_cutoff=edits, limit=20
        )
        best = min(
            close,
            key=lambda found: (found[1], -self.document_frequency[found[2]], found[0]),
            default=None,
        )
        corrected = best[0] if best is not None else ""
        self._corrections.put(word, corrected)
        return corrected or None
