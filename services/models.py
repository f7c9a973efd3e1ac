"""Loading trained artifacts (memory-mapped) and the lookups the recommenders use."""

import logging
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path

import numpy as np
from usearch.index import Index

from services import metrics
from services.artifacts import (
    SYNONYMS_FILE,
    current_version_folder,
    earlier_versions,
    load_version,
    verify_checksums,
)
from services.home_rankings import HomeRankings, PreparedRanking
from services.lru import LRU
from services.query_words import QueryWords, stems
from services.ranking import RANKER_FILE, Ranker
from services.search import Fused, prepared_fused
from services.sessions import SessionIndex, SessionKnnParams, session_knn_scores
from services.synonyms import ExpandedQuery, Synonyms, normalise_text, words
from services.text_encoder import QueryEncoder, encoder_words, open_query_encoder
from services.vector_index import INDEX_FILE, open_index

logger = logging.getLogger(__name__)
NEIGHBOR_MODELS = ("content", "cf", "coclick")
DEFAULT_SESSION_KNN = SessionKnnParams()
# What a broken version raises while loading: missing or unreadable files, a checksum mismatch,
# arrays that do not fit together.
ARTIFACT_ERRORS = (OSError, ValueError, KeyError, RuntimeError)


# Queries whose corrected and expanded forms a version keeps (the same searches come back).
SEARCHED_QUERIES_CACHED = 20_000


@dataclass(frozen=True)
class SearchedQuery:
    """A query as search retrieves it."""

    text: str  # typos corrected, normalised: what is embedded, prepared and cached
    corrections: list[tuple[str, str]]  # (typed, corrected to)
    expanded: ExpandedQuery  # the corrected words with their synonyms
    phrases: tuple[str, ...]  # the text and every alternative: what may name a sub-category


@dataclass
class ModelBundle:
    version: str
    folder: Path
    arrays: dict[str, np.ndarray]
    to_catalog: np.ndarray  # artifact position -> catalog position (-1: product gone)
    from_catalog: np.ndarray  # catalog position -> artifact position (-1: not trained on)
    vocabulary: dict[str, int]
    synonyms: Synonyms
    vector_index: Index | None  # memory-mapped HNSW over the product embeddings
    created_at: datetime
    query_rows: dict[str, int]  # popular query (lowercase) -> row of embedding_query_vectors
    sessions: SessionIndex | None  # past sessions for session-kNN (artifact positions)
    ranker: Ranker | None = None  # the learned home ranker, when the version has one
    # A frequent past search (as stored in the log) -> its row of the past_query_* arrays.
    past_queries: dict[str, int] = field(default_factory=dict)
    # The trending scores the version's ranker reads (training's, in catalog order), if any.
    ranker_trending: "TrendingScores | None" = None

    home_users: dict[str, int] = field(default_factory=dict)  # user -> row of home_* arrays
    # user -> row of the profile_* arrays (searching the mapped id array cost ~0.3 ms a request)
    profile_users: dict[str, int] = field(default_factory=dict)
    # Embeds a query no training embedded; None for a version from before the ONNX export.
    query_encoder: QueryEncoder | None = None
    _searched: LRU = field(default_factory=lambda: LRU(SEARCHED_QUERIES_CACHED), repr=False)

    def searched(self, query: str) -> SearchedQuery:
        """The query with each word the catalog and the synonyms do not know corrected to the
        closest catalog word ("hedphones" -> "headphones"), and its synonyms: a typo finds what
        the word finds, shares its embedding and training's prepared results."""
        found = self._searched.get(query)
        if found is None:
            typed = words(query)
            corrections = []
            for word in typed:
                if (word,) in self.synonyms.rules or stems((word,)) in self.synonyms.by_stem:
                    continue
                fixed = self.query_words.correction(word)
                if fixed is not None:
                    corrections.append((word, fixed))
            fixes = dict(corrections)
            text = " ".join(fixes.get(word, word) for word in typed) if fixes else query
            text = normalise_text(text)
            expanded = self.synonyms.expand(text)
            found = SearchedQuery(text, corrections, expanded, (text, *expanded.alternatives()))
            self._searched.put(query, found)
        return found

    # A frequent search (normalised) -> its row of the search_* arrays (its fused retrieval).
    search_queries: dict[str, int] = field(default_factory=dict)

    def prepared_home(self, user_id: str, events: list[dict]) -> PreparedRanking | None:
        """Training's home ranking of the user if it saw exactly these events, else None."""
        return self.home_rankings.ranking(self.to_catalog, user_id, events)

    def prepared_home_stamp(
        self, user_id: str, since: datetime, visit_since: datetime
    ) -> int | None:
        """The history stamp under which the user's prepared ranking holds without reading the
        user's events (services/home_rankings.py), or None."""
        return self.home_rankings.stamp(user_id, since, visit_since)

    def unread_prepared_home(self, user_id: str) -> PreparedRanking:
        """The prepared ranking of a user whose stamp matched, with its `seen` products."""
        return self.home_rankings.unread_ranking(self.to_catalog, user_id)

    def prepared_search(self, query: str, settings: dict[str, float]) -> Fused | None:
        """Training's fused retrieval of a frequent search (normalised), if it used these
        search settings; else None."""
        row = self.search_queries.get(query)
        if row is None:
            return None
        return prepared_fused(self.arrays, row, self.to_catalog, settings)

    @cached_property
    def semantic_weight(self) -> float:
        """The semantic path's weight in search fusion, learned by training (1.0 before)."""
        learned = self.arrays.get("search_semantic_weight")
        return 1.0 if learned is None else float(learned[0])

    @cached_property
    def query_words(self) -> QueryWords:
        """The lexical index's words by stem, with typo correction (services/query_words.py)."""
        indptr = self.arrays["tfidf_indptr"]
        vocabulary = self.arrays["tfidf_vocabulary"].tolist()
        return QueryWords(vocabulary, np.diff(indptr), encoder_words())

    @cached_property
    def home_rankings(self) -> HomeRankings:
        return HomeRankings(self.arrays, self.home_users)

    def cached_query_vector(self, query: str) -> np.ndarray | None:
        """The query's embedding if training embedded it (a popular query), else None."""
        row = self.query_rows.get(query.lower())
        if row is None:
            return None
        return self.arrays["embedding_query_vectors"][row].astype(np.float32)

    def past_query_matches(self, query: str) -> tuple[np.ndarray, np.ndarray] | None:
        """Training's lexical matches of a frequent past search (catalog positions, scores best
        first), or None when training did not prepare this query."""
        row = self.past_queries.get(query)
        if row is None:
            return None
        indptr = self.arrays["past_query_indptr"]
        start, end = int(indptr[row]), int(indptr[row + 1])
        positions = self.to_catalog[self.arrays["past_query_products"][start:end]]
        scores = np.asarray(self.arrays["past_query_scores"][start:end], np.float64)
        keep = positions >= 0
        return positions[keep], scores[keep]

    def neighbors(self, model: str, catalog_position: int) -> tuple[np.ndarray, np.ndarray]:
        """(catalog positions, scores) of a product's neighbours in `model`, best first."""
        positions, scores, _ = self.neighbor_rows(model, [catalog_position], relative=False)
        return positions, scores

    def neighbor_rows(
        self,
        model: str,
        catalog_positions: np.ndarray | list[int],
        limit: int | None = None,
        relative: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The first `limit` (None: all) neighbours in `model` of several products at once.

        Returns:
            (catalog positions, scores (divided by that product's best score when `relative`),
            index of the product in `catalog_positions` each neighbour belongs to).
        """
        rows = self.from_catalog[np.asarray(catalog_positions, np.int64)]
        which = np.flatnonzero(rows >= 0)
        indptr = self.arrays[f"{model}_indptr"]
        starts = indptr[rows[which]].astype(np.int64)
        counts = (indptr[rows[which] + 1] - starts).astype(np.int64)
        if limit is not None:
            counts = np.minimum(counts, limit)
        if counts.sum() == 0:
            none = np.zeros(0, np.int64)
            return none, np.zeros(0), none
        offsets = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
        scores = np.asarray(self.arrays[f"{model}_scores"][offsets], np.float64)
        if relative:
            tops = np.asarray(self.arrays[f"{model}_scores"][starts[counts > 0]], np.float64)
            tops[tops == 0] = 1.0
            scores /= np.repeat(tops, counts[counts > 0])
        mapped = self.to_catalog[self.arrays[f"{model}_indices"][offsets]]
        owner = np.repeat(which, counts)
        keep = mapped >= 0
        return mapped[keep], scores[keep], owner[keep]

    def session_neighbors(
        self, clicked_positions: list[int], params: SessionKnnParams = DEFAULT_SESSION_KNN
    ) -> tuple[np.ndarray, np.ndarray]:
        """(catalog positions, scores) that session-kNN gives a session of these clicks (catalog
        positions, oldest first), best first; the clicked products themselves included."""
        if self.sessions is None or not clicked_positions:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        clicks = self.from_catalog[np.asarray(clicked_positions, np.int64)]
        items, scores = session_knn_scores(self.sessions, clicks[clicks >= 0], params)
        mapped = self.to_catalog[items]
        keep = mapped >= 0
        return mapped[keep], scores[keep]


PROFILE_FACETS = ("category", "sub_category", "term")


def user_profile(
    bundle: ModelBundle, user_id: str, facets: tuple[str, ...] = PROFILE_FACETS
) -> dict[str, dict[str, float]]:
    """The user's decayed weights per facet (category, sub_category, term) of `facets`; empty if
    unknown. A request reads only the facets it uses: the term facet is the longest."""
    arrays = bundle.arrays
    profile: dict[str, dict[str, float]] = {facet: {} for facet in facets}
    slot = bundle.profile_users.get(user_id)
    if slot is None:
        return profile
    for facet in facets:
        indptr = arrays[f"profile_{facet}_indptr"]
        start, end = indptr[slot], indptr[slot + 1]
        names = arrays[f"profile_{facet}_vocabulary"][arrays[f"profile_{facet}_indices"][start:end]]
        weights = arrays[f"profile_{facet}_scores"][start:end]
        profile[facet] = dict(zip(names.tolist(), weights.tolist(), strict=True))
    return profile


def load_bundle(
    folder: Path, catalog_size: int, position_of: dict[str, int], encoder_threads: int = 1
) -> ModelBundle:
    manifest, arrays = load_version(folder)
    synonyms_file = folder / SYNONYMS_FILE
    index_file = folder / INDEX_FILE
    bundle = bundle_from_arrays(
        arrays,
        catalog_size,
        position_of,
        version=manifest["version"],
        folder=folder,
        created_at=datetime.fromisoformat(manifest["created_at"]),
        synonyms=Synonyms.load(synonyms_file) if synonyms_file.exists() else Synonyms({}),
        vector_index=open_index(index_file) if index_file.exists() else None,
        ranker=_ranker(folder),
    )
    bundle.query_encoder = open_query_encoder(folder, encoder_threads)
    return bundle


def _ranker(folder: Path) -> Ranker | None:
    """The version's ranker. One trained for other features (a version from before an upgrade)
    is left out: that version serves with the weighted merge until the next training."""
    if not (folder / RANKER_FILE).exists():
        return None
    try:
        return Ranker(folder / RANKER_FILE)
    except ValueError as exc:
        logger.warning("%s: ranker not used: %s", folder.name, exc)
        return None


def bundle_from_arrays(
    arrays: dict[str, np.ndarray],
    catalog_size: int,
    position_of: dict[str, int],
    *,
    version: str,
    folder: Path,
    created_at: datetime,
    synonyms: Synonyms,
    vector_index: Index | None = None,
    ranker: Ranker | None = None,
) -> ModelBundle:
    """A bundle over arrays in memory or mapped from a version folder."""
    # tolist: Python strings in one call, not a numpy scalar and a str() per product.
    product_ids = arrays["product_ids"].tolist()
    to_catalog = np.fromiter(
        (position_of.get(pid, -1) for pid in product_ids), dtype=np.int64, count=len(product_ids)
    )
    from_catalog = np.full(catalog_size, -1, dtype=np.int64)
    present = to_catalog >= 0
    from_catalog[to_catalog[present]] = np.flatnonzero(present)
    for name in ("log_clicks", "week_log_clicks"):  # in catalog order, as the ranker reads them
        if f"sessions_{name}" in arrays:
            in_catalog = np.zeros(catalog_size, np.float32)
            in_catalog[to_catalog[present]] = arrays[f"sessions_{name}"][present]
            arrays = arrays | {f"catalog_{name}": in_catalog}
    vocabulary = {term: column for column, term in enumerate(arrays["tfidf_vocabulary"].tolist())}
    return ModelBundle(
        version,
        folder,
        arrays,
        to_catalog,
        from_catalog,
        vocabulary,
        synonyms,
        vector_index,
        created_at,
        _rows_of(arrays, "embedding_query_texts"),
        SessionIndex.from_arrays(arrays) if "sessions_session_indptr" in arrays else None,
        ranker,
        _rows_of(arrays, "past_query_texts"),
        _ranker_trending(arrays, to_catalog, catalog_size, created_at),
        _rows_of(arrays, "home_user_ids"),
        _rows_of(arrays, "profile_user_ids"),
        search_queries=_rows_of(arrays, "search_query_texts"),
    )


def _rows_of(arrays: dict[str, np.ndarray], name: str) -> dict[str, int]:
    """Each value of a string array (queries, user ids) -> its row, built once at load: looking
    up a dict costs less than searching the memory-mapped array (0.25 ms a request)."""
    values = arrays.get(name)
    return {} if values is None else {str(v): row for row, v in enumerate(values.tolist())}


def _ranker_trending(
    arrays: dict[str, np.ndarray], to_catalog: np.ndarray, catalog_size: int, created_at
) -> "TrendingScores | None":
    """The version's trending scores (version rows) in catalog order."""
    scores = arrays.get("ranker_trending")
    if scores is None:
        return None
    in_catalog = np.zeros(catalog_size, np.float32)
    present = to_catalog >= 0
    in_catalog[to_catalog[present]] = scores[present]
    return TrendingScores(created_at, in_catalog)


class ModelStore:
    """Holds the serving bundle: `load_new()` loads a newly published version (off the event
    loop), `install()` makes it the one requests use."""

    def __init__(self, artifacts_dir: Path, encoder_threads: int = 1):
        self.artifacts_dir = artifacts_dir
        self.encoder_threads = encoder_threads
        self.bundle: ModelBundle | None = None
        self.last_error: str | None = None
        self._failed_folder: Path | None = None

    def pending_version(self) -> Path | None:
        """The current version's folder if it is not the one served (nor one that failed)."""
        folder = current_version_folder(self.artifacts_dir)
        if folder is None or folder == self._failed_folder:
            return None
        if self.bundle is not None and self.bundle.folder == folder:
            return None
        return folder

    def load_new(self, catalog_size: int, position_of: dict[str, int]) -> ModelBundle | None:
        """Load the pending version. A broken version (checksum mismatch, missing or unreadable
        file) is remembered, not retried every few seconds, and leaves the old one serving. At
        start-up, with nothing serving yet, the newest earlier version that is intact serves."""
        folder = self.pending_version()
        if folder is None:
            return None
        bundle = self._load_or_remember(folder, catalog_size, position_of, verify=True)
        if bundle is not None or self.bundle is not None:
            return bundle
        for earlier in earlier_versions(self.artifacts_dir, folder):
            try:
                verify_checksums(earlier)
                bundle = load_bundle(earlier, catalog_size, position_of, self.encoder_threads)
            except ARTIFACT_ERRORS as exc:
                logger.warning("earlier version %s not usable either: %s", earlier.name, exc)
                continue
            logger.warning("serving the earlier version %s until a new one loads", earlier.name)
            return bundle
        return None

    def load_for_catalog(
        self, bundle: ModelBundle, catalog_size: int, position_of: dict[str, int]
    ) -> ModelBundle | None:
        """`bundle`'s version again, over another catalog (products imported since start-up).
        Its files were checked moments ago by load_new; a failure is remembered as there."""
        return self._load_or_remember(bundle.folder, catalog_size, position_of, verify=False)

    def _load_or_remember(
        self, folder: Path, catalog_size: int, position_of: dict[str, int], *, verify: bool
    ) -> ModelBundle | None:
        try:
            if verify:
                verify_checksums(folder)
            return load_bundle(folder, catalog_size, position_of, self.encoder_threads)
        except ARTIFACT_ERRORS as exc:
            self._failed_folder = folder
            self.last_error = f"{folder.name}: {exc}"
            logger.warning("could not load artifacts %s: %s", folder, exc)
            metrics.MODEL_LOAD_FAILURES.inc()
            return None

    def install(self, bundle: ModelBundle) -> None:
        previous = self.bundle
        self.bundle = bundle  # one reference swap: requests see the old or the new bundle
        if bundle.folder == current_version_folder(self.artifacts_dir):
            self.last_error = None  # else an earlier version stands in for a broken current one
        if previous is not None:
            metrics.MODEL_INFO.remove(previous.version)
        metrics.MODEL_INFO.labels(bundle.version).set(1)
        metrics.MODEL_CREATED.set(bundle.created_at.timestamp())
        logger.info("serving model version %s", bundle.version)

    def versions(self) -> dict[str, str | None]:
        version = self.bundle.version if self.bundle else None
        return {
            "content": version,
            "collaborative": version,
            "co_click": version,
            "session_knn": version if self.bundle and self.bundle.sessions else None,
            "ranker": version if self.bundle and self.bundle.ranker else None,
            "embeddings": version if self.bundle and self.bundle.vector_index else None,
        }


@dataclass
class TrendingScores:
    """Trending scores (persisted in the database) in catalog order, scaled to 0..1."""

    computed_at: datetime
    scores: np.ndarray


def trending_in_catalog_order(
    rows: list[tuple[str, float]],
    position_of: dict[str, int],
    catalog_size: int,
    computed_at: datetime,
) -> TrendingScores:
    scores = np.zeros(catalog_size, dtype=np.float32)
    for product_id, score in rows:
        position = position_of.get(product_id)
        if position is not None:
            scores[position] = score
    top = scores.max() if catalog_size else 0.0
    return TrendingScores(computed_at, scores / top if top > 0 else scores)
