"""Train every model from the catalog and the event log into a new artifact version, validate it,
then make it current.

    python -m ml.train   (knobs: CONTENT_TOP_K, COCLICK_MIN_SESSIONS, ... see config/settings.py)

Artifacts (data/artifacts/<version>/): product_ids, content TF-IDF (CSC for query lookup,
vocabulary, idf) and top-K similar products, item-CF neighbours, co-click rules, past sessions
for session-kNN, user profiles, product embeddings with their vector index, the search synonyms,
plus manifest.json.
Trending scores live in the database (ml.update_trending); a retrain also brings them up to date.
"""

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import numpy as np
import pandas as pd
from tqdm import tqdm

from config.settings import Settings, get_settings
from database.migrations import apply_migrations
from database.server import database_url
from database.training import fetch_catalog, fetch_events, fetch_history_stamps
from database.trending import update_trending
from ml.export_events import read_events, write_events
from ml.neighbors import prefixed
from ml.prepare_home import prepare_home_rankings, ranker_trending
from ml.train_coclick import co_click_rules
from ml.train_collaborative import interaction_matrix, item_neighbors
from ml.train_content_model import fit_tfidf, similar_products
from ml.train_ease import ease_neighbors, fit_ease
from ml.train_embeddings import (
    build_index,
    embedding_text,
    export_query_encoder,
    popular_queries,
    product_embeddings,
    query_embeddings,
)
from ml.train_profiles import build_profiles
from ml.train_ranker import RankerExamples, RankerTraining, fit_ranker, ranker_examples
from ml.train_search_fusion import DEFAULT_WEIGHT, FusionChoice, learn_semantic_weight
from ml.train_sessions import session_index, split_sessions
from services.artifacts import (
    MANIFEST,
    SYNONYMS_FILE,
    current_version_folder,
    load_version,
    publish,
    verify_checksums,
    write_version,
)
from services.catalog import Catalog
from services.feeds import SearchSettings, fuse_retrieval, past_query_results
from services.models import ModelBundle, bundle_from_arrays
from services.ranking import (
    RANKER_FILE,
    Ranker,
    compile_ranker,
    compiled_ranker_file,
    ranker_files,
)
from services.search import pack_fused, search_settings
from services.synonyms import Synonyms
from services.text_encoder import (
    EMBEDDING_DIM,
    ENCODER_ID,
    QUERY_ENCODER_FILE,
    QUERY_TOKENIZER_FILE,
    open_query_encoder,
)
from services.vector_index import INDEX_FILE, open_index


@dataclass
class TrainingResult:
    folder: Path
    seconds: dict[str, float]
    products: int
    clicks: int
    counts: dict[str, int]  # co_click_rules, embedded_products (encoded now, not reused)

    @property
    def rules(self) -> int:
        return self.counts.get("co_click_rules", 0)


MODELS = ("content", "cf", "coclick", "sessions", "ease", "profiles", "embeddings")
# Which arrays and files of a version belong to which model (reused as they are when only
# others retrain).
MODEL_ARRAY_PREFIXES = {
    "content": ("content_", "tfidf_"),
    "cf": ("cf_",),
    "coclick": ("coclick_",),
    "sessions": ("sessions_",),
    "ease": ("ease_",),
    "profiles": ("profile_",),
    "embeddings": ("embedding_",),
}
QUERY_ENCODER_FILES = (QUERY_ENCODER_FILE, QUERY_TOKENIZER_FILE)
MODEL_FILES = {"embeddings": (INDEX_FILE, *QUERY_ENCODER_FILES)}


@dataclass
class PreviousEmbeddings:
    digests: np.ndarray
    vectors: np.ndarray
    query_texts: np.ndarray | None
    query_vectors: np.ndarray | None


EVENT_MODELS = ("cf", "coclick", "sessions", "ease")
# Fits the event models (EVENT_MODELS) on the clicks of the training window that ends at `now`
# (clicks at or after it excluded) and returns (arrays, seconds per step, counts): this module's
# local_event_models, or ml.spark_training's SparkEventModels.
EventModels = Callable[
    [datetime, tuple[str, ...]],
    tuple[dict[str, np.ndarray], dict[str, float], dict[str, int]],
]


def train_arrays(
    catalog: pd.DataFrame,
    clicks: pd.DataFrame,
    settings: Settings,
    now: datetime,
    progress: bool = False,
    models: tuple[str, ...] = MODELS,
    events: pd.DataFrame | None = None,
    previous_embeddings: PreviousEmbeddings | None = None,
    index_path: Path | None = None,
    event_models_fn: EventModels | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, float], dict[str, int]]:
    """Fit the chosen models; returns arrays, seconds per step and counts. The event models
    are fitted by `event_models_fn` (default: here, on `clicks`). The embeddings' vector index
    is written to `index_path`."""
    with tqdm(total=len(models), desc="models", unit="model", disable=not progress) as bar:
        seconds: dict[str, float] = {}
        arrays: dict[str, np.ndarray] = {"product_ids": catalog["id"].to_numpy(dtype="U10")}
        counts: dict[str, int] = {}
        if "content" in models:
            arrays |= _content_arrays(catalog, settings, progress, seconds)
            bar.update()
        if "embeddings" in models:
            if index_path is None:
                raise ValueError("embeddings need an index_path")
            arrays |= _embedding_arrays(
                catalog,
                events,
                settings,
                previous_embeddings,
                index_path,
                progress,
                seconds,
                counts,
            )
            bar.update()
        if "profiles" in models and events is not None:
            started = time.perf_counter()
            arrays |= build_profiles(events, catalog, now.timestamp(), settings.cf_half_life_days)
            seconds["profiles"] = time.perf_counter() - started
            bar.update()
        event_models = tuple(m for m in models if m in EVENT_MODELS)
        if event_models:
            if event_models_fn is None:
                fitted = event_arrays(
                    arrays["product_ids"], in_click_order(clicks), settings, now, event_models
                )
            else:
                fitted = event_models_fn(now, event_models)
            arrays |= fitted[0]
            seconds |= fitted[1]
            counts |= fitted[2]
            bar.update(len(event_models))
        return arrays, seconds, counts


def local_event_models(
    product_ids: np.ndarray, clicks: pd.DataFrame, settings: Settings
) -> EventModels:
    """The event models fitted in this process, on in-memory clicks (ordered once for all the
    windows it is asked for)."""
    clicks = in_click_order(clicks)

    def fit(now: datetime, models: tuple[str, ...]):
        window = clicks[
            (clicks["epoch"] >= now.timestamp() - settings.training_window_days * 86400)
            & (clicks["epoch"] < now.timestamp())
        ]
        return event_arrays(product_ids, window, settings, now, models)

    return fit


def in_click_order(clicks: pd.DataFrame) -> pd.DataFrame:
    """Clicks in one order (user, time, product): sessions, and so their numbering and the
    lists built from them, do not depend on the order the log was read in (the Spark engine
    orders them the same way)."""
    return clicks.sort_values(["user_id", "epoch", "product_id"], kind="stable")


def event_arrays(
    product_ids: np.ndarray,
    clicks: pd.DataFrame,
    settings: Settings,
    now: datetime,
    models: tuple[str, ...],
) -> tuple[dict[str, np.ndarray], dict[str, float], dict[str, int]]:
    """Item-CF, EASE, past sessions and co-click rules from clicks (user_id, product_id, epoch)
    in_click_order."""
    arrays: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    counts: dict[str, int] = {}
    n_items = len(product_ids)
    item_positions = pd.Index(product_ids).get_indexer(clicks["product_id"])
    known = item_positions >= 0  # clicks on products no longer in the catalog are ignored
    clicks = clicks[known]
    item_positions = item_positions[known]
    user_positions, _ = pd.factorize(clicks["user_id"])
    epoch = clicks["epoch"].to_numpy()
    age_hours = (now.timestamp() - epoch) / 3600.0

    if "cf" in models:
        started = time.perf_counter()
        half_life_hours = settings.cf_half_life_days * 24
        cf_weights = np.power(0.5, age_hours / half_life_hours)
        user_items = interaction_matrix(user_positions, item_positions, cf_weights, n_items)
        arrays |= prefixed("cf", item_neighbors(user_items, settings.cf_top_k))
        seconds["collaborative"] = time.perf_counter() - started

    if "ease" in models:
        started = time.perf_counter()
        binary = interaction_matrix(
            user_positions, item_positions, np.ones(len(item_positions), np.float32), n_items
        )
        ease = fit_ease(binary, l2=settings.ease_l2, max_items=settings.ease_max_items)
        arrays |= prefixed("ease", ease_neighbors(ease, n_items, settings.cf_top_k))
        counts["ease_items"] = len(ease.items)
        seconds["ease"] = time.perf_counter() - started
    if "coclick" in models or "sessions" in models:
        started = time.perf_counter()
        order, session_of_click = split_sessions(user_positions, epoch)
        sessions = session_index(session_of_click, item_positions[order], n_items)
        counts["sessions"] = len(sessions["sessions_session_indptr"]) - 1
        if "sessions" in models:
            arrays |= sessions
            # Clicks per product in the window and in its last week: features of the home
            # ranker (trending, decayed by the hour, is the third horizon).
            arrays["sessions_log_clicks"] = np.log1p(
                np.bincount(item_positions, minlength=n_items)
            ).astype(np.float32)
            last_week = age_hours <= 7 * 24
            arrays["sessions_week_log_clicks"] = np.log1p(
                np.bincount(item_positions[last_week], minlength=n_items)
            ).astype(np.float32)
        seconds["sessions"] = time.perf_counter() - started
    if "coclick" in models:
        started = time.perf_counter()
        rules_triplet, counts["co_click_rules"] = co_click_rules(
            sessions["sessions_session_indptr"],
            sessions["sessions_session_items"],
            n_items,
            min_sessions=settings.coclick_min_sessions,
            min_confidence=settings.coclick_min_confidence,
            min_lift=settings.coclick_min_lift,
        )
        arrays |= prefixed("coclick", rules_triplet)
        seconds["coclick"] = time.perf_counter() - started
    return arrays, seconds, counts


def _embedding_arrays(
    catalog: pd.DataFrame,
    events: pd.DataFrame | None,
    settings: Settings,
    previous: PreviousEmbeddings | None,
    index_path: Path,
    progress: bool,
    seconds: dict[str, float],
    counts: dict[str, int],
) -> dict[str, np.ndarray]:
    """Product embeddings (new or changed texts encoded), their index written to `index_path`,
    and the popular queries' embeddings."""
    started = time.perf_counter()
    texts = [
        embedding_text(n, s) for n, s in zip(catalog["name"], catalog["sub_category"], strict=True)
    ]
    arrays, counts["embedded_products"] = product_embeddings(
        texts,
        previous.digests if previous else None,
        previous.vectors if previous else None,
        progress=progress,
    )
    seconds["embeddings_encode"] = time.perf_counter() - started
    seconds["embeddings_index"] = build_index(arrays["embedding_vectors"], index_path)
    started = time.perf_counter()
    queries = popular_queries(
        events["query"] if events is not None else pd.Series(dtype=str),
        settings.search_query_cache_size,
    )
    query_arrays, counts["embedded_queries"] = query_embeddings(
        queries,
        previous.query_texts if previous else None,
        previous.query_vectors if previous else None,
    )
    seconds["embeddings_queries"] = time.perf_counter() - started
    return arrays | query_arrays


def _content_arrays(
    catalog: pd.DataFrame, settings: Settings, progress: bool, seconds: dict[str, float]
) -> dict[str, np.ndarray]:
    started = time.perf_counter()
    n_items = len(catalog)
    arrays: dict[str, np.ndarray] = {}
    matrix, vocabulary, idf = fit_tfidf(catalog["name"].tolist(), catalog["sub_category"].tolist())
    with tqdm(total=n_items, desc="content top-k", disable=not progress, unit="item") as bar:
        arrays |= prefixed(
            "content",
            similar_products(
                matrix,
                catalog["sub_category"].tolist(),
                catalog["main_category"].tolist(),
                settings.content_top_k,
                bar,
            ),
        )
    csc = matrix.tocsc()
    arrays |= {
        "tfidf_data": csc.data,
        "tfidf_indices": csc.indices.astype(np.int32),
        "tfidf_indptr": csc.indptr.astype(np.int64),
        "tfidf_vocabulary": vocabulary,
        "tfidf_idf": idf,
    }
    seconds["content"] = time.perf_counter() - started
    return arrays


def train_ranker_file(
    catalog: Catalog,
    events: pd.DataFrame,
    settings: Settings,
    now: datetime,
    arrays: dict[str, np.ndarray],
    path: Path,
    event_models: EventModels | None = None,
) -> RankerTraining:
    """Fit the home ranker (ml/train_ranker.py) and write it to `path` when there is enough data.
    At each cut-off the sources it learns from are refitted on the events before it (by
    `event_models`, default in this process); the content model does not depend on events and
    is taken from `arrays`."""
    if event_models is None:
        clicks = events[events["event_type"] == "product_click"]
        event_models = local_event_models(
            catalog.frame["id"].to_numpy(dtype="U10"), clicks, settings
        )
    examples = RankerExamples()
    for step in range(1, settings.ranker_cutoffs + 1):
        cutoff = now - timedelta(days=step * settings.ranker_label_days)
        before = events[events["epoch"] < cutoff.timestamp()]
        after = events[
            (events["epoch"] >= cutoff.timestamp())
            & (events["epoch"] < cutoff.timestamp() + settings.ranker_label_days * 86400)
        ]
        before_clicks = before[
            (before["event_type"] == "product_click")
            & (before["epoch"] >= cutoff.timestamp() - settings.training_window_days * 86400)
        ]
        if before_clicks.empty:
            break
        source_arrays, _, _ = event_models(cutoff, EVENT_MODELS)
        source_arrays |= {
            k: v
            for k, v in arrays.items()
            if k == "product_ids" or k.startswith(("content_", "tfidf_"))
        }
        bundle = bundle_from_arrays(
            source_arrays,
            len(catalog),
            catalog.position_of,
            version=f"ranker-training-{step}",
            folder=path.parent,
            created_at=cutoff,
            synonyms=Synonyms({}),
        )
        examples.extend(
            ranker_examples(
                catalog=catalog,
                bundle=bundle,
                before=before,
                after=after,
                cutoff=cutoff,
                history_days=settings.history_days,
                trending_rate=settings.trending_decay_rate,
                max_users=settings.ranker_max_users,
                max_candidates=settings.ranker_max_candidates,
                seed=step,
            )
        )
    result = fit_ranker(examples)
    if result.booster is not None:
        result.booster.save_model(str(path))
        compile_ranker(path)  # once here, not in every worker that loads the version
    return result


def past_query_arrays(
    catalog: Catalog, arrays: dict[str, np.ndarray], events: pd.DataFrame, limit: int
) -> dict[str, np.ndarray]:
    """The lexical matches of the log's `limit` most frequent searches, as the home feed's
    search source computes them (services.feeds.past_query_results), for serving to read
    instead of matching again: product rows of this version and scores, one list per query."""
    searches = events.loc[events["event_type"] == "search_query", "query"].dropna()
    queries = searches[searches != ""].value_counts().index[:limit].tolist()
    bundle = _training_bundle(catalog, arrays, Synonyms({}))
    found = [past_query_results(bundle, query) for query in queries]
    return {
        "past_query_texts": np.array(queries, dtype=str),
        "past_query_indptr": np.r_[0, np.cumsum([len(p) for p, _ in found])].astype(np.int64),
        "past_query_products": np.concatenate([p for p, _ in found] or [[]]).astype(np.int64),
        "past_query_scores": np.concatenate([s for _, s in found] or [[]]).astype(np.float64),
    }


def _training_bundle(
    catalog: Catalog, arrays: dict[str, np.ndarray], synonyms: Synonyms, vector_index=None
) -> ModelBundle:
    """The arrays being trained as a serving bundle over the catalog they were trained on, so
    the serving code computes what training prepares for it."""
    return bundle_from_arrays(
        arrays,
        len(catalog),
        catalog.position_of,
        version="in-training",
        folder=Path("."),
        created_at=datetime.now(UTC),
        synonyms=synonyms,
        vector_index=vector_index,
    )


def search_fusion_weight(
    catalog: Catalog,
    arrays: dict[str, np.ndarray],
    index_path: Path,
    events: pd.DataFrame,
    settings: Settings,
) -> FusionChoice:
    """The semantic path's fusion weight learned from the log's searches that led to a click
    (ml/train_search_fusion.py), as serving fuses them."""
    if arrays.get("embedding_query_texts") is None:
        return FusionChoice(DEFAULT_WEIGHT, 0, {})
    bundle = _training_bundle(
        catalog, arrays, Synonyms.load(settings.synonyms_path), open_index(index_path)
    )
    return learn_semantic_weight(catalog, bundle, events, SearchSettings.of(settings))


def prepared_search_arrays(
    catalog: Catalog, arrays: dict[str, np.ndarray], index_path: Path, settings: Settings
) -> dict[str, np.ndarray]:
    """The fused lexical and semantic retrieval of the searches training embedded (the log's
    most frequent), as serving computes them (services.feeds.fuse_retrieval), for serving to
    read instead of searching: at 550k products a search's postings and vector search are
    milliseconds, paid by each worker for each query it had not cached."""
    queries = arrays.get("embedding_query_texts")
    if queries is None or not len(queries):
        return {}
    bundle = _training_bundle(
        catalog, arrays, Synonyms.load(settings.synonyms_path), open_index(index_path)
    )
    search = SearchSettings.of(settings)
    vectors = arrays["embedding_query_vectors"]
    # A query with a typo is served under its corrected text (ModelBundle.searched):
    # prepared there when that text is frequent too.
    rows = [row for row, text in enumerate(queries.tolist()) if bundle.searched(text).text == text]
    texts = [str(queries[row]) for row in rows]
    results = [
        fuse_retrieval(
            bundle, bundle.synonyms.expand(text), np.asarray(vectors[row], np.float32), search
        )
        for row, text in zip(rows, texts, strict=True)
    ]
    return pack_fused(texts, results, search_settings(search))


def reusable_arrays(
    folder: Path | None, product_ids: np.ndarray, models: tuple[str, ...]
) -> tuple[dict[str, np.ndarray], dict[str, Path]] | None:
    """Arrays and files of `models` from an existing version, if it was trained on the same
    catalog."""
    if folder is None:
        return None
    _, arrays = load_version(folder)
    if not np.array_equal(arrays["product_ids"], product_ids):
        return None
    carried, files = {}, {}
    for model in models:
        found = {n: v for n, v in arrays.items() if n.startswith(MODEL_ARRAY_PREFIXES[model])}
        model_files = {name: folder / name for name in MODEL_FILES.get(model, ())}
        if not found or not all(path.exists() for path in model_files.values()):
            return None  # a version from before this model existed
        carried |= {name: np.asarray(value) for name, value in found.items()}
        files |= model_files
    return carried, files


def previous_embeddings(folder: Path | None) -> PreviousEmbeddings | None:
    """Embeddings of the current version, reusable by text digest whatever the catalog."""
    if folder is None:
        return None
    _, arrays = load_version(folder)
    if "embedding_digests" not in arrays:
        return None
    return PreviousEmbeddings(
        arrays["embedding_digests"],
        arrays["embedding_vectors"],
        arrays.get("embedding_query_texts"),
        arrays.get("embedding_query_vectors"),
    )


def query_encoder_files(previous: Path | None, work: Path) -> dict[str, Path]:
    """The previous version's exported query encoder if it was exported with today's encoder
    settings (the files are the same), else a new export into `work`."""
    if previous is not None:
        manifest = json.loads((previous / MANIFEST).read_text())
        files = {name: previous / name for name in QUERY_ENCODER_FILES}
        if manifest.get("query_encoder") == ENCODER_ID and all(p.exists() for p in files.values()):
            return files
    return export_query_encoder(work)


def validate_version(
    folder: Path, expected_products: int, product_texts: list[str] | None = None
) -> None:
    """A version must load, match its checksums and have sane sizes before it serves. With the
    products' embedding texts, its query encoder must embed them as training did."""
    verify_checksums(folder)
    _, arrays = load_version(folder)
    if len(arrays["product_ids"]) != expected_products:
        raise ValueError("product count mismatch")
    for prefix in ("content", "cf", "coclick", "ease"):
        if len(arrays[f"{prefix}_indptr"]) != expected_products + 1:
            raise ValueError(f"{prefix}: neighbour lists do not cover the catalog")
        if (
            arrays[f"{prefix}_indices"].size
            and arrays[f"{prefix}_indices"].max() >= expected_products
        ):
            raise ValueError(f"{prefix}: neighbour index out of range")
    session_items = arrays["sessions_session_items"]
    if len(arrays["sessions_item_indptr"]) != expected_products + 1 or (
        session_items.size and session_items.max() >= expected_products
    ):
        raise ValueError("sessions: index does not match the catalog")
    users = len(arrays["profile_user_ids"])
    for facet in ("category", "sub_category", "term"):
        if len(arrays[f"profile_{facet}_indptr"]) != users + 1:
            raise ValueError(f"profiles: {facet} lists do not cover the users")
    if expected_products > 1 and arrays["content_indptr"][-1] == 0:
        raise ValueError("content model has no neighbours at all")
    vectors = arrays["embedding_vectors"]
    if vectors.shape != (expected_products, EMBEDDING_DIM) or len(
        arrays["embedding_digests"]
    ) != len(vectors):
        raise ValueError("embeddings do not cover the catalog")
    index = open_index(folder / INDEX_FILE)
    if len(index) != expected_products:
        raise ValueError("vector index does not cover the catalog")
    if expected_products:
        # Sample queries: products' own vectors must find themselves, or a product with the same
        # vector (identical names are common), among their nearest. HNSW is approximate and its
        # multi-threaded build is not deterministic, so a share of misses is tolerated.
        samples = np.unique(np.linspace(0, expected_products - 1, 50).astype(np.int64))
        found = 0
        for sample in samples.tolist():
            hits = index.search(np.asarray(vectors[sample], np.float32), 10)
            found += bool(sample in hits.keys or (len(hits.distances) and hits.distances[0] < 1e-3))
        if found < 0.9 * len(samples):
            raise ValueError(
                f"vector index finds only {found} of {len(samples)} products from their own vector"
            )
    past_queries = arrays.get("past_query_texts")
    if past_queries is not None and (
        len(arrays["past_query_indptr"]) != len(past_queries) + 1
        or (arrays["past_query_products"] >= expected_products).any()
    ):
        raise ValueError("past-query matches do not fit their queries or the catalog")
    searches = arrays.get("search_query_texts")
    if searches is not None and (
        len(arrays["search_indptr"]) != len(searches) + 1
        or (arrays["search_products"] >= expected_products).any()
        or len(arrays["search_matched"]) != len(arrays["search_products"])
        or arrays["search_matched"].max(initial=-1) >= len(arrays["search_phrase_offsets"]) - 1
    ):
        raise ValueError("prepared searches do not fit their queries or the catalog")
    weight = arrays.get("search_semantic_weight")
    if weight is not None and (weight.shape != (1,) or not 0 < float(weight[0]) < np.inf):
        raise ValueError("the search fusion's semantic weight is not one positive number")
    if "ranker_trending" in arrays and len(arrays["ranker_trending"]) != expected_products:
        raise ValueError("the ranker's trending scores do not cover the catalog")
    home_users = arrays.get("home_user_ids")
    if home_users is not None and (
        len(arrays["home_indptr"]) != len(home_users) + 1
        or arrays["home_fingerprints"].shape != (len(home_users), 3)
        or ("home_stamps" in arrays and len(arrays["home_stamps"]) != len(home_users))
        or (
            "home_seen_indptr" in arrays
            and (
                len(arrays["home_seen_indptr"]) != len(home_users) + 1
                or (arrays["home_seen_products"] >= expected_products).any()
            )
        )
        or (arrays["home_products"] >= expected_products).any()
        or len(arrays["home_reason_indptr"]) != len(arrays["home_products"]) + 1
    ):
        raise ValueError("prepared home rankings do not fit their users or the catalog")
    query_texts = arrays.get("embedding_query_texts")
    if query_texts is not None and len(query_texts) != len(arrays["embedding_query_vectors"]):
        raise ValueError("query embeddings do not match their texts")
    Synonyms.load(folder / SYNONYMS_FILE)
    if (folder / RANKER_FILE).exists():
        ranker = Ranker(folder / RANKER_FILE)  # loads, and has the features serving computes
        compiled = compiled_ranker_file(folder / RANKER_FILE)
        if compiled is not None and compiled.exists() and ranker.compiled is None:
            raise ValueError("the compiled ranker does not give the model's scores")
    encoder = open_query_encoder(folder)
    if encoder is None:
        raise ValueError("the version has no query encoder")
    if product_texts and expected_products:
        # The search side must put a query where the products were put: the export embeds
        # products' own texts as the torch model did (stored as float16).
        samples = np.unique(np.linspace(0, expected_products - 1, 20).astype(np.int64)).tolist()
        agreement = min(
            float(encoder.embed(product_texts[row]) @ np.asarray(vectors[row], np.float32))
            for row in samples
        )
        if agreement < 0.99:
            raise ValueError(f"query encoder disagrees with the product embeddings ({agreement})")


def _query_encoder_id(previous: Path | None, models: tuple[str, ...]) -> str:
    """The encoder settings the version's query encoder was exported with: today's, unless the
    embeddings (and their encoder) were carried over from the previous version."""
    if "embeddings" in models or previous is None:
        return ENCODER_ID
    return json.loads((previous / MANIFEST).read_text()).get("query_encoder", ENCODER_ID)


WORK_PREFIX = ".training-"  # + the training process's pid + a random part


def remove_abandoned_work(root: Path) -> list[Path]:
    """Delete the work folders of trainings whose process is gone (killed past its time limit,
    or by a crash): they are never published, and at 550k products each holds GBs."""
    removed = []
    for folder in root.glob(f"{WORK_PREFIX}*"):
        pid = folder.name[len(WORK_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


ENGINES = ("local", "spark")


@contextmanager
def _event_models(
    engine: str,
    events: pd.DataFrame,
    events_path: str | None,
    catalog: pd.DataFrame,
    settings: Settings,
    work: Path,
) -> Iterator[EventModels | None]:
    """The Spark engine over the Parquet export (or, without one, over the events read, written
    to `work`); None for the local engine."""
    if engine == "local":
        yield None
        return
    # Imported here: pyspark is an optional extra, not needed by the local engine.
    from ml.spark_training import SparkEventModels, spark_session

    if events_path is None:
        events_path = str(work / "events.parquet")
        write_events(events, events_path)
    spark = spark_session(settings.spark_driver_memory)
    try:
        yield SparkEventModels(
            spark,
            spark.read.parquet(events_path),
            catalog["id"].to_numpy(dtype="U10"),
            settings,
        )
    finally:
        spark.stop()


def prune_old_versions(root: Path, keep: int) -> None:
    current = current_version_folder(root)
    versions = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for folder in versions[:-keep]:
        if folder != current:
            shutil.rmtree(folder, ignore_errors=True)


async def train(
    *,
    conn: asyncpg.Connection,
    settings: Settings,
    progress: bool = False,
    models: tuple[str, ...] = MODELS,
    engine: str = "local",
    events_path: str | None = None,
    now: datetime | None = None,
) -> TrainingResult:
    """Train `models` on the database's data and publish a validated new version; the other
    models are carried over from the current version when it matches the catalog (else all
    are trained). `engine` "spark" fits the event models on Spark (ml/spark_training.py);
    `events_path`, a Parquet export of the log (ml.export_events; a path or a URL such as
    hdfs://... or s3://... that pyarrow and Spark both read), replaces the database's.
    `now`: the training's time (default the clock's), which its windows end at."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}")
    now = now or datetime.now(UTC)
    started = time.perf_counter()
    catalog = await fetch_catalog(conn=conn)
    # One read of the log serves both windows: clicks for the models, all events for profiles.
    window_days = max(settings.training_window_days, settings.history_days)
    since = now - timedelta(days=window_days)
    history_stamps = None  # unknown for an export: prepared users' requests read their tables
    if events_path is None:
        # One snapshot for both: a stamp is the one of the history read with it.
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            events = await fetch_events(conn=conn, since=since)
            history_stamps = await fetch_history_stamps(conn=conn)
    else:
        events = await asyncio.to_thread(read_events, events_path, since)
    clicks = events[
        (events["event_type"] == "product_click")
        & (events["epoch"] >= now.timestamp() - settings.training_window_days * 86400)
    ]
    all_events = events
    events = events[events["epoch"] >= now.timestamp() - settings.history_days * 86400]
    load_seconds = time.perf_counter() - started
    if catalog.empty:
        raise ValueError("the catalog is empty: import products first")
    Synonyms.load(settings.synonyms_path)  # a malformed file fails here, before any work
    previous = current_version_folder(settings.artifacts_dir)
    others = tuple(m for m in MODELS if m not in models)
    reused = (
        reusable_arrays(previous, catalog["id"].to_numpy(dtype="U10"), others)
        if others
        else ({}, {})
    )
    if reused is None:
        # No version to take them from, or the catalog changed: train everything.
        models, reused = MODELS, ({}, {})
    carried, carried_files = reused
    settings.artifacts_dir.mkdir(parents=True, exist_ok=True)
    remove_abandoned_work(settings.artifacts_dir)
    work_prefix = f"{WORK_PREFIX}{os.getpid()}-"
    with (
        tempfile.TemporaryDirectory(dir=settings.artifacts_dir, prefix=work_prefix) as work,
        _event_models(engine, events, events_path, catalog, settings, Path(work)) as event_models,
    ):
        index_path = Path(work) / INDEX_FILE
        arrays, seconds, counts = await asyncio.to_thread(
            train_arrays,
            catalog,
            clicks,
            settings,
            now,
            progress,
            models,
            events,
            previous_embeddings(previous) if "embeddings" in models else None,
            index_path,
            event_models,
        )
        seconds["load"] = load_seconds
        started = time.perf_counter()
        # The catalog trained on, by position (= the version's rows), for the steps below.
        trained_on = await asyncio.to_thread(Catalog.from_frame, catalog)
        arrays |= await asyncio.to_thread(
            past_query_arrays,
            trained_on,
            carried | arrays,
            events,
            settings.search_query_cache_size,
        )
        seconds["past_queries"] = time.perf_counter() - started
        new_files = {}
        if "embeddings" in models:
            new_files[INDEX_FILE] = index_path
            new_files |= await asyncio.to_thread(query_encoder_files, previous, Path(work))
        started = time.perf_counter()
        fusion = await asyncio.to_thread(
            search_fusion_weight,
            trained_on,
            carried | arrays,
            (carried_files | new_files)[INDEX_FILE],
            events,
            settings,
        )
        arrays["search_semantic_weight"] = np.array([fusion.weight])
        counts["search_fusion_searches"] = fusion.searches
        seconds["search_fusion"] = time.perf_counter() - started
        started = time.perf_counter()
        arrays |= await asyncio.to_thread(
            prepared_search_arrays,
            trained_on,
            carried | arrays,
            (carried_files | new_files)[INDEX_FILE],
            settings,
        )
        seconds["prepared_searches"] = time.perf_counter() - started
        started_ranker = time.perf_counter()
        ranker_path = Path(work) / RANKER_FILE
        ranking = await asyncio.to_thread(
            train_ranker_file,
            trained_on,
            all_events,
            settings,
            now,
            carried | arrays,
            ranker_path,
            event_models,
        )
        seconds["ranker"] = time.perf_counter() - started_ranker
        counts["ranker_users"] = ranking.users
        counts["ranker_rows"] = ranking.rows
        if ranking.booster is not None:
            new_files |= ranker_files(ranker_path)
            started = time.perf_counter()
            arrays["ranker_trending"] = ranker_trending(
                trained_on, clicks, now, settings.trending_decay_rate
            )
            if settings.home_prepared_users:
                prepared, counts["home_prepared_users"] = await asyncio.to_thread(
                    prepare_home_rankings,
                    catalog=trained_on,
                    arrays=carried | arrays,
                    ranker_path=ranker_path,
                    events=events,
                    history_stamps=history_stamps,
                    now=now,
                    max_users=settings.home_prepared_users,
                    progress=progress,
                )
                arrays |= prepared
            seconds["home_rankings"] = time.perf_counter() - started
        folder = write_version(
            settings.artifacts_dir,
            carried | arrays,
            inputs={"products": len(catalog), "clicks": len(clicks)},
            files=carried_files | new_files | {SYNONYMS_FILE: settings.synonyms_path},
            extra={
                "trained": list(models),
                "carried_over_from": previous.name if carried else None,
                "ranker": "lightgbm-lambdarank" if ranking.booster else None,
                "ranker_skipped_because": ranking.reason,
                "query_encoder": _query_encoder_id(previous, models),
                "training_seconds": seconds,
                **counts,
            },
        )
    try:
        validate_version(
            folder,
            len(catalog),
            [
                embedding_text(n, s)
                for n, s in zip(catalog["name"], catalog["sub_category"], strict=True)
            ],
        )
    except Exception:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    publish(settings.artifacts_dir, folder)
    prune_old_versions(settings.artifacts_dir, settings.artifacts_keep)
    trending = await update_trending(
        conn=conn,
        decay_rate=settings.trending_decay_rate,
        window_days=settings.training_window_days,
        now=now,
    )
    seconds["trending"] = trending.seconds
    return TrainingResult(folder, seconds, len(catalog), len(clicks), counts)


async def _main(
    progress: bool, models: tuple[str, ...], engine: str = "local", events_path: str | None = None
) -> None:
    settings = get_settings()
    with database_url(settings.database_url, settings.pgdata_dir) as url:
        conn = await asyncpg.connect(url)
        try:
            await apply_migrations(conn)
            result = await train(
                conn=conn,
                settings=settings,
                progress=progress,
                models=models,
                engine=engine,
                events_path=events_path,
            )
        finally:
            await conn.close()
    steps = ", ".join(f"{step} {secs:.1f} s" for step, secs in result.seconds.items())
    print(
        f"published {result.folder.name}: {result.products} products, {result.clicks} clicks, "
        f"{result.rules} co-click rules, "
        f"{result.counts.get('embedded_products', 0)} products embedded ({steps})"
    )


def run_cli(models: tuple[str, ...], description: str) -> None:
    """Command line shared by ml.train and ml.update_synonyms (models=(): none retrained)."""
    parser = argparse.ArgumentParser(
        description=description,
        epilog="Settings come from environment variables (see config/settings.py and the README): "
        "DATABASE_URL, ARTIFACTS_DIR, CONTENT_TOP_K, CF_TOP_K, TRAINING_WINDOW_DAYS, "
        "COCLICK_MIN_SESSIONS, COCLICK_MIN_CONFIDENCE, COCLICK_MIN_LIFT, ...",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    if models:
        parser.add_argument(
            "--only",
            nargs="+",
            choices=MODELS,
            metavar="MODEL",
            help=f"train only these ({', '.join(MODELS)}) and carry the others over from the "
            "current version (all are trained when the catalog changed)",
        )
        parser.add_argument(
            "--engine",
            choices=ENGINES,
            default="local",
            help="spark: item-CF, co-click rules, sessions and EASE's counts as Spark jobs "
            "(pip install '.[spark]'; local mode unless launched by spark-submit)",
        )
        parser.add_argument(
            "--events",
            metavar="PARQUET",
            help="train on this export of the event log (python -m ml.export_events) instead "
            "of the database's",
        )
    args = parser.parse_args()
    chosen = tuple(args.only) if getattr(args, "only", None) else models
    asyncio.run(
        _main(
            progress=not args.no_progress,
            models=chosen,
            engine=getattr(args, "engine", "local"),
            events_path=getattr(args, "events", None),
        )
    )


def main() -> None:
    run_cli(MODELS, __doc__.split("\n")[0])


if __name__ == "__main__":
    main()
