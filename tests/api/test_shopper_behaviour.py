"""What a shopper sees, through the API on a trained simulated shop: the feed follows the visit,
a product shows once, reasons name products, pages join, filters forgive case."""

import re
import shutil
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient

from config.settings import Settings
from main import create_app
from ml.simulate import SimulationConfig
from ml.train import train
from services.artifacts import publish
from tests.conftest import cloned_database, store_simulated_log

PRODUCT_ID = re.compile(r"\b[A-Z0-9]{10}\b")


# One trained shop for the module (training is most of a test's time); tests use users of
# their own, so they do not see each other's events.
@pytest.fixture(scope="module")
async def shop_database(server_url, template_database):
    async with cloned_database(server_url, template_database, "rec_shop") as url:
        yield url


@pytest.fixture(scope="module")
async def conn(shop_database):
    connection = await asyncpg.connect(shop_database)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture(scope="module")
def settings(shop_database, trained_catalog_version, tmp_path_factory) -> Settings:
    root = tmp_path_factory.mktemp("shop-artifacts")
    shutil.copytree(trained_catalog_version, root / trained_catalog_version.name)
    publish(root, root / trained_catalog_version.name)
    return Settings(database_url=shop_database, db_pool_max_size=10, artifacts_dir=root)


@pytest.fixture(scope="module")
async def shop(conn, shop_database, settings):
    """The test catalog with a copy of some products under other ids (listings of one
    product), a simulated log, and models trained on it: the log's events."""
    await conn.execute(
        """
        INSERT INTO products
        SELECT 'Z' || substr(id, 2), name, main_category, sub_category, image, link, ratings,
               no_of_ratings, discount_price, actual_price, discount_ratio
        FROM products ORDER BY no_of_ratings DESC NULLS LAST LIMIT 40
        """
    )
    config = SimulationConfig(users=200, events=16_000, days=30, seed=3)
    events, _ = await store_simulated_log(shop_database, conn, config)
    await train(conn=conn, settings=settings)
    return events


@pytest.fixture(scope="module")
async def app(shop, settings):
    application = create_app(settings)
    async with LifespanManager(application, startup_timeout=120):
        yield application


@pytest.fixture(scope="module")
async def client(app):
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as http:
        yield http


async def _home(client, user_id, **params):
    response = await client.get("/recommendations/home", params={"user_id": user_id, **params})
    assert response.status_code == 200, response.text
    return response.json()


async def _sub_categories(conn, minimum: int = 12) -> list[str]:
    rows = await conn.fetch(
        "SELECT sub_category FROM products GROUP BY 1 HAVING count(*) >= $1 ORDER BY 1", minimum
    )
    return [r["sub_category"] for r in rows]


async def _click(client, user_id, product_id, minutes_ago: float = 0):
    event = {"user_id": user_id, "event_type": "product_click", "product_id": product_id}
    event["timestamp"] = (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat()
    response = await client.post("/interactions", json=event)
    assert response.status_code == 201, response.text


def _groups(app, items) -> list[int]:
    catalog = app.state.catalog
    return [int(catalog.product_group[catalog.position_of[i["id"]]]) for i in items]


async def test_after_clicks_in_a_sub_category_the_feed_shows_more_of_it(client, app, conn, shop):
    subs = await _sub_categories(conn)
    assert len(subs) >= 4
    known = shop["user_id"].value_counts().index[0]  # a shopper with a long history
    for n, sub in enumerate(subs):
        ids = [
            r["id"]
            for r in await conn.fetch(
                "SELECT id FROM products WHERE sub_category = $1 ORDER BY no_of_ratings DESC "
                "NULLS LAST, id LIMIT 3 OFFSET 3",
                sub,
            )
        ]
        for user in (f"visitor_{n}", known):
            for minutes_ago, product in zip((3, 2, 1), ids, strict=True):
                await _click(client, user, product, minutes_ago)
            body = await _home(client, user, limit=10)
            top = [i["sub_category"] for i in body["items"]]
            assert top.count(sub) >= 3, (
                sub,
                user,
                [(i["sub_category"], [r["signal"] for r in i["reasons"]]) for i in body["items"]],
            )
            assert body["strategy"] == "personal_ranked_visit"
            # The spec's weights as the page's parts: no search in the visit, so its part goes
            # to the learned ranking.
            assert body["weights"] == {"clicked": 0.5, "ranked": 0.4, "explore": 0.1}
            assert not set(ids) & {i["id"] for i in body["items"]}  # seen ones left out
            # The cap per sub-category still holds on the page.
            assert max(top.count(s) for s in top) <= 4
        known = f"visitor_known_{n}"  # the next sub-category starts a fresh visitor too


async def test_one_search_puts_its_matches_in_the_top_ten(client, app, conn, shop):
    for n, query in enumerate(("smartphone", "headphones", "shoes", "watch")):
        event = {"user_id": f"searcher_{n}", "event_type": "search_query", "query": query}
        assert (await client.post("/interactions", json=event)).status_code == 201
        body = await _home(client, f"searcher_{n}", limit=10)
        matched = [i for i in body["items"] if any(r["signal"] == "search" for r in i["reasons"])]
        assert len(matched) >= 2, (query, [i["name"] for i in body["items"]])
        assert "search" in body["weights"]


async def test_pages_join_and_say_where_the_next_one_starts(client, app, conn, shop):
    users = ["new_visitor", *shop["user_id"].value_counts().index[:5]]
    for user in users:
        whole = await _home(client, user, limit=20)
        first = await _home(client, user, limit=10)
        second = await _home(client, user, limit=10, offset=10)
        assert [i["id"] for i in first["items"] + second["items"]] == [
            i["id"] for i in whole["items"]
        ], user
        assert first["next_offset"] == 10 and second["next_offset"] == 20
        # Exploration slots stay in the joined pages (diverse weight 0.1).
        assert any(r["signal"] == "explore" for i in whole["items"] for r in i["reasons"]) or (
            user == "new_visitor"
        )
    product = shop["product_id"].dropna().iloc[0]
    similar = f"/recommendations/product/{product}"
    everything = (await client.get(similar, params={"limit": 100})).json()
    assert everything["next_offset"] is None  # the whole list fits
    last = len(everything["items"])
    tail = (await client.get(similar, params={"limit": 10, "offset": last - 5})).json()
    assert len(tail["items"]) == 5 and tail["next_offset"] is None
    far = (await client.get(similar, params={"limit": 10, "offset": last})).json()
    assert far["items"] == [] and far["empty_reason"] == "past_the_end"


async def test_a_product_shows_once_under_any_listing(client, app, conn, shop):
    catalog = app.state.catalog
    twins = await conn.fetch(
        "SELECT id, 'Z' || substr(id, 2) AS twin FROM products "
        "WHERE id NOT LIKE 'Z%' AND 'Z' || substr(id, 2) IN "
        "(SELECT id FROM products)"
    )
    assert len(twins) == 40
    for row in twins[:10]:
        assert (
            catalog.product_group[catalog.position_of[row["id"]]]
            == catalog.product_group[catalog.position_of[row["twin"]]]
        )
        similar = await client.get(f"/recommendations/product/{row['id']}", params={"limit": 20})
        ids = [i["id"] for i in similar.json()["items"]]
        assert row["twin"] not in ids  # never the product itself under another id
        assert len(set(_groups(app, similar.json()["items"]))) == len(ids)
    lists = [await _home(client, u, limit=50) for u in ["nobody", *shop["user_id"].unique()[:5]]]
    for query in ("phone", "shoes", "cotton"):
        response = await client.get("/recommendations/search", params={"q": query, "limit": 50})
        lists.append(response.json())
    session = await client.get(
        "/recommendations/session",
        params={"product_ids": [twins[0]["id"], twins[1]["id"]], "limit": 50},
    )
    lists.append(session.json())
    assert twins[0]["twin"] not in [i["id"] for i in session.json()["items"]]
    for body in lists:
        groups = _groups(app, body["items"])
        assert len(groups) == len(set(groups))


async def test_reasons_name_products_and_categories_not_ids(client, app, conn, shop):
    user = shop["user_id"].value_counts().index[0]
    product = shop["product_id"].dropna().iloc[0]
    bodies = [
        await _home(client, user, limit=50),
        await _home(client, "nobody_yet", limit=50),
        (await client.get(f"/recommendations/product/{product}", params={"mode": "blend"})).json(),
        (await client.get("/recommendations/session", params={"product_ids": [product]})).json(),
        (
            await client.get("/recommendations/search", params={"q": "shoes", "user_id": user})
        ).json(),  # noqa: E501
    ]
    texts = [r["text"] for body in bodies for i in body["items"] for r in i["reasons"]]
    assert texts
    assert not [t for t in texts if PRODUCT_ID.search(t)]
    main_categories = set(app.state.catalog.main_category_names)
    assert not [t for t in texts if any(f" {m}" in t for m in main_categories if m.islower())]


async def test_category_filters_ignore_case_and_unknown_ones_are_422(client, app, conn, shop):
    listing = (await client.get("/categories")).json()["categories"]
    assert listing and all(c["products"] > 0 and c["sub_categories"] for c in listing)
    sub = listing[0]["sub_categories"][0]
    seen = []
    for spelled in (sub["name"], sub["name"].upper(), sub["name"].lower()):
        home = await _home(client, "filterer", category=spelled, limit=10)
        assert home["items"], spelled
        seen.append([i["id"] for i in home["items"]])
    assert seen[0] == seen[1] == seen[2]
    typo = sub["name"][:-1]
    response = await client.get("/recommendations/home", params={"user_id": "u1", "category": typo})
    assert response.status_code == 422
    problem = response.json()
    assert problem["type"].endswith("/unknown-category")
    assert sub["display_name"] in problem["detail"]
    empty = await _home(client, "filterer", category=sub["name"], min_price=10**7)
    assert empty["items"] == [] and empty["empty_reason"] == "filters_match_nothing"


async def test_the_session_feed_follows_every_click_of_the_visit(client, app, conn, shop):
    catalog = app.state.catalog
    subs = await _sub_categories(conn)
    firsts = [
        await conn.fetchval(
            "SELECT id FROM products WHERE sub_category = $1 ORDER BY no_of_ratings DESC "
            "NULLS LAST, id LIMIT 1",
            sub,
        )
        for sub in subs[:4]
    ]
    followed = 0
    for first, last in zip(firsts, firsts[1:] + firsts[:1], strict=True):
        both = await client.get(
            "/recommendations/session", params={"product_ids": [first, last], "limit": 10}
        )
        items = both.json()["items"]
        last_sub = catalog.sub_category[catalog.position_of[last]]
        followed += sum(i["sub_category"] == last_sub for i in items) >= 3
        alone = await client.get(
            "/recommendations/session", params={"product_ids": [first], "limit": 10}
        )
        assert [i["id"] for i in items] != [i["id"] for i in alone.json()["items"]]
    assert followed >= 3  # the latest click leads


async def test_a_click_on_another_listing_id_is_stored_as_its_product(client, app, conn, shop):
    product = shop["product_id"].dropna().iloc[0]
    await conn.execute(
        "INSERT INTO product_aliases (alias_id, product_id) VALUES ('A000000001', $1)", product
    )
    app.state.catalog.position_of["A000000001"] = app.state.catalog.position_of[product]
    event = {"user_id": "alias_user", "event_type": "product_click", "product_id": "A000000001"}
    response = await client.post("/interactions", json=event)
    assert response.status_code == 201 and response.json()["product_id"] == product
    stored = await conn.fetchval(
        "SELECT product_id FROM interaction_events WHERE user_id = 'alias_user'"
    )
    assert stored == product


async def test_also_viewed_without_clicks_falls_back_to_similar_products(client, app, conn, shop):
    never_clicked = await conn.fetchval(
        "SELECT id FROM products WHERE id NOT IN (SELECT product_id FROM interaction_events "
        "WHERE product_id IS NOT NULL) ORDER BY id LIMIT 1"
    )
    response = await client.get(
        f"/recommendations/product/{never_clicked}", params={"mode": "also_viewed"}
    )
    body = response.json()
    assert body["items"] and body["strategy"] == "content_similarity"
    assert all(i["reasons"][0]["signal"] == "similar" for i in body["items"])


async def test_docs_are_served_from_local_assets(client):
    for page, asset in (
        ("/docs", "/docs-assets/swagger/swagger-ui-bundle.js"),
        ("/redoc", "/docs-assets/redoc/redoc.standalone.js"),
    ):
        html = (await client.get(page)).text
        assert asset in html and "cdn." not in html and "googleapis" not in html
        script = await client.get(asset)
        assert script.status_code == 200 and len(script.content) > 100_000


async def test_browsers_of_allowed_origins_may_call_the_api(settings):
    preflight = {
        "Origin": "https://shop.example.com",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "content-type",
    }
    allowed = create_app(settings.model_copy(update={"cors_origins": ["https://shop.example.com"]}))
    async with AsyncClient(transport=ASGITransport(app=allowed), base_url="http://t") as http:
        response = await http.options("/recommendations/home", headers=preflight)
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://shop.example.com"
        other = await http.options(
            "/recommendations/home", headers=preflight | {"Origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in other.headers
    closed = create_app(settings)  # no CORS_ORIGINS: no CORS headers at all
    async with AsyncClient(transport=ASGITransport(app=closed), base_url="http://t") as http:
        response = await http.options("/recommendations/home", headers=preflight)
        assert "access-control-allow-origin" not in response.headers


async def _search_ids(client, q: str) -> list[str]:
    response = await client.get("/recommendations/search", params={"q": q, "limit": 10})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["fallback_reason"] is None, (q, body["fallback_reason"])
    return [i["id"] for i in body["items"]]


def _lexical_ids(app, q: str) -> list[str]:
    from services.feeds import Filters, SearchSettings, search_feed

    feed = search_feed(
        catalog=app.state.catalog,
        bundle=app.state.models.bundle,
        trending=None,
        query=q,
        query_vector=None,  # words and synonyms only
        events=[],
        user_id=None,
        filters=Filters(),
        settings=SearchSettings.of(app.state.settings),
        now=datetime.now(UTC),
        n=10,
    )
    return [app.state.catalog.ids[c.position] for c in feed.items]


async def test_a_typo_or_another_form_finds_what_the_word_finds(client, app, conn, shop):
    catalog = app.state.catalog
    words = sorted(
        {
            name.split()[0].lower()
            for name in catalog.sub_category_names
            if name and name.split()[0].isalpha() and len(name.split()[0]) >= 7
        }
    )[:6]
    assert len(words) >= 4
    corrected_to_the_word = 0
    for word in words:
        found = await _search_ids(client, word)
        typo = word[:2] + word[3:]  # one letter left out
        singular = word[:-1] if word.endswith("s") else word + "s"
        for other in (typo, singular):
            # By words alone a typo finds the very same list, another form nearly the same.
            lexical = _lexical_ids(app, word)
            if other == typo:
                assert _lexical_ids(app, other) == lexical, (word, other)
            else:
                overlap = set(_lexical_ids(app, other)) & set(lexical)
                assert len(overlap) >= min(8, len(lexical)), (word, other)
            assert len(set(await _search_ids(client, other)) & set(found)) >= 6, (word, other)
        # Corrected to the very word, a typo is searched (words and meaning) as the word is.
        response = await client.get("/recommendations/search", params={"q": typo, "limit": 10})
        if response.json()["corrections"] == [{"term": typo, "corrected_to": word}]:
            assert [i["id"] for i in response.json()["items"]] == found, (word, typo)
            corrected_to_the_word += 1
    assert corrected_to_the_word >= len(words) // 2
    body = (
        await client.get("/recommendations/search", params={"q": words[0][:2] + words[0][3:]})
    ).json()
    assert body["corrections"] == [
        {"term": words[0][:2] + words[0][3:], "corrected_to": words[0]}
    ] or (body["corrections"] and body["corrections"][0]["corrected_to"].startswith(words[0][:4]))


async def test_nonsense_falls_back_and_says_so(client, shop):
    for q in ("xqzvbl flurbotank", "qwpoeiruty", "zzkkxxqq vvbbnn"):
        body = (await client.get("/recommendations/search", params={"q": q})).json()
        assert body["fallback_reason"] in ("no_match_used_trending", "no_match_used_associations")
