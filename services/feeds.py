"""Request-level recommendation feeds built from the catalog, the models and the user's recent
events. No HTTP and no database here: the router passes the events it read."""

import hashlib
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from config.settings import Settings
from services import metrics
from services.catalog import Catalog, implausible_discounts
from services.home_rankings import PAGE, PreparedRanking, shared_ranking
from services.lru import LRU
from services.models import ModelBundle, SearchedQuery, TrendingScores, user_profile
from services.query_words import OTHER_FORM_WEIGHT
from services.ranking import (
    POPULAR_CANDIDATES,
    SOURCE_CANDIDATES,
    CandidateSet,
    UserHistory,
    feature_rows,
    sub_category_click_share,
    user_history,
)
from services.recommender import (
    PAGE_BLOCK,
    Candidate,
    Reason,
    Share,
    Source,
    add_candidate,
    compose,
    diverse_candidates,
    hybrid_merge,
    under_represented_categories,
)
from services.search import (
    Fused,
    Retrieved,
    expanded_concepts,
    lexical_search,
    plain_concepts,
    reciprocal_rank_fusion,
    search_settings,
    semantic_search,
)
from services.sources import (
    NEIGHBOR_SIGNALS,
    SESSION_CANDIDATES,
    ScoredItems,
    aggregate,
    grouped_items,
    neighbor_items,
    ranked_items,
    session_items,
    whole_history_items,
)
from services.synonyms import ExpandedQuery

MAX_ANCHOR_CLICKS = 20
MAX_ANCHOR_QUERIES = 5
PAST_QUERY_RESULTS = 30
CLICK_HALF_LIFE_HOURS = 72.0
# New users: no history, so lean on what is popular, what is good value, and each category's best.
NEW_USER_WEIGHTS = {"trending": 0.5, "best_value": 0.3, "top_category": 0.2}


@dataclass
class Filters:
    categories: tuple[str, ...] | None = None  # the catalog's names of one category
    min_price: float | None = None
    max_price: float | None = None

    def keep(self, catalog: Catalog):
        if self.categories is None and self.min_price is None and self.max_price is None:
            return None
        return lambda position: catalog.matches(
            position, self.categories, self.min_price, self.max_price
        )

    def mask(self, catalog: Catalog, positions: np.ndarray) -> np.ndarray | None:
        """Which of `positions` pass (None: no filter)."""
        if self.categories is None and self.min_price is None and self.max_price is None:
            return None
        return catalog.matching(positions, self.categories, self.min_price, self.max_price)


@dataclass
class Feed:
    items: list[Candidate]
    strategy: str
    weights: dict[str, float]
    # A home ranking computed for the request that other requests for the same history can
    # read (`shared_ranking`): the caller stores it.
    to_share: bytes | None = field(default=None, kw_only=True)
    # The items are the feed of everyone without history (the same list object for as long as
    # the inputs hold): a page of it is the same for every such user.
    same_for_everyone: bool = field(default=False, kw_only=True)


@dataclass
class RankingTables:
    """Orderings the new-user feed and the trending boost need."""

    boost: np.ndarray  # trending (or popularity) scaled 0..1, catalog order
    boost_signal: str
    boost_order: np.ndarray  # positions by boost, best first
    value: np.ndarray  # discount ratio of well-rated products, 0 elsewhere
    value_order: np.ndarray
    # Per sub-category and per main category: its products by boost, best first (top few).
    top_in_group: dict[str, np.ndarray]

    @property
    def boost_text(self) -> str:
        """The reason's text for an item there because of the boost."""
        return "trending now" if self.boost_signal == "trending" else "popular in the catalog"


# Caches keyed by id(catalog) keep the catalog in the entry too: once an old catalog is freed
# its id can be reused by a new one, and only the identity check tells them apart.
_tables_cache: dict[tuple, tuple[Catalog, TrendingScores | None, RankingTables]] = {}


def ranking_tables(catalog: Catalog, trending: TrendingScores | None) -> RankingTables:
    """Trending (catalog popularity before any clicks) and best-value orderings, computed once per
    catalog and trending update instead of on every request."""
    key = (id(catalog), id(trending))
    cached = _tables_cache.get(key)
    tables = (
        cached[2] if cached is not None and cached[0] is catalog and cached[1] is trending else None
    )
    if tables is None:
        boost, signal = catalog.popularity, "popular"
        if trending is not None and trending.scores.max() > 0:
            boost, signal = trending.scores, "trending"
        # Best value: biggest discounts among well-rated, much-rated products.
        ratings = np.nan_to_num(catalog.frame["ratings"].to_numpy())
        counts = np.nan_to_num(catalog.frame["no_of_ratings"].to_numpy())
        ratio = np.nan_to_num(catalog.frame["discount_ratio"].to_numpy(), nan=0.0)
        plausible = ~implausible_discounts(
            catalog.frame["discount_price"].to_numpy(float),
            catalog.frame["actual_price"].to_numpy(float),
            catalog.sub_category,
        )
        value = np.where((ratings >= 4.0) & (counts >= 50) & plausible, ratio, 0.0)
        boost_order = np.argsort(-boost, kind="stable")
        tables = RankingTables(
            boost,
            signal,
            boost_order,
            value,
            np.argsort(-value, kind="stable"),
            _top_per_group(boost_order, catalog.sub_category_code, catalog.sub_category_names)
            | _top_per_group(boost_order, catalog.main_category_code, catalog.main_category_names),
        )
        # The hourly trending's and the ranker's (the version's), each serving and being warmed.
        if len(_tables_cache) >= 4:
            _tables_cache.pop(next(iter(_tables_cache)))
        _tables_cache[key] = (catalog, trending, tables)
    return tables


def warm_caches(catalog: Catalog, trending: TrendingScores | None, bundle: ModelBundle | None):
    """Build the per-catalog, per-trending and per-version tables before requests need them
    (off the event loop): at 550k products the first request after a start or an hourly
    trending update otherwise paid seconds for them, and held up every request behind it."""
    ranking_tables(catalog, trending)
    if bundle is not None and bundle.ranker_trending is not None:
        ranking_tables(catalog, bundle.ranker_trending)
    if bundle is not None and "catalog_log_clicks" in bundle.arrays:
        sub_category_click_share(catalog, bundle.arrays["catalog_log_clicks"])
    if bundle is not None:
        bundle.query_words  # noqa: B018 - built here, off the event loop
    catalog.category_tree  # noqa: B018
    catalog.sub_category_of_stems  # noqa: B018


TOP_IN_GROUP = 50


def _top_per_group(
    order: np.ndarray, codes: np.ndarray, names: np.ndarray
) -> dict[str, np.ndarray]:
    """The first TOP_IN_GROUP positions of `order` in each group, by the catalog's integer
    group codes (one pass, no per-item Python beyond the sort; sorting 550k category strings
    instead took 2 s)."""
    grouped = codes[order]
    by_group = np.argsort(grouped, kind="stable")  # stable: keeps the boost order inside a group
    sorted_groups = grouped[by_group]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    ends = np.r_[starts[1:], len(sorted_groups)]
    return {
        names[sorted_groups[start]]: order[by_group[start : min(end, start + TOP_IN_GROUP)]]
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True)
        if sorted_groups[start] >= 0  # a missing category (factorize's -1) is no group
    }


def _top(values: np.ndarray, order: np.ndarray, n: int, keep) -> list[int]:
    picked = []
    for position in order:
        position = int(position)
        if values[position] <= 0 or len(picked) == n:
            break
        if keep is None or keep(position):
            picked.append(position)
    return picked


def trending_source(catalog: Catalog, trending: TrendingScores | None, n: int, keep) -> Source:
    """The n most trending products (catalog popularity before any clicks)."""
    tables = ranking_tables(catalog, trending)
    source: Source = {}
    reason = Reason(tables.boost_signal, None, tables.boost_text)
    for position in _top(tables.boost, tables.boost_order, n, keep):
        add_candidate(source, position, float(tables.boost[position]), reason)
    return source


def new_user_sources(
    catalog: Catalog, trending: TrendingScores | None, n: int, keep
) -> dict[str, Source]:
    tables = ranking_tables(catalog, trending)
    best_value: Source = {}
    for position in _top(tables.value, tables.value_order, n, keep):
        ratio = tables.value[position]
        add_candidate(
            best_value,
            position,
            float(ratio),
            Reason("best_value", None, f"{ratio:.0%} off, rated well"),
        )

    top_category: Source = {}
    for category, positions in catalog.top_by_category.items():
        for rank, position in enumerate(positions[:3].tolist()):
            if keep is None or keep(position):
                add_candidate(
                    top_category,
                    position,
                    1.0 / (1 + rank),
                    Reason("top_category", category, f"top in {category}"),
                )
    return {
        "trending": trending_source(catalog, trending, n, keep),
        "best_value": best_value,
        "top_category": top_category,
    }


def recent_clicks_and_queries(
    events: list[dict], now: datetime
) -> tuple[dict[str, float], dict[str, float]]:
    """Recency weights of the user's latest distinct clicked products and searches."""
    clicks: dict[str, float] = {}
    queries: dict[str, float] = {}
    for event in events:  # newest first
        if event["event_type"] == "product_click":
            chosen, key, limit = clicks, event["product_id"], MAX_ANCHOR_CLICKS
        else:
            chosen, key, limit = queries, event["query"], MAX_ANCHOR_QUERIES
        if len(chosen) < limit and key not in chosen:
            chosen[key] = _recency_weight(event["timestamp"], now)
        elif len(clicks) >= MAX_ANCHOR_CLICKS and len(queries) >= MAX_ANCHOR_QUERIES:
            break  # both full: older events cannot change them
    return clicks, queries


_new_user_cache: dict[tuple, tuple[Catalog, list[Candidate]]] = {}
NEW_USER_CACHE_SIZE = 256


NEW_USER_DEPTH = 100


def new_user_items(
    catalog: Catalog,
    trending: TrendingScores | None,
    n: int,
    keep,
    max_per_sub_category: int,
    exclude: set[int] = frozenset(),
) -> list[Candidate]:
    """What is popular, what is good value and each category's best, in NEW_USER_WEIGHTS'
    parts of the page."""
    # Lists deep enough that no share runs out before slot n: then pages of any length join.
    sources = new_user_sources(catalog, trending, 3 * n + NEW_USER_DEPTH + len(exclude), keep)
    return compose(
        [Share(name, NEW_USER_WEIGHTS[name], _ranked(source)) for name, source in sources.items()],
        n=n,
        product_group=catalog.product_group,
        sub_category=catalog.sub_category,
        max_per_sub_category=max_per_sub_category,
        exclude_groups=catalog.groups_of(exclude),
    )


def _new_user_ranking(
    catalog: Catalog,
    trending: TrendingScores | None,
    n: int,
    filters: Filters,
    max_per_sub_category: int,
) -> list[Candidate]:
    """The feed of a user without history is the same for everyone with the same filters: half
    of all home requests in the benchmark. Computed once per catalog, trending update, filters
    and length (the candidates are shared: never mutated after ranking)."""
    key = (
        id(catalog),
        trending.computed_at if trending else None,
        filters.categories,
        filters.min_price,
        filters.max_price,
        n,
        max_per_sub_category,
    )
    cached = _new_user_cache.get(key)
    ranked = cached[1] if cached is not None and cached[0] is catalog else None
    if ranked is None:
        keep = filters.keep(catalog)
        ranked = new_user_items(catalog, trending, n, keep, max_per_sub_category)
        if len(_new_user_cache) >= NEW_USER_CACHE_SIZE:
            _new_user_cache.clear()
        _new_user_cache[key] = (catalog, ranked)
    return ranked


def _recency_weight(timestamp: datetime, now: datetime) -> float:
    age_hours = max(0.0, (now - timestamp).total_seconds() / 3600)
    return 0.5 ** (age_hours / CLICK_HALF_LIFE_HOURS)


CLICK_MODELS = ("content", "coclick", "cf", "session")  # the weighted merge's clicked signal


def _anchors(
    catalog: Catalog, clicks: list[tuple[str, float]]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The clicked products still in the catalog: ids, catalog positions, recency weights."""
    known = [(p, w) for p, w in clicks if p in catalog.position_of]
    ids = [p for p, _ in known]
    positions = np.fromiter((catalog.position_of[p] for p in ids), np.int64, len(ids))
    return ids, positions, np.fromiter((w for _, w in known), np.float64, len(known))


def _last_id(catalog: Catalog, sequence: list[int]) -> str | None:
    return catalog.ids[sequence[-1]] if sequence else None


def clicked_source(
    catalog: Catalog,
    bundle: ModelBundle,
    clicks: list[tuple[str, float]],
    models: tuple[str, ...] = CLICK_MODELS,
    session_clicks: list[int] | None = None,
) -> Source:
    """Neighbours of the user's recent clicks in `models`, weighted by the clicks' recency, and
    (model "session") what session-kNN gives the latest clicks, `session_clicks` (catalog
    positions, oldest first), as strong as the freshest click."""
    ids, positions, weights = _anchors(catalog, clicks)
    source: Source = {}
    for model in NEIGHBOR_SIGNALS:
        if model in models and f"{model}_indptr" in bundle.arrays:
            neighbor_items(bundle, model, positions, weights, ids).add_to(source)
    if "session" in models and session_clicks:
        session_items(bundle, session_clicks, _last_id(catalog, session_clicks)).add_to(source)
    return source


def clicked_positions(catalog: Catalog, events: list[dict]) -> list[int]:
    """Catalog positions of every product the user clicked in `events`, newest first (as the
    events come)."""
    return [
        catalog.position_of[e["product_id"]]
        for e in events
        if e["event_type"] == "product_click" and e["product_id"] in catalog.position_of
    ]


def click_sequence(catalog: Catalog, events: list[dict], limit: int = 20) -> list[int]:
    """Catalog positions of the user's latest clicks, oldest first."""
    return clicked_positions(catalog, events)[:limit][::-1]


def ranker_candidates(
    *,
    catalog: Catalog,
    bundle: ModelBundle,
    trending: TrendingScores | None,
    events: list[dict],
    now: datetime,
    exclude_seen: bool = True,
    per_source: int | None = SOURCE_CANDIDATES,
) -> CandidateSet:
    """The learned ranker's candidates for a user and their features, from the user's events
    (newest first): what the home feed ranks, and what the ranker's training learns from (each
    source's best `per_source`; None: every item any source found)."""
    clicks, queries = recent_clicks_and_queries(events, now)
    history = user_history(catalog, clicked_positions(catalog, events))
    if not exclude_seen:
        history.seen = set()
    sources = ranker_sources(catalog, bundle, trending, clicks, queries, history)
    boost = ranking_tables(catalog, trending).boost
    return feature_rows(
        catalog,
        sources,
        history,
        boost,
        bundle.arrays.get("catalog_log_clicks"),
        bundle.arrays.get("catalog_week_log_clicks"),
        per_source=per_source,
    )


QUERY_RESULTS_CACHE_SIZE = 20_000
_searches = LRU(QUERY_RESULTS_CACHE_SIZE)  # query -> (bundle, catalog, its matches)


def _searched(catalog: Catalog, bundle: ModelBundle, query: str) -> tuple[np.ndarray, np.ndarray]:
    """A search of the visit as the search endpoint matches it by words (typos corrected,
    synonyms, its sub-category first): the best PAST_QUERY_RESULTS, scores 0..1."""
    cached = _searches.get(query)
    if cached is not None and cached[0] is bundle and cached[1] is catalog:
        return cached[2]
    searched = bundle.searched(query)
    hits = lexical_search(
        bundle, expanded_concepts(searched.expanded), PAST_QUERY_RESULTS, OTHER_FORM_WEIGHT
    )
    positions = np.fromiter((h.position for h in hits), np.int64, len(hits))
    scores = np.fromiter((h.score for h in hits), np.float64, len(hits))
    in_named = catalog.in_named_sub_categories(positions, searched.phrases)
    scores = np.where(in_named, 2 * scores, scores)  # its sub-category first, as search does
    result = (positions, scores / scores.max() if len(scores) and scores.max() > 0 else scores)
    _searches.put(query, (bundle, catalog, result))
    return result


# Past search -> (bundle, its matches); an entry of another bundle (version or catalog) is stale.
_query_results: dict[str, tuple[ModelBundle, tuple[np.ndarray, np.ndarray]]] = {}


def past_query_results(bundle: ModelBundle, query: str) -> tuple[np.ndarray, np.ndarray]:
    """Lexical matches of a past search: catalog positions and scores, best first, the best 1."""
    hits = lexical_search(bundle, plain_concepts(query), limit=PAST_QUERY_RESULTS)
    positions = np.fromiter((h.position for h in hits), np.int64, len(hits))
    scores = np.fromiter((h.score for h in hits), np.float64, len(hits))
    return positions, scores / scores[0] if len(scores) and scores[0] > 0 else scores


def _past_query_results(bundle: ModelBundle, query: str) -> tuple[np.ndarray, np.ndarray]:
    """`past_query_results`, prepared by training for the log's frequent searches, else cached
    per bundle: the same queries come back in many users' histories, and a common
    word's postings are long (at 550k products this was 41 % of a cold home request)."""
    cached = _query_results.get(query)
    if cached is not None and cached[0] is bundle:
        return cached[1]
    results = bundle.past_query_matches(query)
    if results is None:
        results = past_query_results(bundle, query)
        if len(_query_results) >= QUERY_RESULTS_CACHE_SIZE:
            _query_results.clear()
        _query_results[query] = (bundle, results)
    return results


def search_items(bundle: ModelBundle, queries: list[tuple[str, float]]) -> ScoredItems:
    """Products matching the user's recent searches, each search weighted by its recency."""
    found = [(i, *_past_query_results(bundle, q)) for i, (q, _) in enumerate(queries)]
    found = [(i, p, s * queries[i][1]) for i, p, s in found if len(p)]
    text = "matches your search '{}'"
    if not found:
        return ScoredItems.empty("search", text)
    return aggregate(
        np.concatenate([f[1] for f in found]),
        np.concatenate([f[2] for f in found]),
        np.concatenate([np.full(len(f[1]), f[0]) for f in found]),
        [q for q, _ in queries],
        "search",
        text,
    )


def search_source(bundle: ModelBundle, queries: list[tuple[str, float]]) -> Source:
    return search_items(bundle, queries).as_source()


def category_history(
    catalog: Catalog, bundle: ModelBundle, user_id: str, seen: set[int]
) -> Counter:
    """The user's categories: the clicked products' (this request's events) plus the daily
    profile's (last 30 days, decayed)."""
    history = Counter(catalog.main_category[p] for p in seen)
    history.update(user_profile(bundle, user_id, ("category",))["category"])
    return history


def _seed(user_id: str, now: datetime) -> int:
    # Same user, same day -> same exploration picks (stable pagination), new picks tomorrow.
    day = now.date().isoformat()  # what "%Y-%m-%d" writes, without strftime's cost
    return int.from_bytes(hashlib.sha256(f"{user_id}:{day}".encode()).digest()[:8])


def unread_history_stamp(
    *,
    bundle: ModelBundle | None,
    user_id: str,
    since: datetime,
    now: datetime,
    ranker: str,
    prepared: bool,
    filters: Filters,
    exclude_seen: bool,
    n: int,
) -> int | None:
    """The history stamp under which `home_feed` serves the user's prepared ranking without the
    user's events (events=None), or None when the events must be read: a request a prepared
    ranking serves (learned ranker, no filter, seen left out, a first page) of a user training
    ranked, none of whose events has left the window since, and whose visit is over (the page
    follows a visit in progress from its events)."""
    if (
        bundle is None
        or bundle.ranker is None
        or ranker != "learned"
        or not prepared
        or not _kept_ranking_serves(filters, exclude_seen, n)
    ):
        return None
    return bundle.prepared_home_stamp(user_id, since, now - VISIT_GAP)


def shared_ranking_version(
    *, bundle: ModelBundle | None, ranker: str, filters: Filters, exclude_seen: bool, n: int
) -> str | None:
    """The model version whose shared rankings (computed by any worker for a history: see
    `home_feed`) serve this request, or None when none can: the learned ranker of a version
    that ranks with its own trending inputs, and a request a kept ranking serves."""
    if (
        bundle is None
        or bundle.ranker is None
        or bundle.ranker_trending is None
        or ranker != "learned"
        or not _kept_ranking_serves(filters, exclude_seen, n)
    ):
        return None
    return bundle.version


def _kept_ranking_serves(filters: Filters, exclude_seen: bool, n: int) -> bool:
    """Whether a ranking kept for a history (prepared by training, or shared by a worker that
    computed it) serves the request: no filter, seen products left out, a page within the first
    PAGE."""
    return filters == Filters() and exclude_seen and n <= PAGE


def home_feed(
    *,
    catalog: Catalog,
    bundle: ModelBundle | None,
    trending: TrendingScores | None,
    events: list[dict] | None,
    user_id: str,
    weights: dict[str, float],
    boost_weight: float,
    n: int,
    filters: Filters,
    exclude_seen: bool,
    now: datetime,
    ranker: str = "learned",
    max_per_sub_category: int = 4,
    prepared: bool = True,
    shared: PreparedRanking | None = None,
    share: bool = False,
) -> Feed:
    """Home feed: for users with history, the learned ranker over every source's candidates
    (`ranker="learned"`, when the version has one; the ranking training prepared for these
    events when there is one and `prepared`, or the one a worker computed for them and shared)
    or the spec's weighted merge; a popularity mix for new users.
    `events` None: not read, because the user's history is the one training prepared the
    ranking for (the stamp held: `bundle.prepared_home_stamp`), or the one of `shared`, a
    ranking a worker computed (with its `seen`); the caller checked the rest of what a kept
    ranking needs (`unread_history_stamp`, `shared_ranking_version`). With `share`, a ranking
    computed now comes back in `Feed.to_share`."""
    keep = filters.keep(catalog)
    unread = None
    if events is None:
        unread = shared if shared is not None else bundle.unread_prepared_home(user_id)
    # Every product clicked in the history window, not only the latest anchors.
    seen = set(unread.seen) if unread else set(clicked_positions(catalog, events))
    exclude = seen if exclude_seen else set()
    if unread is None and (not events or bundle is None):
        strategy = "new_user" if not events else "popularity_no_models"
        if events:
            ranked = new_user_items(catalog, trending, n, keep, max_per_sub_category, exclude)
            return Feed(ranked, strategy, NEW_USER_WEIGHTS)
        ranked = _new_user_ranking(catalog, trending, n, filters, max_per_sub_category)
        return Feed(ranked, strategy, NEW_USER_WEIGHTS, same_for_everyone=True)

    history = category_history(catalog, bundle, user_id, seen)
    diverse = diverse_candidates(
        history,
        catalog.top_by_category,
        max(3, n // 5),
        random.Random(_seed(user_id, now)),
    )
    if ranker == "learned" and bundle.ranker is not None:
        learned, source, to_share = unread, "shared" if shared else "prepared", None
        if learned is None and prepared and _kept_ranking_serves(filters, exclude_seen, n):
            learned = bundle.prepared_home(user_id, events)
        if learned is None:
            source = "computed"
            learned = learned_ranking(
                catalog=catalog,
                bundle=bundle,
                trending=trending,
                events=events,
                history_categories=history,
                now=now,
                exclude_seen=exclude_seen,
                filters=filters,
                n=n,
            )
        if events and not learned.visit and now - events[0]["timestamp"] <= VISIT_GAP:
            # A visit in progress: its lists go with the ranking (shared, they serve the
            # other workers' reads of the same history for as long as the visit lasts).
            learned.visit = visit_lists(catalog, bundle, events)
            learned.newest = events[0]["timestamp"]
        if share and source == "computed":
            learned = learned.completed()
            to_share = shared_ranking(learned, sorted(seen), catalog.ids)
        in_visit = learned.newest is not None and now - learned.newest <= VISIT_GAP
        visit = visit_shares(learned.visit if in_visit else {}, weights, keep)
        metrics.HOME_RANKINGS.labels(source).inc()
        explore = learned.explore + [
            c for c in _ranked(diverse) if keep is None or keep(c.position)
        ]
        total = sum(weights.values()) or 1.0
        diverse_share = weights.get("diverse", 0.0) / total
        shares = [
            *visit,
            # The learned ranking fills what the visit's signals leave.
            Share(
                "ranked",
                max(0.0, 1.0 - diverse_share - sum(v.share for v in visit)),
                learned.ranked,
            ),
            Share("explore", diverse_share, explore),
        ]
        page = compose(
            shares,
            n=n,
            product_group=catalog.product_group,
            sub_category=catalog.sub_category,
            max_per_sub_category=max_per_sub_category,
            exclude_groups=catalog.groups_of(exclude),
        )
        learned.give_reasons(page[:n])  # only what a page can show needs them
        items = _top_up(catalog, trending, page, exclude, keep, n)
        # What the page is made of: the visit's parts, the learned ranking and exploration.
        applied = {s.name: round(s.share, 6) for s in shares if s.share > 0 and s.candidates}
        strategy = "personal_ranked_visit" if visit else "personal_ranked"
        return Feed(items, strategy, applied, to_share=to_share)

    clicks, queries = recent_clicks_and_queries(events, now)
    sources = {
        "clicked": clicked_source(
            catalog, bundle, list(clicks.items()), session_clicks=click_sequence(catalog, events)
        ),
        "search": search_source(bundle, list(queries.items())),
        "diverse": diverse,
    }
    boost = ranking_tables(catalog, trending).boost
    ranked = hybrid_merge(
        sources, weights, boost=boost, boost_weight=boost_weight, exclude=exclude, keep=keep
    )
    ranked = catalog.distinct(ranked, catalog.groups_of(exclude))
    return Feed(_top_up(catalog, trending, ranked, exclude, keep, n), "personal_hybrid", weights)


# A visit ends after this long without an event (as the sessions training learns from end).
VISIT_GAP = timedelta(minutes=30)
# Per visit list, whatever the page (pages of one visit join): enough for a shared page (up to
# PAGE items, half of them the visit's, with the sub-category cap) and shared whole.
VISIT_CANDIDATES = 40


def current_visit(events: list[dict], now: datetime) -> list[dict]:
    """The events of the visit in progress (newest first): back from the latest event to the
    first gap of VISIT_GAP; none when the latest event is older than VISIT_GAP."""
    visit: list[dict] = []
    after = now
    for event in events:  # newest first
        if after - event["timestamp"] > VISIT_GAP:
            break
        visit.append(event)
        after = event["timestamp"]
    return visit


def visit_lists(
    catalog: Catalog, bundle: ModelBundle, events: list[dict]
) -> dict[str, list[Candidate]]:
    """What follows the visit of the newest event (events newest first): "clicked", what
    shoppers went on to after visits like it (session-kNN over its clicks, then the last
    click's co-click and item-CF neighbours), then what is like its clicks (content), those of
    the visit's sub-categories first; "search", the matches of its searches as the search
    endpoint finds them."""
    visit = current_visit(events, events[0]["timestamp"])
    lists = {}
    clicked = click_sequence(catalog, visit)
    newest = visit[0]["timestamp"]
    clicks, queries = recent_clicks_and_queries(visit, newest)
    if clicked:
        went_on = _session_then_neighbors(
            catalog, bundle, clicked, VISIT_CANDIDATES, VISIT_CANDIDATES
        )
        # Then what is like the clicked products, for a visit few past visits resemble.
        ids, positions, weights = _anchors(catalog, list(clicks.items()))
        alike = neighbor_items(bundle, "content", positions, weights, ids)
        taken = {c.position for c in went_on}
        found = went_on + [c for c in alike.best(VISIT_CANDIDATES) if c.position not in taken]
        # More of what the visit clicked first (most next clicks stay in the sub-category):
        # another sub-category's candidate moves a block down, so every stretch of the list
        # still holds some for the slots the sub-category cap leaves.
        clicked_subs = {catalog.sub_category[p] for p in clicked}
        order = sorted(
            range(len(found)),
            key=lambda i: (
                i + (0 if catalog.sub_category[found[i].position] in clicked_subs else PAGE_BLOCK)
            ),
        )
        lists["clicked"] = [found[i] for i in order][:VISIT_CANDIDATES]
    if queries:
        found: Source = {}
        for query, weight in queries.items():  # newest first
            reason = Reason("search", query, f"matches your search '{query}'")
            positions, scores = _searched(catalog, bundle, query)
            for position, score in zip(positions.tolist(), scores.tolist(), strict=True):
                add_candidate(found, position, weight * score, reason)
        lists["search"] = _ranked(found)[:VISIT_CANDIDATES]
    return {name: found for name, found in lists.items() if found}


def visit_shares(lists: dict[str, list[Candidate]], weights: dict[str, float], keep) -> list[Share]:
    """The page's parts that follow the visit, at the configured weights (clicked, search)."""
    total = sum(weights.values()) or 1.0
    shares = []
    for name, found in lists.items():
        if weights.get(name, 0.0) > 0:
            passing = [c for c in found if keep is None or keep(c.position)]
            shares.append(Share(name, weights[name] / total, passing))
    return [s for s in shares if s.candidates]


@dataclass
class PendingRanking(PreparedRanking):
    """A ranking computed now, its candidates' reasons given when they reach the page."""

    found: CandidateSet | None = None

    def give_reasons(self, candidates: list[Candidate]) -> None:
        self.found.give_reasons(candidates)

    def completed(self) -> PreparedRanking:
        """The same ranking with every candidate's reasons, without the candidate set (its
        features and sources): what `shared_ranking` stores for the other workers."""
        self.give_reasons(self.ranked + self.explore)
        return PreparedRanking(self.ranked, self.explore, self.visit, self.newest)


def learned_ranking(
    *,
    catalog: Catalog,
    bundle: ModelBundle,
    trending: TrendingScores | None,
    events: list[dict],
    history_categories: Counter,
    now: datetime,
    exclude_seen: bool,
    filters: Filters,
    n: int,
    reasons: bool = False,
) -> PendingRanking:
    """The learned ranker's list for a user (its best few n, in order) and its exploration
    picks. Its trending inputs are the version's when it has them (as the ranker was trained
    and evaluated), so for the same events and version the ranking is the same all day and
    training can prepare it (services/home_rankings.py). With reasons=False the candidates'
    reasons wait for `found.give_reasons`."""
    found = ranker_candidates(
        catalog=catalog,
        bundle=bundle,
        trending=bundle.ranker_trending if bundle.ranker_trending is not None else trending,
        events=events,
        now=now,
        exclude_seen=exclude_seen,
    )
    scores = bundle.ranker.score(found.features)
    order = np.lexsort((found.positions, -scores))  # best first, ties by position
    passing = filters.mask(catalog, found.positions[order])
    if passing is not None:
        order = order[passing]
    # Only the head becomes objects: the mixer's caps and the page need a few n at most.
    ranked = found.candidates(order[: max(RANKED_CANDIDATES, 3 * n)], scores, reasons=reasons)
    explore = _explore_picks(catalog, found, order, scores, history_categories, reasons)
    return PendingRanking(ranked, explore, found=found)


def _explore_picks(
    catalog: Catalog,
    found: CandidateSet,
    order: np.ndarray,
    scores: np.ndarray,
    history_counts: Counter,
    reasons: bool = False,
) -> list[Candidate]:
    """The ranker's best candidates (rows of `found` in ranked `order`) from the categories
    least represented in the user's history (the exploration the spec's diverse picks are for,
    chosen by the ranker, not at random)."""
    ordered = under_represented_categories(history_counts, catalog.top_by_category)
    pool = ordered[: max(1, len(ordered) // 2)]
    pooled = np.zeros(len(catalog.main_category_names), bool)  # per category code
    pooled[
        [catalog.main_category_code_of[c] for c in pool if c in catalog.main_category_code_of]
    ] = True
    in_pool = pooled[catalog.main_category_code[found.positions[order]]]
    picks = found.candidates(order[in_pool][:EXPLORE_CANDIDATES], scores, reasons=reasons)
    for pick in picks:
        category = catalog.main_category[pick.position]
        pick.reasons.append(Reason("explore", category, f"explore {category}"))
    return picks


EXPLORE_CANDIDATES = 20
RANKED_CANDIDATES = 60


def _top_up(catalog, trending, ranked: list[Candidate], exclude, keep, n: int) -> list[Candidate]:
    """Thin history: trending items after the personal ones, up to n."""
    if len(ranked) >= n:
        return ranked
    taken = {c.position for c in ranked} | exclude
    fill = trending_source(catalog, trending, n + len(taken), keep)
    return ranked + [c for c in hybrid_merge({"t": fill}, {"t": 0.01}) if c.position not in taken]


def ranker_sources(
    catalog: Catalog,
    bundle: ModelBundle,
    trending: TrendingScores | None,
    clicks: dict[str, float],
    queries: dict[str, float],
    history: UserHistory,
) -> dict[str, ScoredItems]:
    """Every candidate source of the learned ranker, each with its own scores."""
    ids, positions, weights = _anchors(catalog, list(clicks.items()))
    sources = {
        model: neighbor_items(bundle, model, positions, weights, ids)
        for model in ("coclick", "cf", "content", "ease")
        if f"{model}_indptr" in bundle.arrays
    }
    if "ease_indptr" in bundle.arrays:
        sources["ease_history"] = whole_history_items(bundle, "ease", history.clicked, catalog.ids)
    sources["session"] = session_items(
        bundle, history.sequence, _last_id(catalog, history.sequence)
    )
    sources["search"] = search_items(bundle, list(queries.items()))
    tables = ranking_tables(catalog, trending)
    sources["popular"] = popular_items(tables, POPULAR_CANDIDATES)
    sources["category_popular"] = category_popular_items(tables, history)
    return sources


def popular_items(tables: RankingTables, n: int) -> ScoredItems:
    """The n most trending products (catalog popularity before any clicks)."""
    top = tables.boost_order[:n]
    top = top[tables.boost[top] > 0]
    return ranked_items(top, tables.boost[top], None, tables.boost_signal, tables.boost_text)


def category_popular_items(tables: RankingTables, history: UserHistory) -> ScoredItems:
    """The most popular products of the user's favourite sub-categories and main categories,
    scored by popularity x the category's share of the user's clicks."""
    groups = []
    for shares in (history.sub_category_share, history.category_share):
        favourites = sorted(shares.items(), key=lambda kv: -kv[1])[:FAVOURITE_CATEGORIES]
        groups += [
            (group, share, tables.top_in_group[group])
            for group, share in favourites
            if group in tables.top_in_group
        ]
    return grouped_items(groups, tables.boost, "category_popular", "popular in {}")


FAVOURITE_CATEGORIES = 5


SIMILAR_MODES = ("content", "also_viewed", "blend")


def similar_feed(
    *,
    catalog: Catalog,
    bundle: ModelBundle | None,
    position: int,
    filters: Filters,
    mode: str = "content",
) -> Feed:
    """Products like one product, never the product itself. `content`: TF-IDF similarity (the
    default); `also_viewed`: what shoppers who clicked it went on to click (session-kNN, then
    co-click and item-CF); `blend`: the two lists interleaved by rank (reciprocal rank fusion)."""
    if bundle is None:
        return Feed([], "similar_unavailable", {mode: 1.0})
    keep = filters.keep(catalog)
    lists = []
    if mode in ("content", "blend"):
        lists.append(_content_neighbors(catalog, bundle, position))
    strategy = "content_similarity" if mode == "content" else mode
    if mode in ("also_viewed", "blend"):
        viewed = _also_viewed(catalog, bundle, position)
        if viewed:
            lists.append(viewed)
        elif mode == "also_viewed":  # nobody's clicks lead on from it yet: what is like it
            lists.append(_content_neighbors(catalog, bundle, position))
            strategy = "content_similarity"
    items = lists[0] if len(lists) == 1 else _fused_by_rank(lists)
    items = [c for c in items if c.position != position and (keep is None or keep(c.position))]
    # Never the product itself under another listing, and each product once.
    items = catalog.distinct(items, catalog.groups_of([position]))
    weights = {"content": 1.0} if strategy == "content_similarity" else {mode: 1.0}
    return Feed(items, strategy, weights)


def _content_neighbors(catalog: Catalog, bundle: ModelBundle, position: int) -> list[Candidate]:
    product_id = catalog.ids[position]
    positions, scores = bundle.neighbors("content", position)
    reason = Reason("similar", product_id, f"similar to {product_id}")
    return [
        Candidate(p, s, [reason]) for p, s in zip(positions.tolist(), scores.tolist(), strict=True)
    ]


RRF_K = 60


def _fused_by_rank(lists: list[list[Candidate]]) -> list[Candidate]:
    """Reciprocal rank fusion: an item high in either list ranks high, with every reason."""
    fused: Source = {}
    for ranked in lists:
        for rank, candidate in enumerate(ranked):
            for reason in candidate.reasons:
                add_candidate(fused, candidate.position, 0.0, reason)
            fused[candidate.position].score += 1.0 / (RRF_K + rank)
    return _ranked(fused)


def _also_viewed(catalog: Catalog, bundle: ModelBundle, position: int) -> list[Candidate]:
    """Session-kNN of a one-click session, then co-click and item-CF neighbours not in it."""
    return _session_then_neighbors(catalog, bundle, [position], SESSION_CANDIDATES, None)


def _session_then_neighbors(
    catalog: Catalog, bundle: ModelBundle, clicked: list[int], n: int, enough: int | None
) -> list[Candidate]:
    """The best n session-kNN candidates of a visit, then the last click's co-click and item-CF
    neighbours not already there (scored below every session-kNN one), model after model
    until there are `enough` (None: all of them)."""
    ranked = _ranked(session_items(bundle, clicked, _last_id(catalog, clicked), n).as_source())
    anchor = clicked[-1]
    anchor_id = catalog.ids[anchor]
    for model in ("coclick", "cf"):
        if enough is not None and len(ranked) >= enough:
            break
        signal, text = NEIGHBOR_SIGNALS[model]
        reason = Reason(signal, anchor_id, text.format(anchor_id))
        positions, scores = bundle.neighbors(model, anchor)
        taken = {c.position for c in ranked}
        ranked += [
            Candidate(p, s * 1e-3, [reason])
            for p, s in zip(positions.tolist(), scores.tolist(), strict=True)
            if p not in taken
        ]
    return ranked


def session_feed(
    *,
    catalog: Catalog,
    bundle: ModelBundle | None,
    trending: TrendingScores | None,
    clicked: list[int],
    n: int,
    filters: Filters,
    exclude_seen: bool,
) -> Feed:
    """Recommendations for one visit, no user needed: session-kNN over the visit's clicks
    (catalog positions, oldest first), then the last click's co-click and item-CF neighbours,
    then trending."""
    keep = filters.keep(catalog)
    exclude = set(clicked) if exclude_seen else set()
    ranked: list[Candidate] = []
    strategy = "session_no_models"
    if bundle is not None and clicked:
        strategy = "session_knn"
        wanted = n + len(exclude)
        ranked = _session_then_neighbors(catalog, bundle, clicked, wanted, wanted)
    ranked = [c for c in ranked if c.position not in exclude and (keep is None or keep(c.position))]
    if len(ranked) < n:  # a short or unknown visit: trending fills the page
        taken = {c.position for c in ranked} | exclude
        fill = trending_source(catalog, trending, n + len(taken), keep)
        ranked += [
            Candidate(c.position, c.score * 1e-6, c.reasons)
            for c in _ranked(fill)
            if c.position not in taken
        ]
    return Feed(catalog.distinct(ranked, catalog.groups_of(exclude)), strategy, {"session": 1.0})


@dataclass
class SearchSettings:
    candidates: int  # per retrieval path
    rrf_k: int
    min_similarity: float
    personal_boost: float
    category_boost: float

    @classmethod
    def of(cls, settings: Settings) -> "SearchSettings":
        """The service's search settings (SEARCH_*)."""
        return cls(
            candidates=settings.search_candidates,
            rrf_k=settings.search_rrf_k,
            min_similarity=settings.search_min_similarity,
            personal_boost=settings.search_personal_boost,
            category_boost=settings.search_category_boost,
        )


@dataclass
class SearchFeed(Feed):
    expanded: ExpandedQuery | None = None
    fallback_reason: str | None = None
    corrections: list[tuple[str, str]] = field(default_factory=list)  # (typed, corrected)


# With no lexical match, fewer semantic neighbours than this are noise, not results.
SEMANTIC_ONLY_MIN_HITS = 3


def search_feed(
    *,
    catalog: Catalog,
    bundle: ModelBundle | None,
    trending: TrendingScores | None,
    query: str,
    query_vector: np.ndarray | None,
    events: list[dict],
    user_id: str | None,
    filters: Filters,
    settings: SearchSettings,
    now: datetime,
    n: int | None = None,
) -> SearchFeed:
    """Lexical (synonym-expanded) and semantic results fused by rank, mildly boosted towards the
    user's interests (the best n, None: all); when nothing matches, the user's co-click
    associations, then trending."""
    keep = filters.keep(catalog)
    clicks, _ = recent_clicks_and_queries(events, now)
    if bundle is None:
        items = _ranked(trending_source(catalog, trending, 100, keep))
        return SearchFeed(items, "search_fallback", {}, None, "no_models_used_trending")

    searched = bundle.searched(query)
    fused = _fused(bundle, searched, query_vector, settings)
    # A few loose semantic neighbours and no word matched: not a match, fall back.
    matched = len(fused) >= SEMANTIC_ONLY_MIN_HITS or bool((fused.matched >= 0).any())
    rows = np.arange(len(fused) if matched else 0)
    passing = filters.mask(catalog, fused.positions)
    if passing is not None:
        rows = rows[passing]
    weights = {
        "lexical": 1.0,
        "semantic": 1.0,
        "personal_boost": settings.personal_boost,
        "category_boost": settings.category_boost,
    }
    if len(rows):
        positions, scores = fused.positions[rows], fused.scores[rows]
        # A product-type word ("fridge") puts its sub-category (Refrigerators) first.
        if settings.category_boost > 0:
            in_named = catalog.in_named_sub_categories(positions, searched.phrases)
            scores = np.where(in_named, scores * (1.0 + settings.category_boost), scores)
        boosted = np.zeros(len(rows), bool)
        if settings.personal_boost > 0:
            affinity = _interest_affinity(catalog, bundle, user_id, clicks)
            value = _affinity_of(catalog, positions, affinity)
            boosted = value > 0
            scores = np.where(boosted, scores * (1.0 + settings.personal_boost * value), scores)
        order = np.lexsort((positions, -scores))  # best first, ties by position
        # One listing of each product: the first of its group in that order.
        _, first = np.unique(catalog.product_group[positions[order]], return_index=True)
        order = order[np.sort(first)][:n]
        personal: dict[str, Reason] = {}  # one per sub-category the page boosts
        items = []
        for position, score, reasons, boost in zip(
            positions[order].tolist(),
            scores[order].tolist(),
            fused.page_reasons(rows[order], query),
            boosted[order].tolist(),
            strict=True,
        ):
            if boost:
                sub_category = catalog.sub_category[position]
                reason = personal.get(sub_category)
                if reason is None:
                    text = f"you often look at {sub_category}"
                    reason = personal[sub_category] = Reason("personal", sub_category, text)
                reasons.append(reason)
            items.append(Candidate(position, score, reasons))
        return SearchFeed(items, "search", weights, searched.expanded, None, searched.corrections)
    if matched and len(fused):  # matches, but none the filters let through
        return SearchFeed([], "search", weights, searched.expanded, None, searched.corrections)

    associations: Source = {}
    for product_id, weight in clicks.items():
        anchor = catalog.position_of.get(product_id)
        if anchor is None:
            continue
        positions, scores = bundle.neighbors("coclick", anchor)
        reason = Reason("co_click", product_id, f"often clicked with {product_id}")
        for position, score in zip(positions.tolist(), scores.tolist(), strict=True):
            if keep is None or keep(position):
                add_candidate(associations, position, weight * score, reason)
    for product_id in clicks:  # not the products the user has just clicked
        associations.pop(catalog.position_of.get(product_id, -1), None)
    if associations:
        return SearchFeed(
            _ranked(associations),
            "search_fallback",
            weights,
            searched.expanded,
            "no_match_used_associations",
            searched.corrections,
        )
    items = _ranked(trending_source(catalog, trending, 100, keep))
    return SearchFeed(
        items,
        "search_fallback",
        weights,
        searched.expanded,
        "no_match_used_trending",
        searched.corrections,
    )


# (query, settings) -> (bundle, its retrieval fused), least recently used first (a few KB
# each): the same searches come back all day, and at 550k products their postings and the
# vector search are most of a search request. Entries of another bundle (a new version or
# catalog) do not count.
FUSED_CACHE_SIZE = 10_000
_fused_results = LRU(FUSED_CACHE_SIZE)  # values: (ModelBundle, Fused)


def _fused(
    bundle: ModelBundle,
    searched: SearchedQuery,
    query_vector: np.ndarray | None,
    settings: SearchSettings,
) -> Fused:
    """The query's lexical and semantic retrieval fused by rank: training's for a frequent
    search (with the embedding training made), else this worker's cached or a new one. It
    depends on the query's corrected, normalised text alone (the semantic reason's text is
    added per request)."""
    depends_on = search_settings(settings)
    key = (searched.text, query_vector is None, *depends_on.values())
    cached = _fused_results.get(key)
    if cached is not None and cached[0] is bundle:
        metrics.SEARCH_RETRIEVALS.labels("recent").inc()
        return cached[1]
    fused = None
    if query_vector is not None:
        fused = bundle.prepared_search(searched.text, depends_on)
    metrics.SEARCH_RETRIEVALS.labels("searched" if fused is None else "prepared").inc()
    if fused is None:
        fused = fuse_retrieval(bundle, searched.expanded, query_vector, settings)
    _fused_results.put(key, (bundle, fused))
    return fused


def fuse_retrieval(
    bundle: ModelBundle,
    expanded: ExpandedQuery,
    query_vector: np.ndarray | None,
    settings: SearchSettings,
) -> Fused:
    """Lexical (synonym-expanded) and semantic (when there is a query vector) retrieval, fused
    by rank with the version's semantic weight."""
    retrieved = retrieve(bundle, expanded, query_vector, settings)
    return reciprocal_rank_fusion(retrieved, settings.rrf_k, bundle.semantic_weight)


def retrieve(
    bundle: ModelBundle,
    expanded: ExpandedQuery,
    query_vector: np.ndarray | None,
    settings: SearchSettings,
) -> Retrieved:
    """Each path's best matches: lexical (synonym-expanded) and semantic (with a vector)."""
    return Retrieved(
        lexical_search(bundle, expanded_concepts(expanded), settings.candidates, OTHER_FORM_WEIGHT),
        semantic_search(bundle, query_vector, settings.candidates, settings.min_similarity)
        if query_vector is not None
        else [],
    )


def _ranked(source: Source) -> list[Candidate]:
    return sorted(source.values(), key=lambda c: (-c.score, c.position))


def _interest_affinity(
    catalog: Catalog, bundle: ModelBundle, user_id: str | None, clicks: dict[str, float]
) -> dict[str, float]:
    """0..1 interest per sub-category and main category, from the daily profile and this
    session's clicks."""
    if user_id is None:
        return {}
    profile = user_profile(bundle, user_id, ("category", "sub_category"))
    interest: Counter[str] = Counter(profile["sub_category"])
    interest.update({k: 0.5 * v for k, v in profile["category"].items()})
    for product_id, weight in clicks.items():
        position = catalog.position_of.get(product_id)
        if position is not None:
            interest[catalog.sub_category[position]] += weight
            interest[catalog.main_category[position]] += 0.5 * weight
    top = max(interest.values(), default=0.0)
    return {name: value / top for name, value in interest.items()} if top > 0 else {}


def _affinity_of(catalog: Catalog, positions: np.ndarray, affinity: dict[str, float]):
    """The user's interest in each product: the larger of its sub-category's and its main
    category's (0 without either)."""
    value = np.zeros(len(positions))
    for codes, code_of in (
        (catalog.sub_category_code, catalog.sub_category_code_of),
        (catalog.main_category_code, catalog.main_category_code_of),
    ):
        by_code = np.zeros(len(code_of) + 1)  # the last: products without one (code -1)
        for name, interest in affinity.items():
            if name is None or name in code_of:
                by_code[-1 if name is None else code_of[name]] = interest
        value = np.maximum(value, by_code[codes[positions]])
    return value
