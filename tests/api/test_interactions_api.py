"""POST /interactions and /interactions/batch over HTTP, against a real PostgreSQL."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from database.identifiers import user_table

PROBLEM = "application/problem+json"


async def _database_state(conn) -> dict:
    """Everything a bad request could have touched."""
    return {
        "products": await conn.fetch("SELECT * FROM products ORDER BY id"),
        "log": await conn.fetch("SELECT * FROM interaction_events ORDER BY event_id"),
        "tables": await conn.fetch(
            "SELECT schemaname, tablename FROM pg_tables"
            " WHERE schemaname IN ('public', 'user_events') ORDER BY 1, 2"
        ),
        "users": await conn.fetch("SELECT * FROM user_interaction_tables ORDER BY user_id"),
    }


def _click(user_id="U12345", product_id=None, **extra) -> dict:
    return {"user_id": user_id, "event_type": "product_click", "product_id": product_id, **extra}


INVALID_EVENTS = [
    # (body, field named in the problem)
    (lambda p: _click(product_id=p.lower()), "body.product_id"),
    (lambda p: _click(product_id=p[:9]), "body.product_id"),
    (lambda p: _click(product_id=p + "X"), "body.product_id"),
    (lambda p: _click(product_id=None), "body.product_id"),
    (lambda p: _click(product_id="ZZZZZZZZZZ"), "body.product_id"),  # well-formed, unknown
    (
        lambda p: {"user_id": "U1", "event_type": "search_query", "query": "   "},
        "body.query",
    ),
    (lambda p: {"user_id": "U1", "event_type": "search_query"}, "body.query"),
    (
        lambda p: {"user_id": "U1", "event_type": "search_query", "query": "x" * 201},
        "body.query",
    ),
    (lambda p: {"user_id": "U1", "event_type": "add_to_cart", "product_id": p}, "body.event_type"),
    (lambda p: _click(user_id="U-1 2", product_id=p), "body.user_id"),
    (lambda p: _click(user_id="", product_id=p), "body.user_id"),
    (lambda p: _click(user_id="u" * 51, product_id=p), "body.user_id"),
    (lambda p: _click(user_id='x"; DROP TABLE products; --', product_id=p), "body.user_id"),
    (
        lambda p: _click(
            product_id=p, timestamp=(datetime.now(UTC) + timedelta(hours=1)).isoformat()
        ),
        "body.timestamp",
    ),
    (lambda p: _click(product_id=p, timestamp="yesterday"), "body.timestamp"),
    (lambda p: _click(product_id=p, timestamp="1900-01-01T00:00:00Z"), "body.timestamp"),
    # PostgreSQL text cannot hold NUL: it must be refused, not reach SQL (it gave a 500).
    (
        lambda p: {"user_id": "U1", "event_type": "search_query", "query": "ab\u0000cd"},
        "body.query",
    ),
    (
        lambda p: {"user_id": "U1", "event_type": "search_query", "query": "ring\u0007 bell"},
        "body.query",
    ),
    (lambda p: _click(user_id="U１２３", product_id=p), "body.user_id"),  # full-width digits
    (lambda p: _click(user_id="../../etc", product_id=p), "body.user_id"),
    (lambda p: _click(user_id="U1", product_id="B0" + "\u0000" * 8), "body.product_id"),
    (lambda p: _click(product_id=p, colour="red"), "body.colour"),
    (lambda p: _click(product_id=p, event_id="has space"), "body.event_id"),
]


async def test_every_invalid_event_is_rejected_and_nothing_changes(client, conn, product_ids):
    before = await _database_state(conn)
    for make_body, field in INVALID_EVENTS:
        body = make_body(product_ids[0])
        response = await client.post("/interactions", json=body)
        assert response.status_code == 422, body
        assert response.headers["content-type"] == PROBLEM
        problem = response.json()
        assert problem["status"] == 422 and problem["title"] and problem["type"]
        assert field in [error["field"] for error in problem["errors"]], (body, problem)
    assert await _database_state(conn) == before


async def test_malformed_json_is_a_400_problem(client, conn):
    before = await _database_state(conn)
    for path in ("/interactions", "/interactions/batch"):
        response = await client.post(
            path, content=b"{not json", headers={"content-type": "application/json"}
        )
        assert response.status_code == 400
        assert response.headers["content-type"] == PROBLEM
        problem = response.json()
        assert problem["type"].endswith("/invalid-json") and "not valid JSON" in problem["detail"]
    assert await _database_state(conn) == before


async def test_click_and_search_are_stored(client, conn, product_ids):
    click = await client.post("/interactions", json=_click(product_id=product_ids[0]))
    assert click.status_code == 201, click.text
    assert click.json()["product_id"] == product_ids[0] and click.json()["duplicate"] is False
    search = await client.post(
        "/interactions",
        json={"user_id": "U12345", "event_type": "search_query", "query": "  wireless earbuds "},
    )
    assert search.status_code == 201
    assert search.json()["query"] == "wireless earbuds"
    rows = await conn.fetch('SELECT * FROM user_events."U12345_interactions" ORDER BY "timestamp"')
    assert [(r["event_type"], r["product_id"], r["query"]) for r in rows] == [
        ("product_click", product_ids[0], None),
        ("search_query", None, "wireless earbuds"),
    ]


async def test_client_timestamp_is_kept(client, conn, product_ids):
    when = datetime(2026, 11, 1, 12, 30, tzinfo=UTC)
    response = await client.post(
        "/interactions", json=_click(product_id=product_ids[0], timestamp="2026-11-01T12:30:00")
    )
    assert response.status_code == 201
    assert await conn.fetchval('SELECT "timestamp" FROM user_events."U12345_interactions"') == when


async def test_other_users_events_never_appear(client, conn, product_ids):
    await client.post("/interactions", json=_click("alice", product_ids[0]))
    await client.post("/interactions", json=_click("bob", product_ids[1]))
    await client.post("/interactions", json=_click("alice", product_ids[2]))
    alice = await conn.fetch('SELECT product_id FROM user_events."alice_interactions"')
    bob = await conn.fetch('SELECT product_id FROM user_events."bob_interactions"')
    assert sorted(r["product_id"] for r in alice) == sorted([product_ids[0], product_ids[2]])
    assert [r["product_id"] for r in bob] == [product_ids[1]]


async def test_same_event_id_twice_is_stored_once(client, conn, product_ids):
    body = _click(product_id=product_ids[0], event_id="3f1c2d9e-retry")
    first = await client.post("/interactions", json=body)
    second = await client.post("/interactions", json=body)
    assert first.status_code == 201 and second.status_code == 200
    assert second.json()["duplicate"] is True
    assert await conn.fetchval('SELECT count(*) FROM user_events."U12345_interactions"') == 1
    assert await conn.fetchval("SELECT count(*) FROM interaction_events") == 1


async def test_an_event_id_reused_for_another_event_is_a_409(client, conn, product_ids):
    body = _click(product_id=product_ids[0], event_id="pay-key-1")
    assert (await client.post("/interactions", json=body)).status_code == 201
    before = await _database_state(conn)
    for other in (
        body | {"product_id": product_ids[1]},
        body | {"user_id": "someone_else"},
        body | {"timestamp": "2026-01-01T00:00:00Z"},
    ):
        response = await client.post("/interactions", json=other)
        assert response.status_code == 409, other
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["type"].endswith("/event-id-reused")
        assert "pay-key-1" in response.json()["detail"]
    # A batch reusing it for another event is refused whole: nothing of it is stored.
    batch = [
        _click("batcher", product_ids[2], event_id="fresh-1"),
        body | {"product_id": product_ids[3]},
    ]
    refused = await client.post("/interactions/batch", json={"events": batch})
    assert refused.status_code == 409
    assert await _database_state(conn) == before
    # The same event again is still a retry.
    again = await client.post("/interactions", json=body)
    assert again.status_code == 200 and again.json()["duplicate"] is True


async def test_200_new_users_at_once(client, conn, product_ids):
    users = [f"new_user_{n}" for n in range(200)]
    responses = await asyncio.gather(
        *(
            client.post("/interactions", json=_click(u, product_ids[n % 20]))
            for n, u in enumerate(users)
        )
    )
    assert [r.status_code for r in responses] == [201] * 200
    tables = await conn.fetch(
        "SELECT tablename FROM pg_tables WHERE tablename LIKE 'new_user_%_interactions'"
    )
    assert len(tables) == 200
    assert await conn.fetchval("SELECT count(*) FROM user_interaction_tables") == 200
    for user in users[::37]:
        assert await conn.fetchval(f"SELECT count(*) FROM {user_table(user)}") == 1  # noqa: S608
    assert await conn.fetchval("SELECT count(*) FROM interaction_events") == 200


async def test_50_first_events_for_one_user_at_once(client, conn, product_ids):
    responses = await asyncio.gather(
        *(
            client.post("/interactions", json=_click("burst", product_ids[n % 20]))
            for n in range(50)
        )
    )
    assert [r.status_code for r in responses] == [201] * 50
    assert await conn.fetchval('SELECT count(*) FROM user_events."burst_interactions"') == 50
    assert (
        await conn.fetchval("SELECT count(*) FROM user_interaction_tables WHERE user_id = 'burst'")
        == 1
    )
    assert await conn.fetchval("SELECT count(*) FROM interaction_events") == 50


async def test_batch_stores_all(client, conn, product_ids):
    events = [_click(f"batch_{n % 7}", product_ids[n % 20]) for n in range(300)]
    events.append({"user_id": "batch_0", "event_type": "search_query", "query": "running shoes"})
    response = await client.post("/interactions/batch", json={"events": events})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["stored"] == 301 and body["duplicates"] == 0 and len(body["events"]) == 301
    assert await conn.fetchval("SELECT count(*) FROM interaction_events") == 301
    assert await conn.fetchval('SELECT count(*) FROM user_events."batch_0_interactions"') == 44
    assert await conn.fetchval('SELECT count(*) FROM user_events."batch_6_interactions"') == 42


async def test_batch_with_one_bad_event_stores_nothing(client, conn, product_ids):
    before = await _database_state(conn)
    good = [_click("batcher", product_ids[n]) for n in range(5)]
    for bad, field in [
        (_click("batcher", "ZZZZZZZZZZ"), "body.events.3.product_id"),
        (_click("batcher", product_ids[0].lower()), "body.events.3.product_id"),
        ({"user_id": "batcher", "event_type": "search_query", "query": " "}, "body.events.3.query"),
    ]:
        response = await client.post(
            "/interactions/batch", json={"events": [*good[:3], bad, *good[3:]]}
        )
        assert response.status_code == 422
        assert response.headers["content-type"] == PROBLEM
        assert field in [e["field"] for e in response.json()["errors"]]
    assert await _database_state(conn) == before


@pytest.mark.parametrize("size", [0, 1001])
async def test_batch_size_limits(client, product_ids, size):
    events = [_click("limits", product_ids[0])] * size
    response = await client.post("/interactions/batch", json={"events": events})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body.events"


async def test_batch_retry_and_repeated_event_ids(client, conn, product_ids):
    events = [_click("retry_batch", product_ids[n], event_id=f"e{n}") for n in range(3)]
    events.append(_click("retry_batch", product_ids[0], event_id="e0"))  # repeated in the batch
    first = (await client.post("/interactions/batch", json={"events": events})).json()
    assert (first["stored"], first["duplicates"]) == (3, 1)
    again = (await client.post("/interactions/batch", json={"events": events})).json()
    assert (again["stored"], again["duplicates"]) == (0, 4)
    assert await conn.fetchval('SELECT count(*) FROM user_events."retry_batch_interactions"') == 3


async def test_health_and_ready(client):
    assert (await client.get("/health")).json() == {"status": "ok"}
    ready = await client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["database"] == "ok" and ready.json()["products"] > 1000


async def test_unknown_route_is_a_problem(client):
    response = await client.get("/no-such-route")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM


async def test_a_click_on_an_alias_is_stored_as_a_click_on_its_product(client, conn, product_ids):
    # B0ALIAS001 was a listing merged into product_ids[0] (a near-duplicate under another id).
    await conn.execute("INSERT INTO product_aliases VALUES ('B0ALIAS001', $1)", product_ids[0])
    response = await client.post("/interactions", json=_click(product_id="B0ALIAS001"))
    assert response.status_code == 201, response.text
    assert response.json()["product_id"] == product_ids[0]
    stored = await conn.fetch("SELECT product_id FROM interaction_events")
    assert [r["product_id"] for r in stored] == [product_ids[0]]
    table = await conn.fetch('SELECT product_id FROM user_events."U12345_interactions"')
    assert [r["product_id"] for r in table] == [product_ids[0]]


async def test_a_body_above_the_limit_is_refused_with_413_and_nothing_stored(client, conn):
    from schemas import MAX_BODY_BYTES

    before = await _database_state(conn)
    query = "x" * (MAX_BODY_BYTES + 10)
    body = f'{{"user_id": "U1", "event_type": "search_query", "query": "{query}"}}'.encode()
    declared = await client.post(
        "/interactions", content=body, headers={"content-type": "application/json"}
    )
    assert declared.status_code == 413, declared.text
    assert declared.headers["content-type"] == PROBLEM
    assert declared.json()["status"] == 413

    async def chunks():  # no Content-Length: the limit applies as the body streams in
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    streamed = await client.post(
        "/interactions", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413, streamed.text
    assert streamed.headers["content-type"] == PROBLEM
    assert await _database_state(conn) == before


async def test_hostile_text_is_stored_verbatim_and_touches_nothing_else(client, conn):
    before = await _database_state(conn)
    hostile = "'; DROP TABLE products; -- \" OR 1=1 \u202e ｓｈｏｅｓ"
    search = {"user_id": "U1", "event_type": "search_query", "query": hostile}
    response = await client.post("/interactions", json=search)
    assert response.status_code == 201, response.text
    after = await _database_state(conn)
    assert after["products"] == before["products"]
    # One table more, and only the user's own.
    assert [t["tablename"] for t in after["tables"] if t not in before["tables"]] == [
        "U1_interactions"
    ]
    stored = await conn.fetchval('SELECT query FROM user_events."U1_interactions"')
    assert stored == hostile.strip()
    for path in (
        "/recommendations/product/..%2F..%2Fadmin",
        "/recommendations/product/B0%00AAAAAA",
    ):
        answer = await client.get(path)
        assert answer.status_code in (404, 422) and answer.headers["content-type"] == PROBLEM


async def test_an_exhausted_pool_answers_503_quickly_instead_of_hanging(database_url, tmp_path):
    from asgi_lifespan import LifespanManager
    from httpx import ASGITransport, AsyncClient

    from config.settings import Settings
    from database.pool import ACQUIRE_TIMEOUT_SECONDS
    from main import create_app

    settings = Settings(
        database_url=database_url,
        artifacts_dir=tmp_path / "artifacts",
        db_pool_min_size=1,
        db_pool_max_size=1,
        scheduler_enabled=False,
    )
    app = create_app(settings)
    async with (
        LifespanManager(app, startup_timeout=120),
        AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client,
    ):
        product = app.state.catalog.ids[0]
        async with app.state.pool.acquire():  # a long query holds the only connection
            started = asyncio.get_running_loop().time()
            refused = await client.post("/interactions", json=_click("UPOOL", product))
            waited = asyncio.get_running_loop().time() - started
            home = await client.get("/recommendations/home", params={"user_id": "UPOOL"})
        assert refused.status_code == 503 and refused.headers["content-type"] == PROBLEM
        assert int(refused.headers["retry-after"]) > 0
        assert waited < ACQUIRE_TIMEOUT_SECONDS + 5  # bounded by the acquire timeout, no hang
        assert home.status_code == 200 and home.json()["degraded"] is True
        # Once the connection is free again the same event is stored.
        stored = await client.post("/interactions", json=_click("UPOOL", product))
        assert stored.status_code == 201
