"""Offline evaluation on a temporal split: train on events before a cut-off, predict what each
test user clicks after it.

    python -m ml.evaluate [--test-days 7] [--users 2000] [--out reports]
    python -m ml.evaluate --sessions ../shared/data/diginetica [--out reports]
    python -m ml.evaluate --user-log clicks.csv [--test-days 7]   (user, item, timestamp[, ...])

Home feed: the hybrid (default weights and a small grid) against popularity, content-only,
co-click-only and item-CF-only, on HR@10, NDCG@10, MRR, catalog coverage, intra-list category
diversity and novelty. Similar products: does a product's list hold what was clicked next in the
same session (co-click ground truth)? Search: is the product clicked after a search in its top 10?
Writes <out>/evaluation.json, evaluation.md and evaluation.png (accuracy vs diversity).
"""

import argparse
import asyncio
import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import asyncpg
import numpy as np
import pandas as pd
from tqdm import tqdm

from config.settings import Settings, get_settings
from database.server import database_url
from database.training import fetch_catalog, fetch_events
from ml.evaluate_sessions import evaluate_sessions, load_sessions
from ml.evaluate_sessions import markdown as sessions_markdown
from ml.evaluate_visits import evaluate_visits
from ml.train import (
    MODELS,
    previous_embeddings,
    query_encoder_files,
    search_fusion_weight,
    train_arrays,
    train_ranker_file,
)
from ml.train_collaborative import interaction_matrix
from ml.train_ease import fit_ease
from ml.train_ranker import history_events, trending_at
from ml.train_search_fusion import search_click_pairs
from ml.train_sessions import SESSION_GAP_SECONDS
from ml.user_log import read_user_log
from services.artifacts import SYNONYMS_FILE, current_version_folder, write_version
from services.catalog import Catalog
from services.feeds import (
    SIMILAR_MODES,
    Filters,
    SearchSettings,
    click_sequence,
    clicked_source,
    home_feed,
    recent_clicks_and_queries,
    search_feed,
    similar_feed,
)
from services.models import ModelBundle, load_bundle
from services.ranking import RANKER_FILE, ranker_files
from services.recommender import hybrid_merge
from services.text_encoder import embed_query
from services.variants import variants_of
from services.vector_index import INDEX_FILE

K = 10
WEIGHT_GRID = [
    (0.5, 0.4, 0.1),  # the default
    (0.7, 0.2, 0.1),
    (0.3, 0.6, 0.1),
    (0.5, 0.5, 0.0),
    (0.4, 0.3, 0.3),
    (0.8, 0.2, 0.0),
]


# --- Metrics (pure; tests check them on hand-computed examples) ------------------------------


def hit_rate(ranked: list[int], relevant: set[int], k: int = K) -> float:
    return 1.0 if set(ranked[:k]) & relevant else 0.0


def ndcg(ranked: list[int], relevant: set[int], k: int = K) -> float:
    """Binary-relevance NDCG@k: DCG = sum of 1/log2(rank + 1) over hits, over the ideal DCG."""
    dcg = sum(1.0 / math.log2(rank + 2) for rank, item in enumerate(ranked[:k]) if item in relevant)
    ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(len(relevant), k)))
    return dcg / ideal if ideal else 0.0


def reciprocal_rank(ranked: list[int], relevant: set[int], k: int = K) -> float:
    for rank, item in enumerate(ranked[:k], start=1):
        if item in relevant:
            return 1.0 / rank
    return 0.0


def intra_list_diversity(categories: list[str]) -> float:
    """Share of pairs of items in the list that are in different categories."""
    n = len(categories)
    if n < 2:
        return 0.0
    same = sum(c * (c - 1) for c in pd.Series(categories).value_counts().tolist())
    return 1.0 - same / (n * (n - 1))


def novelty(ranked: list[int], click_share: np.ndarray) -> float:
    """Mean self-information -log2(p) of the items, p = item's share of training clicks
    (add-one smoothed): recommending the long tail scores higher."""
    if not ranked:
        return 0.0
    return float(np.mean(-np.log2(click_share[ranked])))


@dataclass
class Scores:
    hr: list[float] = field(default_factory=list)
    ndcg: list[float] = field(default_factory=list)
    mrr: list[float] = field(default_factory=list)
    diversity: list[float] = field(default_factory=list)
    novelty: list[float] = field(default_factory=list)
    recommended: set[int] = field(default_factory=set)

    def add(self, ranked, relevant, catalog: Catalog, click_share) -> None:
        self.hr.append(hit_rate(ranked, relevant))
        self.ndcg.append(ndcg(ranked, relevant))
        self.mrr.append(reciprocal_rank(ranked, relevant))
        if ranked:  # an empty list misses (above) but has no diversity or novelty to average
            self.diversity.append(intra_list_diversity([catalog.main_category[p] for p in ranked]))
            self.novelty.append(novelty(ranked, click_share))
        self.recommended.update(ranked)

    def summary(self, catalog_size: int) -> dict[str, float]:
        return {
            "hr@10": round(float(np.mean(self.hr)), 4) if self.hr else 0.0,
            "ndcg@10": round(float(np.mean(self.ndcg)), 4) if self.ndcg else 0.0,
            "mrr": round(float(np.mean(self.mrr)), 4) if self.mrr else 0.0,
            "coverage": round(len(self.recommended) / max(catalog_size, 1), 4),
            "diversity": round(float(np.mean(self.diversity)), 4) if self.diversity else 0.0,
            "novelty": round(float(np.mean(self.novelty)), 2) if self.novelty else 0.0,
            "cases": len(self.hr),
        }


# --- The split and the recommenders ----------------------------------------------------------


@dataclass
class Split:
    cutoff: datetime
    train: pd.DataFrame
    test: pd.DataFrame


def temporal_split(events: pd.DataFrame, test_days: float) -> Split:
    cutoff_epoch = events["epoch"].max() - test_days * 86400
    return Split(
        datetime.fromtimestamp(cutoff_epoch, UTC),
        events[events["epoch"] < cutoff_epoch],
        events[events["epoch"] >= cutoff_epoch],
    )


def evaluate(
    *,
    catalog_frame: pd.DataFrame,
    events: pd.DataFrame,
    settings: Settings,
    test_days: float = 7,
    max_users: int = 2000,
    seed: int = 1,
    progress: bool = False,
    on_section: Callable[[dict], None] | None = None,
    embeddings: bool = True,
) -> dict:
    """Train on the events before the cut-off and score every recommender; returns the report
    (also passed to `on_section` after each section)."""
    started = time.perf_counter()
    split = temporal_split(events, test_days)
    train_clicks = split.train[split.train["event_type"] == "product_click"]
    catalog = Catalog.from_frame(catalog_frame)
    with tempfile.TemporaryDirectory(prefix="evaluation-") as work:
        bundle, ranking = _train_bundle(catalog, split, settings, Path(work), progress, embeddings)
        trending = trending_at(catalog, train_clicks, split.cutoff, settings.trending_decay_rate)
        counts = np.bincount(
            pd.Index(catalog.frame["id"]).get_indexer(train_clicks["product_id"]).clip(0),
            minlength=len(catalog),
        )
        click_share = (counts + 1) / (counts.sum() + len(catalog))
        report = {
            "cutoff": split.cutoff.isoformat(),
            "train_events": len(split.train),
            "test_events": len(split.test),
            "products": len(catalog),
            "ranker": {
                "trained": ranking.booster is not None,
                "skipped_because": ranking.reason,
                "users": ranking.users,
                "rows": ranking.rows,
                "positives": ranking.positives,
                # Share of the ranker's training users whose later clicks any source found.
                "candidate_recall": round(ranking.candidate_recall, 3),
            },
            # Learned on the training part's searches that led to a click.
            "search_semantic_weight": bundle.semantic_weight,
        }
        sections = {
            "home": lambda: _evaluate_home(
                catalog, bundle, trending, split, settings, max_users, seed, click_share, progress
            ),
            "home, mid-visit": lambda: _evaluate_mid_visit(
                catalog, bundle, trending, split, settings, max_users, seed, click_share
            ),
            "similar": lambda: _evaluate_similar(
                catalog, bundle, split, click_share, max_users, seed
            ),
            "search": lambda: _evaluate_search(
                catalog, bundle, trending, split, settings, max_users, seed, click_share, progress
            ),
        }
        for name, section in sections.items():
            report[name] = section()
            report["seconds"] = round(time.perf_counter() - started, 1)
            if on_section is not None:  # a later section's failure keeps the earlier results
                on_section(report)
    return report


def _train_bundle(
    catalog: Catalog, split: Split, settings: Settings, work: Path, progress, embeddings: bool
):
    train_clicks = split.train[split.train["event_type"] == "product_click"]
    previous = (
        previous_embeddings(current_version_folder(settings.artifacts_dir)) if embeddings else None
    )
    # Embeddings only when they can be reused from the current version (encoding a large catalog
    # from scratch takes an hour): semantic search is then part of the search evaluation.
    models = MODELS if previous is not None else tuple(m for m in MODELS if m != "embeddings")
    arrays, _, _ = train_arrays(
        catalog.frame,
        train_clicks,
        settings,
        split.cutoff,
        progress,
        models,
        split.train,
        previous,
        work / INDEX_FILE,
    )
    files = {SYNONYMS_FILE: settings.synonyms_path}
    if "embeddings" in models:
        files[INDEX_FILE] = work / INDEX_FILE
        fusion = search_fusion_weight(catalog, arrays, work / INDEX_FILE, split.train, settings)
        arrays["search_semantic_weight"] = np.array([fusion.weight])
        # Queries embedded as serving embeds them (the current version's export, reused).
        files |= query_encoder_files(current_version_folder(settings.artifacts_dir), work)
    ranking = train_ranker_file(
        catalog, split.train, settings, split.cutoff, arrays, work / RANKER_FILE
    )
    if ranking.booster is not None:
        files |= ranker_files(work / RANKER_FILE)
    folder = write_version(work, arrays, inputs={}, files=files)
    return load_bundle(folder, len(catalog), catalog.position_of), ranking


def _test_users(split: Split, max_users: int, seed: int) -> list[str]:
    test_clickers = set(split.test.loc[split.test["event_type"] == "product_click", "user_id"])
    known = set(split.train["user_id"])
    users = sorted(test_clickers & known)
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(users, min(max_users, len(users)), replace=False).tolist())


def _evaluate_home(
    catalog, bundle, trending, split, settings, max_users, seed, click_share, progress
) -> dict[str, dict]:
    users = _test_users(split, max_users, seed)
    history_start = split.cutoff.timestamp() - settings.history_days * 86400
    train_by_user = dict(
        tuple(split.train[split.train["epoch"] >= history_start].groupby("user_id"))
    )
    test_clicks = split.test[split.test["event_type"] == "product_click"]
    truth_by_user = test_clicks.groupby("user_id")["product_id"].agg(set).to_dict()
    variants = {f"weighted {w}": ("weighted", w) for w in WEIGHT_GRID}
    if settings.ab_variants:  # the shop's live A/B variants, as configured
        variants = {
            f"A/B variant {v.name} ({v.ranker}, share {share:g})": (
                v.ranker,
                (v.weights["clicked"], v.weights["search"], v.weights["diverse"]),
            )
            for v, share in variants_of(settings)
        } | variants
    if bundle.ranker is not None:
        default = (settings.weight_clicked, settings.weight_search, settings.weight_diverse)
        variants = {
            f"learned ranker {default}": ("learned", default),
            f"learned ranker {default[:2] + (0.0,)}": ("learned", default[:2] + (0.0,)),
        } | variants
    singles = (
        ("content", "content"),
        ("co_click", "coclick"),
        ("item_cf", "cf"),
        ("session_knn", "session"),
        ("ease_neighbors", "ease"),
    )
    scores = {
        name: Scores()
        for name in ["popularity", "EASE (baseline)", *(n for n, _ in singles), *variants]
    }
    by_trending = np.argsort(-trending.scores)  # once, not per user
    ease = _fit_ease(catalog, split.train[split.train["epoch"] >= history_start])
    for user in tqdm(users, desc="home", disable=not progress):
        history = history_events(train_by_user.get(user, pd.DataFrame(columns=split.train.columns)))
        seen = {catalog.position_of.get(e["product_id"]) for e in history if e["product_id"]}
        relevant = {catalog.position_of[p] for p in truth_by_user[user] if p in catalog.position_of}
        relevant -= seen  # the feed leaves out what was clicked already: predict the new clicks
        if not relevant:
            continue
        clicks, _ = recent_clicks_and_queries(history, split.cutoff)
        sequence = click_sequence(catalog, history)
        for name, model in singles:
            source = clicked_source(
                catalog, bundle, list(clicks.items()), models=(model,), session_clicks=sequence
            )
            ranked = [c.position for c in hybrid_merge({"m": source}, {"m": 1.0}, exclude=seen)]
            scores[name].add(ranked[:K], relevant, catalog, click_share)
        popular = [int(p) for p in by_trending[: K + len(seen)] if p not in seen]
        scores["popularity"].add(popular[:K], relevant, catalog, click_share)
        ease_items, _ = ease.scores(np.fromiter(seen - {None}, np.int64))
        ranked = [int(p) for p in ease_items[: K + len(seen)] if p not in seen]
        scores["EASE (baseline)"].add(ranked[:K], relevant, catalog, click_share)
        for name, (ranker, (clicked, searched, diverse)) in variants.items():
            feed = home_feed(
                catalog=catalog,
                bundle=bundle,
                trending=trending,
                events=history,
                user_id=user,
                weights={"clicked": clicked, "search": searched, "diverse": diverse},
                boost_weight=settings.trending_boost,
                n=K,
                filters=Filters(),
                exclude_seen=True,
                now=split.cutoff,
                ranker=ranker,
                max_per_sub_category=settings.home_max_per_sub_category,
            )
            scores[name].add([c.position for c in feed.items[:K]], relevant, catalog, click_share)
    return {name: s.summary(len(catalog)) for name, s in scores.items()}


def _evaluate_mid_visit(
    catalog, bundle, trending, split, settings, max_cases, seed, click_share
) -> dict[str, dict]:
    """The next click of a visit in progress (ml/evaluate_visits.py)."""
    scores: dict[str, Scores] = {}

    def score(name: str, ranked: list[int], relevant: set[int]) -> None:
        scores.setdefault(name, Scores()).add(ranked, relevant, catalog, click_share)

    evaluate_visits(
        catalog=catalog,
        bundle=bundle,
        trending=trending,
        train=split.train,
        test=split.test,
        settings=settings,
        max_cases=max_cases,
        seed=seed,
        score=score,
    )
    return {name: s.summary(len(catalog)) for name, s in scores.items()}


def _fit_ease(catalog: Catalog, events: pd.DataFrame):
    """EASE on the users' clicks of the history window (the baseline the feed must beat)."""
    clicks = events[events["event_type"] == "product_click"]
    items = pd.Index(catalog.frame["id"]).get_indexer(clicks["product_id"])
    users, _ = pd.factorize(clicks["user_id"])
    known = items >= 0
    matrix = interaction_matrix(
        users[known], items[known], np.ones(int(known.sum()), np.float32), len(catalog)
    )
    return fit_ease(matrix)


def _next_click_pairs(events: pd.DataFrame) -> pd.DataFrame:
    """(product, next product) clicked one after the other in the same session."""
    clicks = events[events["event_type"] == "product_click"].sort_values(["user_id", "epoch"])
    following = clicks.shift(-1)
    same_session = (following["user_id"] == clicks["user_id"]) & (
        following["epoch"] - clicks["epoch"] <= SESSION_GAP_SECONDS
    )
    pairs = pd.DataFrame({"product": clicks["product_id"], "next": following["product_id"]})[
        same_session & (following["product_id"] != clicks["product_id"])
    ]
    return pairs


def _evaluate_similar(catalog, bundle, split, click_share, max_cases, seed) -> dict[str, dict]:
    pairs = _next_click_pairs(split.test)
    truth = pairs.groupby("product")["next"].agg(set)
    products = [p for p in truth.index if p in catalog.position_of]
    rng = np.random.default_rng(seed)
    products = rng.choice(products, min(max_cases, len(products)), replace=False).tolist()
    modes = {f"endpoint mode={mode}": mode for mode in SIMILAR_MODES}
    scores = {name: Scores() for name in [*modes, "co_click", "item_cf"]}
    for product in products:
        anchor = catalog.position_of[product]
        relevant = {catalog.position_of[p] for p in truth[product] if p in catalog.position_of}
        for name, mode in modes.items():
            feed = similar_feed(
                catalog=catalog, bundle=bundle, position=anchor, filters=Filters(), mode=mode
            )
            ranked = [c.position for c in feed.items[:K]]
            scores[name].add(ranked, relevant, catalog, click_share)
        for name, model in (("co_click", "coclick"), ("item_cf", "cf")):
            positions, _ = bundle.neighbors(model, anchor)
            ranked = [int(p) for p in positions if p != anchor][:K]
            scores[name].add(ranked, relevant, catalog, click_share)
    return {name: s.summary(len(catalog)) for name, s in scores.items()}


def _evaluate_search(
    catalog, bundle, trending, split, settings, max_cases, seed, click_share, progress
) -> dict[str, dict]:
    """Each test search followed (same session) by a click: the clicked product is relevant."""
    cases = search_click_pairs(split.test)
    rng = np.random.default_rng(seed)
    cases = cases.iloc[rng.permutation(len(cases))[:max_cases]]
    search_settings = replace(SearchSettings.of(settings), personal_boost=0.0)
    variants = {
        "lexical + semantic (RRF)": (True, bundle),  # with the learned semantic weight
        # Fused as before the weight was learned, on the same version.
        "lexical + semantic (RRF, equal weights)": (True, _with_semantic_weight(bundle, 1.0)),
        "lexical only": (False, bundle),
    }
    scores = {name: Scores() for name in variants}
    # As serving embeds a query: the version's exported encoder (else the torch model), once
    # per query (the cases repeat their queries).
    embed = cache(bundle.query_encoder.embed if bundle.query_encoder else embed_query)
    for case in tqdm(cases.itertuples(), total=len(cases), desc="search", disable=not progress):
        relevant = (
            {catalog.position_of[case.clicked]} if case.clicked in catalog.position_of else set()
        )
        if not relevant:
            continue
        for name, (semantic, fused_by) in variants.items():
            vector = None
            if semantic and bundle.vector_index is not None:
                text = bundle.searched(case.query).text
                vector = bundle.cached_query_vector(text)
                if vector is None:
                    vector = embed(text)
            feed = search_feed(
                catalog=catalog,
                bundle=fused_by,
                trending=trending,
                query=case.query,
                query_vector=vector,
                events=[],
                user_id=None,
                filters=Filters(),
                settings=search_settings,
                now=split.cutoff,
            )
            ranked = [c.position for c in feed.items[:K]]
            scores[name].add(ranked, relevant, catalog, click_share)
    return {name: s.summary(len(catalog)) for name, s in scores.items()}


def _with_semantic_weight(bundle: ModelBundle, weight: float) -> ModelBundle:
    """The same version, its searches fused with another semantic weight."""
    weighted = bundle.arrays | {"search_semantic_weight": np.array([weight])}
    return replace(bundle, arrays=weighted, search_queries={})  # nothing prepared with the other


# --- Output ------------------------------------------------------------------------------------


def markdown(report: dict) -> str:
    lines = [
        f"Temporal split at {report['cutoff']}: {report['train_events']:,} training events, "
        f"{report['test_events']:,} test events, {report['products']:,} products.",
        "",
        "Ranker: " + ", ".join(f"{k} {v}" for k, v in report.get("ranker", {}).items()),
        "",
        f"Search: semantic weight in fusion {report.get('search_semantic_weight')} (learned).",
        "",
    ]
    for section in ("home", "home, mid-visit", "similar", "search"):
        if section not in report:
            continue
        lines += [
            f"### {section}",
            "",
            "| recommender | HR@10 | NDCG@10 | MRR | coverage | diversity | novelty | cases |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, m in report[section].items():
            lines.append(
                f"| {name} | {m['hr@10']:.4f} | {m['ndcg@10']:.4f} | {m['mrr']:.4f} | "
                f"{m['coverage']:.4f} | {m['diversity']:.3f} | {m['novelty']:.2f} | {m['cases']} |"
            )
        lines.append("")
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no screen
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 5))
    for name, m in report.get("home", {}).items():
        marker = "o" if name.startswith("hybrid") else "s"
        axes.scatter(m["diversity"], m["ndcg@10"], marker=marker)
        axes.annotate(
            name,
            (m["diversity"], m["ndcg@10"]),
            fontsize=7,
            xytext=(4, 2),
            textcoords="offset points",
        )
    axes.set_xlabel("intra-list category diversity")
    axes.set_ylabel("NDCG@10")
    axes.set_title("Home feed: accuracy vs diversity (hybrid weights: clicked, search, diverse)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_report(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps(report, indent=2))
    (out / "evaluation.md").write_text(markdown(report))
    plot(report, out / "evaluation.png")


async def _main(test_days: float, users: int, out: Path, progress: bool) -> None:
    settings = get_settings()
    with database_url(settings.database_url, settings.pgdata_dir) as url:
        conn = await asyncpg.connect(url)
        try:
            catalog = await fetch_catalog(conn=conn)
            since = datetime.now(UTC) - timedelta(days=settings.training_window_days + test_days)
            events = await fetch_events(conn=conn, since=since)
        finally:
            await conn.close()
    if events.empty:
        raise SystemExit("no events: run python -m ml.simulate first")
    report = evaluate(
        catalog_frame=catalog,
        events=events,
        settings=settings,
        test_days=test_days,
        max_users=users,
        progress=progress,
        on_section=lambda partial: write_report(partial, out),
    )
    print(markdown(report))
    print(f"written to {out}/evaluation.json, .md, .png in {report['seconds']} s")


def _user_log_main(path: Path, test_days: float, users: int, out: Path, progress: bool) -> None:
    catalog, events = read_user_log(path)
    report = evaluate(
        catalog_frame=catalog,
        events=events,
        settings=get_settings(),
        test_days=test_days,
        max_users=users,
        progress=progress,
        on_section=lambda partial: write_report(partial, out),
        embeddings=False,  # a log's own items: nothing to reuse, encoding them is not the point
    )
    print(markdown(report))
    print(f"written to {out}/evaluation.json, .md, .png in {report['seconds']} s")


def _sessions_main(folder: Path, out: Path, settings: Settings) -> None:
    report = evaluate_sessions(
        load_sessions(folder),
        min_sessions=settings.coclick_min_sessions,
        min_confidence=settings.coclick_min_confidence,
        min_lift=settings.coclick_min_lift,
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "sessions.json").write_text(json.dumps(report, indent=2))
    (out / "sessions.md").write_text(sessions_markdown(report))
    print(sessions_markdown(report))
    print(f"written to {out}/sessions.json, .md")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--test-days", type=float, default=7)
    parser.add_argument("--users", type=int, default=2000, help="test users (and cases) sampled")
    parser.add_argument("--out", type=Path, default=Path("reports"))
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--sessions",
        type=Path,
        metavar="FOLDER",
        help="session benchmark instead: train_sessions.txt.gz + test_prefixes.tsv.gz "
        "(e.g. ../shared/data/diginetica)",
    )
    parser.add_argument(
        "--user-log",
        type=Path,
        metavar="CSV",
        help="evaluate on a CSV of clicks instead of the database: user, item, timestamp "
        "[, title, category]",
    )
    args = parser.parse_args()
    if args.user_log is not None:
        _user_log_main(args.user_log, args.test_days, args.users, args.out, not args.no_progress)
        return
    if args.sessions is not None:
        _sessions_main(args.sessions, args.out, get_settings())
        return
    asyncio.run(_main(args.test_days, args.users, args.out, not args.no_progress))


if __name__ == "__main__":
    main()
