"""GET /recommendations/search on the small generated catalog, with the real MiniLM model and
trained artifacts: synonyms, semantic matches, fusion, personal boost and the fallback chain."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from database.products import other_listings
from main import refresh_models
from ml.train import train
from services.catalog import short_name
from services.feeds import SearchSettings, fuse_retrieval
from services.search import search_settings
from services.text_encoder import embed_query

PROBLEM = "application/problem+json"
pytestmark = pytest.mark.usefixtures("seeded_artifacts")


async def _search(client, **params):
    response = await client.get("/recommendations/search", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def _signals(item) -> set[str]:
    return {r["signal"] for r in item["reasons"]}


async def test_earbuds_finds_earphones_and_shows_the_expansion(client):
    body = await _search(client, q="earbuds", limit=10)
    assert body["fallback_reason"] is None and body["strategy"] == "search"
    assert body["expansions"][0]["term"] == "earbuds"
    assert {"earphones", "in-ear headphones"} <= set(body["expanded_terms"])
    assert body["items"][0]["sub_category"] == "Headphones"
    audio = [i for i in body["items"] if i["sub_category"] in ("Headphones", "Studio Equipment")]
    assert len(audio) >= 3
    # Headphones without the word "earbuds" are found too (through synonyms or meaning).
    assert any("Earbuds" not in i["name"] for i in audio)


async def test_one_way_rule_expands_one_way_only(client):
    forward = await _search(client, q="TV")
    assert forward["expanded_terms"] == ["television"]
    assert forward["items"][0]["sub_category"] == "Televisions"
    backward = await _search(client, q="television")
    assert backward["expanded_terms"] == [] and backward["expansions"] == []


@pytest.mark.parametrize(
    ("query", "sub_categories"),
    [
        ("wireless thing for ears", {"Headphones"}),
        ("runing shoes", {"Sports Shoes", "Womens Sports Shoes", "Kids Shoes", "Casual Shoes"}),
    ],
)
async def test_descriptive_or_misspelled_query_is_found_semantically(client, query, sub_categories):
    body = await _search(client, q=query, limit=10)
    assert body["fallback_reason"] is None
    semantic = [i for i in body["items"] if "semantic" in _signals(i)]
    assert any(i["sub_category"] in sub_categories for i in semantic)
    reason = next(r for r in semantic[0]["reasons"] if r["signal"] == "semantic")
    assert reason["text"] == f"semantically similar to '{query}'"


async def test_misspelling_ranks_products_found_by_both_paths_first(client):
    items = (await _search(client, q="runing shoes", limit=5))["items"]
    assert all(i["sub_category"] == "Sports Shoes" for i in items)
    assert all(_signals(i) >= {"search", "semantic"} for i in items)


async def test_nonsense_query_falls_back_to_trending(client):
    body = await _search(client, q="xqzvbl flurbotank", limit=10)
    assert body["fallback_reason"] == "no_match_used_trending"
    assert body["strategy"] == "search_fallback"
    assert len(body["items"]) == 10
    assert all(_signals(i) & {"trending", "popular"} for i in body["items"])


async def test_user_with_clicks_gets_associations_before_trending(client, app, conn, settings):
    phone, case = [
        (await conn.fetchval("SELECT id FROM products WHERE sub_category = $1 LIMIT 1", sub))
        for sub in ("Smartphones", "Mobile Accessories")
    ]
    now = datetime.now(UTC)
    events = [
        {
            "user_id": f"pair_{user}",
            "event_type": "product_click",
            "product_id": product,
            "timestamp": (now - timedelta(hours=user + 1, minutes=-n)).isoformat(),
        }
        for user in range(30)
        for n, product in enumerate([phone, case])
    ]
    response = await client.post("/interactions/batch", json={"events": events})
    assert response.status_code == 201
    await train(conn=conn, settings=settings)
    await refresh_models(app)
    click = {"user_id": "shopper", "event_type": "product_click", "product_id": phone}
    assert (await client.post("/interactions", json=click)).status_code == 201

    body = await _search(client, q="xqzvbl flurbotank", user_id="shopper")
    phone_at = app.state.catalog.position_of[phone]
    assert body["fallback_reason"] == "no_match_used_associations"
    assert body["items"][0]["id"] == case
    assert body["items"][0]["reasons"][0] == {
        "signal": "co_click",
        "anchor": phone,
        # Named as a shopper reads it, not by its id.
        "text": f"often clicked with “{short_name(app.state.catalog.product(phone_at)['name'])}”",
    }
    assert phone not in [i["id"] for i in body["items"]]
    # Without history the same query falls back to trending.
    stranger = await _search(client, q="xqzvbl flurbotank", user_id="stranger")
    assert stranger["fallback_reason"] == "no_match_used_trending"


async def test_personal_boost_lifts_the_users_interests(client, conn):
    speakers = [
        r["id"]
        for r in await conn.fetch("SELECT id FROM products WHERE sub_category = 'Speakers' LIMIT 3")
    ]
    clicks = [
        {"user_id": "audiophile", "event_type": "product_click", "product_id": p} for p in speakers
    ]
    assert (await client.post("/interactions/batch", json={"events": clicks})).status_code == 201

    def rank_of_speakers(items):
        return [n for n, i in enumerate(items) if i["sub_category"] == "Speakers"]

    anonymous = (await _search(client, q="wireless bluetooth", limit=30))["items"]
    personal = (await _search(client, q="wireless bluetooth", limit=30, user_id="audiophile"))[
        "items"
    ]
    assert sum(rank_of_speakers(personal)) < sum(rank_of_speakers(anonymous))
    boosted = [i for i in personal if "personal" in _signals(i)]
    # Boosted: the clicked sub-category, or (half as much) its main category.
    assert boosted and all(i["main_category"] == "tv, audio & cameras" for i in boosted)
    # Mild: the boost reorders, it does not bring in products the query did not match.
    assert {i["id"] for i in personal} == {i["id"] for i in anonymous}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "query.q"),
        ({"q": ""}, "query.q"),
        ({"q": "   \t "}, "query.q"),
        ({"q": "x" * 201}, "query.q"),
        ({"q": "ab\x00cd"}, "query.q"),  # control characters are never search text
        ({"q": "shoes", "user_id": "bad id!"}, "query.user_id"),
        ({"q": "shoes", "limit": 0}, "query.limit"),
    ],
)
async def test_bad_queries_are_problems(client, params, field):
    response = await client.get("/recommendations/search", params=params)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["errors"][0]["field"] == field


async def test_query_is_trimmed_and_normalised(client):
    body = await _search(client, q="  ＥＡＲＢＵＤＳ  ")  # full-width letters
    assert body["query"] == "EARBUDS"
    assert "earphones" in body["expanded_terms"]


async def test_filters_and_paging_apply_to_search(client, conn):
    first = await _search(client, q="shoes", limit=5, category="Sports Shoes")
    second = await _search(client, q="shoes", limit=5, offset=5, category="Sports Shoes")
    # A product is in the category by its own sub-category or by another of its listings
    # (the test catalog lists two formal and casual shoes under Sports Shoes as well).
    listed = {p for p, _, sub in await other_listings(conn=conn) if sub == "Sports Shoes"}
    assert all(
        i["sub_category"] == "Sports Shoes" or i["id"] in listed
        for i in first["items"] + second["items"]
    )
    assert not {i["id"] for i in first["items"]} & {i["id"] for i in second["items"]}


async def test_training_embeds_popular_queries_for_serving(client, app, conn, settings):
    events = [
        {"user_id": f"asker_{n}", "event_type": "search_query", "query": "Wireless  thing for ears"}
        for n in range(3)
    ] + [{"user_id": "asker_9", "event_type": "search_query", "query": "yoga mat"}]
    assert (await client.post("/interactions/batch", json={"events": events})).status_code == 201
    result = await train(conn=conn, settings=settings)
    assert result.counts["embedded_queries"] == 2  # both new; the repeated one once
    await refresh_models(app)
    bundle = app.state.models.bundle
    cached = bundle.cached_query_vector("wireless thing for EARS")
    assert cached is not None and bundle.cached_query_vector("never searched") is None
    assert float(cached @ embed_query("wireless thing for ears")) > 0.999
    body = await _search(client, q="Wireless thing for ears", limit=5)
    assert any("semantic" in _signals(i) for i in body["items"])

    # Training also fused their retrieval, as serving would (services.feeds.fuse_retrieval).
    search = SearchSettings(
        candidates=settings.search_candidates,
        rrf_k=settings.search_rrf_k,
        min_similarity=settings.search_min_similarity,
        personal_boost=settings.search_personal_boost,
        category_boost=settings.search_category_boost,
    )
    assert set(bundle.search_queries) == {"wireless thing for ears", "yoga mat"}
    for query in bundle.search_queries:
        prepared = bundle.prepared_search(query, search_settings(search))
        vector = bundle.cached_query_vector(query)
        computed = fuse_retrieval(bundle, bundle.synonyms.expand(query), vector, search)
        assert len(prepared) > 0
        np.testing.assert_array_equal(prepared.positions, computed.positions)
        np.testing.assert_array_equal(prepared.scores, computed.scores)
        np.testing.assert_array_equal(prepared.semantic, computed.semantic)
        assert prepared.page_reasons(np.arange(len(prepared)), query) == computed.page_reasons(
            np.arange(len(computed)), query
        )
    # Other settings than training's: not used.
    other = search_settings(search) | {"candidates": settings.search_candidates + 1}
    assert bundle.prepared_search("yoga mat", other) is None


async def test_lexical_retrieval_expands_synonyms_without_the_semantic_path(app):
    from datetime import UTC, datetime

    from services.feeds import Filters, SearchSettings, search_feed

    catalog, bundle = app.state.catalog, app.state.models.bundle
    settings = SearchSettings(
        candidates=100, rrf_k=60, min_similarity=0.38, personal_boost=0, category_boost=1.0
    )

    def lexical(query: str):
        return search_feed(
            catalog=catalog,
            bundle=bundle,
            trending=None,
            query=query,
            query_vector=None,  # no semantic path: only words and their synonyms
            events=[],
            user_id=None,
            filters=Filters(),
            settings=settings,
            now=datetime.now(UTC),
        )

    # No product says "notebook"; the synonym list makes it "laptop".
    assert not any("notebook" in n.lower() for n in catalog.frame["name"])
    feed = lexical("notebook")
    assert feed.fallback_reason is None and len(feed.items) >= 5
    for candidate in feed.items[:10]:
        product = catalog.product(candidate.position)
        # A laptop by name, or by its sub-category ("Laptops": the index holds it too).
        text = f"{product['name']} {product['sub_category']}".lower()
        assert "laptop" in text, product["name"]
        assert candidate.reasons[0].signal == "search"
    assert lexical("qwxzv").fallback_reason is not None  # and nonsense finds nothing


async def test_a_new_query_is_embedded_once_per_worker_then_served_from_the_lru(client, app):
    recent = app.state.query_vectors
    assert recent.get("sturdy bag for a long walk") is None
    first = await _search(client, q="Sturdy bag for a long WALK", limit=5)
    vector = recent.get("sturdy bag for a long walk")  # lowercased, as training embeds them
    assert vector is not None and float(vector @ vector) == pytest.approx(1.0, abs=1e-4)
    again = await _search(client, q="sturdy bag for a long walk", limit=5)
    assert [i["id"] for i in again["items"]] == [i["id"] for i in first["items"]]
    metrics = (await client.get("/metrics")).text
    assert 'recsys_query_embeddings_total{source="recent"}' in metrics
    assert "recsys_query_encode_seconds_count" in metrics


def test_the_query_lru_keeps_the_most_recently_used():
    from services.text_encoder import QueryVectors

    recent = QueryVectors(size=2)
    recent.put("a", np.zeros(2))
    recent.put("b", np.ones(2))
    assert recent.get("a") is not None  # "a" is now the most recent
    recent.put("c", np.ones(2))
    assert recent.get("b") is None and recent.get("a") is not None and len(recent) == 2


async def test_a_search_while_the_encoder_is_unavailable_answers_from_lexical_matches(client, app):
    class BrokenEncoder:  # an onnxruntime session that fails at run time
        def embed(self, query):
            raise RuntimeError("onnxruntime: session failed")

    bundle = app.state.models.bundle
    loaded, bundle.query_encoder = bundle.query_encoder, BrokenEncoder()
    try:
        body = await _search(client, q="wireless earbuds never embedded before", limit=10)
    finally:
        bundle.query_encoder = loaded
    assert body["items"] and body["strategy"] == "search"
    assert all("semantic" not in _signals(item) for item in body["items"])


async def test_a_version_without_an_exported_encoder_embeds_queries_with_the_torch_model(
    client, app
):
    bundle = app.state.models.bundle
    query = "a thermos flask for a winter hike"
    expected = await _search(client, q=query, limit=10)  # the version's ONNX encoder
    app.state.query_vectors = type(app.state.query_vectors)(16)  # forget the embedding
    loaded, bundle.query_encoder = bundle.query_encoder, None
    try:
        body = await _search(client, q=query, limit=10)
    finally:
        bundle.query_encoder = loaded
    assert app.state.encoder is not None and app.state.encoder.done()  # loaded on demand
    assert [i["id"] for i in body["items"]] == [i["id"] for i in expected["items"]]
    assert any("semantic" in _signals(item) for item in body["items"])
