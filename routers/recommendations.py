"""GET /recommendations/home, /recommendations/product/{product_id} and /recommendations/search."""

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Path, Request, Response
from starlette.concurrency import run_in_threadpool

from database.pool import DatabaseUnavailable
from routers.dependencies import RequestRoute, parse_query, query_parameters
from routers.problems import ProblemError
from routers.responses import FastJSONResponse
from schemas import (
    PRODUCT_ID_REGEX,
    HomeOut,
    HomeQuery,
    Problem,
    ProblemFieldError,
    RecommendationQuery,
    RecommendationsOut,
    SearchOut,
    SearchQuery,
    SessionQuery,
    SimilarQuery,
)
from services import metrics
from services.catalog import UnknownCategory
from services.feeds import (
    Feed,
    Filters,
    SearchSettings,
    home_feed,
    search_feed,
    session_feed,
    shared_ranking_version,
    similar_feed,
    unread_history_stamp,
)
from services.history import ComputedRanking, ReadHistory
from services.home_rankings import read_shared_ranking
from services.lru import LRU
from services.reasons import ReadableReasons
from services.text_encoder import embed_query, warm_up
from services.variants import assign_variant

logger = logging.getLogger(__name__)
# Every endpoint here takes the request alone (and a path parameter): see RequestRoute.
router = APIRouter(prefix="/recommendations", tags=["recommendations"], route_class=RequestRoute)
_readable_reasons = ReadableReasons()
PROBLEMS = {404: {"model": Problem}, 422: {"model": Problem}}


def _page(request: Request, feed: Feed, query: RecommendationQuery) -> dict:
    """The response body as plain data, in the shape of RecommendationsOut. Built directly, not
    through the pydantic models: on the hot path their validation of 20 items cost more than
    ranking them (the models still document the response in OpenAPI)."""
    catalog = request.app.state.catalog
    bundle = request.app.state.models.bundle
    end = query.offset + query.limit
    page = feed.items[query.offset : end]
    products = catalog.products([candidate.position for candidate in page])
    reasons = _readable_reasons.of
    items = [
        product
        | {"score": round(candidate.score, 6), "reasons": reasons(catalog, candidate.reasons)}
        for product, candidate in zip(products, page, strict=True)
    ]
    return {
        "items": items,
        "strategy": feed.strategy,
        "weights": feed.weights,
        "model_version": bundle.version if bundle else None,
        "limit": query.limit,
        "offset": query.offset,
        # A feed is computed a little beyond the page: more items means another page exists.
        "next_offset": end if len(feed.items) > end else None,
        "empty_reason": None if items else _empty_reason(feed, query),
    }


def _empty_reason(feed: Feed, query: RecommendationQuery) -> str:
    """Why a page has no items: it starts past the end of the list, the filters let nothing
    through, or nothing could be recommended."""
    if feed.items:
        return "past_the_end"
    if _filters_given(query):
        return "filters_match_nothing"
    return "no_candidates"


def _filters_given(query: RecommendationQuery) -> bool:
    return query.category is not None or query.min_price is not None or query.max_price is not None


def _response(request: Request, feed: Feed, query: RecommendationQuery) -> FastJSONResponse:
    return FastJSONResponse(_page(request, feed, query))


async def _recent_events(
    request: Request,
    user_id: str,
    since: datetime,
    unless_stamp: int | None = None,
    ranking_version: str | None = None,
) -> tuple[ReadHistory, bool]:
    """What the read of the user's events since `since` found (`HistoryReader.read`), and
    whether it failed (database unavailable: the feed is then built from memory alone, marked
    degraded, as for a user without events)."""
    try:
        found = await request.app.state.history_reader.read(
            user_id, since, unless_stamp, ranking_version
        )
    except DatabaseUnavailable as exc:
        logger.warning("history of %s not read, serving degraded: %s", user_id, exc)
        return ReadHistory([]), True
    if unless_stamp is not None:
        metrics.HISTORY_READS.labels("read" if found.events is not None else "skipped").inc()
    return found, False


async def _query_vector(request: Request, bundle, text: str) -> np.ndarray | None:
    """The query's embedding: one training embedded (the log's frequent queries, shared by the
    workers), one this worker embedded lately, or a new one (the version's ONNX encoder, a few
    ms off the event loop). None when no encoder works: the search is lexical only."""
    vector = bundle.cached_query_vector(text)
    if vector is not None:
        metrics.QUERY_EMBEDDINGS.labels("trained").inc()
        return vector
    recent = request.app.state.query_vectors
    vector = recent.get(text)
    if vector is not None:
        metrics.QUERY_EMBEDDINGS.labels("recent").inc()
        return vector
    started = time.perf_counter()
    try:
        if bundle.query_encoder is not None:
            vector = await run_in_threadpool(bundle.query_encoder.embed, text)
        else:
            vector = await _torch_embedding(request.app, text)
    except Exception:
        logger.exception("the query encoder failed: lexical search only")
        return None
    metrics.QUERY_EMBEDDINGS.labels("encoded").inc()
    metrics.QUERY_ENCODE_SECONDS.observe(time.perf_counter() - started)
    recent.put(text, vector)
    return vector


async def _torch_embedding(app, text: str) -> np.ndarray:
    """A version from before the ONNX export: the torch model, loaded by the first search that
    needs it (seconds; later ones wait for the same load)."""
    if app.state.encoder is None:
        threads = app.state.settings.search_torch_threads
        app.state.encoder = asyncio.ensure_future(asyncio.to_thread(warm_up, threads))
    await asyncio.shield(app.state.encoder)
    return await run_in_threadpool(embed_query, text)


def _filters(request: Request, query: RecommendationQuery) -> Filters:
    """The query's filters, its category as the catalog names it (any case; main or sub)."""
    categories = None
    if query.category is not None:
        try:
            categories = request.app.state.catalog.resolve_category(query.category)
        except UnknownCategory as exc:
            close = f"; did you mean: {', '.join(exc.close)}?" if exc.close else ""
            raise ProblemError(
                422,
                f"unknown category {query.category!r}{close} (GET /categories lists them)",
                problem_type="unknown-category",
                errors=[
                    ProblemFieldError(
                        field="query.category",
                        message=f"unknown category; close: {exc.close}",
                        type="unknown_category",
                    )
                ],
            ) from None
    return Filters(categories, query.min_price, query.max_price)


@router.get(
    "/home",
    response_model=HomeOut,
    responses=PROBLEMS,
    name="recommendations:home",
    openapi_extra=query_parameters(HomeQuery),
)
async def home(request: Request):
    """Personal home feed; the user's recent events are read at request time (unless they are
    the ones training prepared this user's ranking for: see services/home_rankings.py)."""
    query = parse_query(request, HomeQuery)
    settings = request.app.state.settings
    now = datetime.now(UTC)
    since = now - timedelta(days=settings.history_days)
    variant = assign_variant(query.user_id, request.app.state.variants, settings.ab_salt)
    bundle = request.app.state.models.bundle  # the same version for the read and the ranking
    filters = _filters(request, query)
    stamp = unread_history_stamp(
        bundle=bundle,
        user_id=query.user_id,
        since=since,
        now=now,
        ranker=variant.ranker,
        prepared=settings.serve_prepared_home,
        filters=filters,
        exclude_seen=query.exclude_seen,
        n=query.offset + query.limit,
    )
    version = None
    if settings.share_computed_home:
        version = shared_ranking_version(
            bundle=bundle,
            ranker=variant.ranker,
            filters=filters,
            exclude_seen=query.exclude_seen,
            n=query.offset + query.limit,
        )
    found, degraded = await _recent_events(request, query.user_id, since, stamp, version)
    catalog = request.app.state.catalog
    shared = None
    if found.ranking is not None:
        shared = read_shared_ranking(found.ranking, catalog.position_of)
        if shared is None:  # not readable here: compute it from the events
            found, degraded = await _recent_events(request, query.user_id, since)
    feed = home_feed(
        catalog=catalog,
        bundle=bundle,
        trending=request.app.state.trending,
        events=found.events,
        user_id=query.user_id,
        weights=variant.weights,
        boost_weight=settings.trending_boost,
        n=query.offset + query.limit,
        filters=filters,
        exclude_seen=query.exclude_seen,
        now=now,
        ranker=variant.ranker,
        max_per_sub_category=settings.home_max_per_sub_category,
        prepared=settings.serve_prepared_home,
        shared=shared,
        share=version is not None and found.stamp is not None,
    )
    if feed.to_share is not None:
        oldest = found.events[-1]["timestamp"]
        request.app.state.ranking_store.keep(
            ComputedRanking(query.user_id, version, found.stamp, oldest, feed.to_share)
        )
    if feed.same_for_everyone:
        return _new_user_page(request, feed, query, variant.name, degraded)
    return FastJSONResponse(
        _page(request, feed, query) | {"variant": variant.name, "degraded": degraded}
    )


# The encoded home pages of users without history, per page, variant and ranking (a few dozen
# in use): the same bytes for every new visitor, a third of a shop's home requests or more.
NEW_USER_PAGES = 256
_new_user_pages = LRU(NEW_USER_PAGES)  # key -> (the feed's items, body)


def _new_user_page(
    request: Request, feed: Feed, query: HomeQuery, variant: str, degraded: bool
) -> Response:
    bundle = request.app.state.models.bundle
    key = (
        id(feed.items),
        bundle.version if bundle else None,
        query.offset,
        query.limit,
        variant,
        degraded,
    )
    cached = _new_user_pages.get(key)
    if cached is None or cached[0] is not feed.items:  # an id reused by another list
        body = _page(request, feed, query) | {"variant": variant, "degraded": degraded}
        cached = (feed.items, FastJSONResponse(body).body)
        _new_user_pages.put(key, cached)
    return Response(cached[1], media_type="application/json")


@router.get(
    "/product/{product_id}",
    response_model=RecommendationsOut,
    responses=PROBLEMS,
    name="recommendations:product",
    openapi_extra=query_parameters(SimilarQuery),
)
async def similar_products(
    request: Request,
    product_id: Annotated[str, Path(pattern=PRODUCT_ID_REGEX)],
):
    """Products like this one: TF-IDF similar (default), also viewed, or a blend of the two."""
    query = parse_query(request, SimilarQuery)
    catalog = request.app.state.catalog
    position = catalog.position_of.get(product_id)
    if position is None:
        raise ProblemError(
            404, f"product {product_id} is not in the catalog", problem_type="unknown-product"
        )
    feed = similar_feed(
        catalog=catalog,
        bundle=request.app.state.models.bundle,
        position=position,
        filters=_filters(request, query),
        mode=query.mode,
    )
    return _response(request, feed, query)


@router.get(
    "/session",
    response_model=RecommendationsOut,
    responses=PROBLEMS,
    name="recommendations:session",
    openapi_extra=query_parameters(SessionQuery),
)
async def session(request: Request):
    """Recommendations for an anonymous visit from the products viewed in it (session-kNN)."""
    query = parse_query(request, SessionQuery)
    catalog = request.app.state.catalog
    unknown = [p for p in query.product_ids if p not in catalog.position_of]
    if len(unknown) == len(query.product_ids):
        raise ProblemError(
            404,
            f"none of the products is in the catalog: {unknown[:5]}",
            problem_type="unknown-product",
        )
    clicked = [catalog.position_of[p] for p in query.product_ids if p in catalog.position_of]
    feed = session_feed(
        catalog=catalog,
        bundle=request.app.state.models.bundle,
        trending=request.app.state.trending,
        clicked=clicked,
        n=query.offset + query.limit,
        filters=_filters(request, query),
        exclude_seen=query.exclude_seen,
    )
    return _response(request, feed, query)


@router.get(
    "/search",
    response_model=SearchOut,
    responses=PROBLEMS,
    name="recommendations:search",
    openapi_extra=query_parameters(SearchQuery),
)
async def search(request: Request):
    """Search: synonym-expanded lexical and semantic matches, fused; fallback when none match."""
    query = parse_query(request, SearchQuery)
    settings = request.app.state.settings
    now = datetime.now(UTC)
    bundle = request.app.state.models.bundle
    events, degraded = [], False
    if query.user_id is not None:
        since = now - timedelta(days=settings.history_days)
        found, degraded = await _recent_events(request, query.user_id, since)
        events = found.events
    query_vector = None
    if bundle is not None and bundle.vector_index is not None:
        query_vector = await _query_vector(request, bundle, bundle.searched(query.q).text)
    feed = search_feed(
        catalog=request.app.state.catalog,
        bundle=bundle,
        trending=request.app.state.trending,
        query=query.q,
        query_vector=query_vector,
        events=events,
        user_id=query.user_id,
        filters=_filters(request, query),
        settings=SearchSettings.of(settings),
        now=now,
        n=query.offset + query.limit + 1,  # one more: whether a next page exists
    )
    expanded = feed.expanded
    return FastJSONResponse(
        _page(request, feed, query)
        | {
            "query": query.q,
            "expansions": [
                {"term": e.typed, "expanded_to": e.alternatives}
                for e in (expanded.expansions if expanded else [])
            ],
            "expanded_terms": expanded.expanded_terms() if expanded else [],
            "corrections": [{"term": t, "corrected_to": c} for t, c in feed.corrections],
            "fallback_reason": feed.fallback_reason,
            "degraded": degraded,
        }
    )
