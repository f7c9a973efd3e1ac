"""Search retrieval: lexical over the TF-IDF index (with synonym-expanded terms), semantic over
the product embeddings, and reciprocal rank fusion of the two. `bundle` is the serving
ModelBundle (services/models.py, which imports this module for the fused results it reads)."""

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from services.artifacts import packed_string, packed_strings
from services.query_words import stems
from services.recommender import Reason
from services.sources import members
from services.synonyms import ExpandedQuery

# Words as the TF-IDF vectorizer of the content model (ml/train_content_model.py) sees them.
TOKEN_PATTERN = r"(?u)\b[a-zA-Z][a-zA-Z0-9\-]+\b"
_TOKEN = re.compile(TOKEN_PATTERN)
# A synonym is good evidence, but the words the shopper typed are better.
SYNONYM_WEIGHT = 0.8
# "something to keep my drinks cold": "to" and "my" match half the catalog and mean nothing.
# scikit-learn's English list, read from a copy: importing scikit-learn cost a serving worker
# over a second of its start-up. A test checks the copy against scikit-learn's.
STOP_WORDS = frozenset(Path(__file__).with_name("english_stop_words.txt").read_text().split())

# A phrase as TF-IDF terms (all must match) and its weight; a concept is a list of alternative
# phrases (a word and its synonyms), and a query a list of concepts.
Alternative = tuple[tuple[str, ...], float]
Concepts = list[list[Alternative]]


def query_terms(query: str) -> list[str]:
    """Tokens as the TF-IDF vectorizer sees them (lowercase, same token pattern)."""
    return _TOKEN.findall(query.lower())


def _content_terms(text: str) -> tuple[str, ...]:
    return tuple(t for t in dict.fromkeys(query_terms(text)) if t not in STOP_WORDS)


def plain_concepts(query: str) -> Concepts:
    """Every meaningful word of the query as its own concept (no synonyms)."""
    return [[((term,), 1.0)] for term in _content_terms(query)]


def expanded_concepts(expanded: ExpandedQuery) -> Concepts:
    """Concepts of a synonym-expanded query: typed phrase weight 1, synonyms SYNONYM_WEIGHT."""
    concepts = []
    for concept in expanded.concepts:
        alternatives = []
        typed = stems(query_terms(concept.typed))
        for phrase in concept.alternatives:
            terms = _content_terms(phrase)
            if terms:
                # The typed words in another form ("headphone" for "headphones") weigh as typed.
                as_typed = phrase == concept.typed or stems(query_terms(phrase)) == typed
                alternatives.append((terms, 1.0 if as_typed else SYNONYM_WEIGHT))
        if alternatives:
            concepts.append(alternatives)
    return concepts


@dataclass(slots=True)  # results are cached per query: no per-hit __dict__
class LexicalHit:
    position: int  # in the catalog
    score: float
    matched: list[str]  # phrases found in the product
    coverage: float  # share of the query's concepts the product matches


def lexical_search(
    bundle, concepts: Concepts, limit: int = 50, other_forms: float = 1.0
) -> list[LexicalHit]:
    """Products scoring highest on the query, best first.

    A phrase matches a product having all its terms, scoring the sum of their TF-IDF weights;
    a concept scores its best-matching alternative (synonyms do not stack up); the product's
    score is the sum over concepts. Vectorised over postings: a common term can match a large
    share of a 550k catalog.
    """
    concept_rows, concept_scores = [], []
    phrase_rows: list[tuple[str, np.ndarray]] = []  # for naming what matched
    for alternatives in concepts:
        rows_found, scores_found = [], []
        for terms, weight in alternatives:
            hit = _phrase_postings(bundle, terms, other_forms)
            if hit is not None:
                rows_found.append(hit[0])
                scores_found.append(hit[1] * weight)
                phrase_rows.append((" ".join(terms), hit[0]))
        if not rows_found:
            continue
        if len(rows_found) == 1:  # postings are sorted and unique already
            rows, best = rows_found[0], scores_found[0]
        else:
            rows, inverse = np.unique(np.concatenate(rows_found), return_inverse=True)
            best = np.zeros(len(rows))
            np.maximum.at(best, inverse, np.concatenate(scores_found))
        concept_rows.append(rows)
        concept_scores.append(best)
    if not concept_rows:
        return []
    if len(concept_rows) == 1:
        candidates, scores = concept_rows[0], concept_scores[0]
    else:
        candidates, inverse = np.unique(np.concatenate(concept_rows), return_inverse=True)
        scores = np.bincount(inverse, weights=np.concatenate(concept_scores))
    best = _top_slots(scores, limit * 2)
    top_rows = candidates[best]
    positions = bundle.to_catalog[top_rows]
    keep = positions >= 0
    best, top_rows, positions = best[keep][:limit], top_rows[keep][:limit], positions[keep][:limit]
    contains = [(phrase, members(top_rows, rows)) for phrase, rows in phrase_rows]
    concepts_matched = sum(members(top_rows, rows).astype(int) for rows in concept_rows)
    return [
        LexicalHit(
            int(position),
            float(scores[slot]),
            list(dict.fromkeys(phrase for phrase, found in contains if found[i])),
            float(concepts_matched[i]) / len(concepts),
        )
        for i, (slot, position) in enumerate(zip(best.tolist(), positions.tolist(), strict=True))
    ]


def _top_slots(scores: np.ndarray, n: int) -> np.ndarray:
    """Indexes of the n highest scores, best first (ties by position): a partial sort, since a
    common word's postings hold tens of thousands of products."""
    if len(scores) > n:
        part = np.argpartition(-scores, n - 1)[:n]
        return part[np.lexsort((part, -scores[part]))]
    return np.argsort(-scores, kind="stable")


def _phrase_postings(
    bundle, terms: tuple[str, ...], other_forms: float = 1.0
) -> tuple[np.ndarray, np.ndarray] | None:
    """Rows having every term (sorted) and the sum of the terms' TF-IDF weights there."""
    arrays = bundle.arrays
    indptr, indices, data, idf = (
        arrays["tfidf_indptr"],
        arrays["tfidf_indices"],
        arrays["tfidf_data"],
        arrays["tfidf_idf"],
    )
    rows = weights = None
    for term in terms:
        # Its stem's words, or a typo's correction's; another form than the typed one weighs
        # `other_forms`.
        columns = bundle.query_words.columns(term, other_forms)
        if not columns:
            return None
        term_rows, term_weights = _postings(indptr, indices, data, idf, columns)
        if rows is None:
            rows, weights = term_rows, term_weights
            continue
        rows, mine, theirs = np.intersect1d(
            rows, term_rows, assume_unique=True, return_indices=True
        )
        weights = weights[mine] + term_weights[theirs]
        if len(rows) == 0:
            return None
    return rows, weights


def _postings(
    indptr, indices, data, idf, columns: list[tuple[int, float]]
) -> tuple[np.ndarray, np.ndarray]:
    """Rows (sorted, unique) having any of the words of `columns` (column, weight), and their
    best weighted TF-IDF weight among them."""
    if len(columns) == 1:
        column, weight = columns[0]
        start, end = indptr[column], indptr[column + 1]
        return np.asarray(indices[start:end]), np.asarray(data[start:end]) * idf[column] * weight
    rows = np.concatenate([np.asarray(indices[indptr[c] : indptr[c + 1]]) for c, _ in columns])
    weights = np.concatenate(
        [np.asarray(data[indptr[c] : indptr[c + 1]]) * idf[c] * w for c, w in columns]
    )
    unique, inverse = np.unique(rows, return_inverse=True)
    best = np.zeros(len(unique))
    np.maximum.at(best, inverse, weights)
    return unique, best


def semantic_search(
    bundle, query_vector: np.ndarray, limit: int, min_similarity: float
) -> list[tuple[int, float]]:
    """Nearest products to the query embedding with cosine >= min_similarity, best first."""
    if bundle.vector_index is None or len(bundle.vector_index) == 0:
        return []
    matches = bundle.vector_index.search(query_vector, limit)
    results = []
    for row, distance in zip(matches.keys.tolist(), matches.distances.tolist(), strict=True):
        similarity = 1.0 - distance  # the index's cosine distance
        position = int(bundle.to_catalog[row])
        if similarity >= min_similarity and position >= 0:
            results.append((position, similarity))
    return results


@dataclass
class Retrieved:
    lexical: list[LexicalHit]
    semantic: list[tuple[int, float]]


@dataclass
class Fused:
    """A query's lexical and semantic results fused by rank, as arrays (cached per query; a
    few KB): the request adds the personal boost and makes objects for its page only."""

    positions: np.ndarray  # catalog positions, each once
    scores: np.ndarray  # reciprocal rank fusion score
    matched: np.ndarray  # index into `phrases` of what a lexical hit matched, -1: none
    phrases: list[str]  # "wireless, earbuds": the phrases a lexical hit matched, joined
    semantic: np.ndarray  # found by the semantic path too
    # The lexical Reason of each phrase, made once: the same query's pages share them.
    _matches: dict[int, Reason] = field(default_factory=dict, init=False, repr=False)

    def __len__(self) -> int:
        return len(self.positions)

    def page_reasons(self, rows: np.ndarray, query: str) -> list[list[Reason]]:
        """Why each of `rows` (a page's) is there: the lexical match, then the semantic one;
        read for all of them at once."""
        similar = Reason("semantic", query, f"semantically similar to '{query}'")
        found = []
        for matched, semantic in zip(
            self.matched[rows].tolist(), self.semantic[rows].tolist(), strict=True
        ):
            reasons = [self._match(matched)] if matched >= 0 else []
            if semantic:
                reasons.append(similar)
            found.append(reasons)
        return found

    def _match(self, phrase: int) -> Reason:
        reason = self._matches.get(phrase)
        if reason is None:
            words = self.phrases[phrase]
            reason = self._matches[phrase] = Reason("search", words, f"matches {words}")
        return reason


def reciprocal_rank_fusion(retrieved: Retrieved, k: int, semantic_weight: float = 1.0) -> Fused:
    """score = sum over the rankings an item is in of weight / (k + rank): robust to the two
    paths' incomparable score scales, and an item both paths found rises to the top. A lexical
    hit counts in proportion to the share of the query it matches ("wireless" alone is a third
    of "wireless thing for ears"); a semantic one with the weight training learned for the
    path (ml/train_search_fusion.py)."""
    phrases: dict[str, int] = {}
    slot_of: dict[int, int] = {}  # each product once, in order of first appearance
    positions, scores, matched, semantic = [], [], [], []

    def slot(position: int) -> int:
        if position not in slot_of:
            slot_of[position] = len(positions)
            positions.append(position)
            scores.append(0.0)
            matched.append(-1)
            semantic.append(False)
        return slot_of[position]

    for rank, hit in enumerate(retrieved.lexical, start=1):
        row = slot(hit.position)
        scores[row] += hit.coverage / (k + rank)
        if matched[row] < 0:
            words = ", ".join(hit.matched)
            matched[row] = phrases.setdefault(words, len(phrases))
    for rank, (position, _similarity) in enumerate(retrieved.semantic, start=1):
        row = slot(position)
        scores[row] += semantic_weight / (k + rank)
        semantic[row] = True
    return Fused(
        np.array(positions, np.int32),
        np.array(scores),
        np.array(matched, np.int32),
        list(phrases),
        np.array(semantic, bool),
    )


# Training fuses the retrieval of the log's frequent searches (the queries it embeds) with the
# search settings below, stored as "search_*" arrays; serving reads them instead of searching
# when its settings are the same.
SEARCH_SETTINGS = ("candidates", "rrf_k", "min_similarity")


def search_settings(settings) -> dict[str, float]:
    """The settings (SEARCH_SETTINGS, from a services.feeds.SearchSettings) a query's fused
    retrieval depends on."""
    return {name: getattr(settings, name) for name in SEARCH_SETTINGS}


def pack_fused(
    queries: list[str], results: list[Fused], settings: dict[str, float]
) -> dict[str, np.ndarray]:
    """The arrays of the queries' fused results (positions must be the version's rows)."""
    phrases: dict[str, int] = {}
    matched = [
        np.array(
            [phrases.setdefault(f.phrases[m], len(phrases)) if m >= 0 else -1 for m in f.matched]
        )
        for f in results
    ]
    phrase_bytes, phrase_offsets = packed_strings(list(phrases))
    return {
        "search_query_texts": np.array(queries, dtype=str),
        "search_settings": np.array([settings[name] for name in SEARCH_SETTINGS], np.float64),
        "search_indptr": np.r_[0, np.cumsum([len(f) for f in results])].astype(np.int64),
        "search_products": np.concatenate([f.positions for f in results] or [[]]).astype(np.int32),
        "search_scores": np.concatenate([f.scores for f in results] or [[]]).astype(np.float64),
        "search_matched": np.concatenate(matched or [[]]).astype(np.int32),
        "search_semantic": np.concatenate([f.semantic for f in results] or [[]]).astype(bool),
        "search_phrase_bytes": phrase_bytes,
        "search_phrase_offsets": phrase_offsets,
    }


def prepared_fused(
    arrays: dict[str, np.ndarray], row: int, to_catalog: np.ndarray, settings: dict[str, float]
) -> Fused | None:
    """Row `row` of the search_* arrays as catalog positions (products gone left out), if it
    was fused with these settings; else None."""
    trained = arrays["search_settings"].tolist()
    if trained != [float(settings[name]) for name in SEARCH_SETTINGS]:
        return None
    start, end = arrays["search_indptr"][row : row + 2].tolist()
    positions = to_catalog[arrays["search_products"][start:end]]
    keep = positions >= 0
    global_matched = arrays["search_matched"][start:end][keep]
    used = np.unique(global_matched[global_matched >= 0])
    phrases = [
        packed_string(arrays["search_phrase_bytes"], arrays["search_phrase_offsets"], p)
        for p in used.tolist()
    ]
    matched = np.where(global_matched >= 0, np.searchsorted(used, global_matched), -1)
    return Fused(
        positions[keep].astype(np.int32),
        np.asarray(arrays["search_scores"][start:end][keep], np.float64),
        matched.astype(np.int32),
        phrases,
        np.asarray(arrays["search_semantic"][start:end][keep], bool),
    )
