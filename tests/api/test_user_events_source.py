"""USER_EVENTS_SOURCE: the same events stored and read through the API with one table per user
(the spec's layout) or with the global log alone, and the tables rebuilt from the log when a
shop switches back."""

from datetime import UTC, datetime, timedelta

import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient

from database.pool import create_pool
from database.user_tables import differing_users, rebuild_user_tables

STAMPS = "SELECT user_id, history_stamp FROM user_interaction_tables"


@pytest.fixture(params=["user_tables", "global_log"])
async def source_app(request, settings):
    from main import create_app

    app = create_app(settings.model_copy(update={"user_events_source": request.param}))
    async with LifespanManager(app, startup_timeout=120):
        yield app


@pytest.fixture
async def source_client(source_app):
    transport = ASGITransport(app=source_app)
    async with AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def _table_exists(conn, user_id: str) -> bool:
    name = f'user_events."{user_id}_interactions"'
    return await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name)


async def test_events_are_stored_and_read_alike_from_either_source(
    source_app, source_client, conn, product_ids
):
    source = source_app.state.settings.user_events_source
    earlier = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    batch = [
        {
            "user_id": "s1",
            "event_type": "product_click",
            "product_id": product_ids[0],
            "timestamp": earlier,
        },
        {"user_id": "s1", "event_type": "search_query", "query": "naïve 'tea'"},
        {"user_id": "s2", "event_type": "product_click", "product_id": product_ids[1]},
    ]
    response = await source_client.post("/interactions/batch", json={"events": batch})
    assert response.status_code == 201, response.text
    stamps = dict(await conn.fetch(STAMPS))
    click = {"user_id": "s1", "event_type": "product_click", "product_id": product_ids[2]}
    assert (await source_client.post("/interactions", json=click)).status_code == 201
    # Every write changes the user's history stamp, whichever the source.
    assert dict(await conn.fetch(STAMPS))["s1"] != stamps["s1"]

    since = datetime.now(UTC) - timedelta(days=1)
    found = await source_app.state.history_reader.read("s1", since)
    assert [(e["event_type"], e["product_id"], e["query"]) for e in found.events] == [
        ("product_click", product_ids[2], None),
        ("search_query", None, "naïve 'tea'"),
        ("product_click", product_ids[0], None),
    ]
    assert (await source_app.state.history_reader.read("nobody", since)).events == []
    assert await conn.fetchval("SELECT count(*) FROM interaction_events") == 4
    assert await _table_exists(conn, "s1") == (source == "user_tables")
    # A home feed follows the clicks from either source.
    home = await source_client.get("/recommendations/home", params={"user_id": "s1"})
    assert home.status_code == 200, home.text


async def test_retention_from_the_log_alone_changes_the_users_stamps(
    source_app, source_client, conn
):
    source = source_app.state.settings.user_events_source
    old = datetime.now(UTC) - timedelta(days=source_app.state.settings.retention_days + 5)
    events = [
        {
            "user_id": "veteran",
            "event_type": "search_query",
            "query": "old",
            "timestamp": old.isoformat(),
        },
        {"user_id": "veteran", "event_type": "search_query", "query": "new"},
    ]
    response = await source_client.post("/interactions/batch", json={"events": events})
    assert response.status_code == 201
    before = dict(await conn.fetch(STAMPS))
    result = await source_app.state.jobs.run("retention", "admin")
    assert result.outcome == "succeeded", result.detail
    where = "1 from 1 user tables" if source == "user_tables" else "1 users' histories"
    assert f"1 from the log, {where}" in result.detail
    assert dict(await conn.fetch(STAMPS))["veteran"] != before["veteran"]
    since = datetime.now(UTC) - timedelta(days=400)
    found = await source_app.state.history_reader.read("veteran", since)
    assert [e["query"] for e in found.events] == ["new"]


async def test_switching_back_rebuilds_the_tables_from_the_log(
    source_app, source_client, conn, database_url, product_ids
):
    events = [
        {"user_id": f"back_{n}", "event_type": "product_click", "product_id": product_ids[n]}
        for n in range(6)
    ]
    response = await source_client.post("/interactions/batch", json={"events": events})
    assert response.status_code == 201
    pool = await create_pool(database_url, min_size=1, max_size=3)
    try:
        rebuilt = await rebuild_user_tables(pool=pool)
    finally:
        await pool.close()
    if source_app.state.settings.user_events_source == "global_log":
        assert (rebuilt.tables, rebuilt.rows, rebuilt.existing) == (6, 6, 0)
    else:  # every table was there: nothing to do
        assert (rebuilt.tables, rebuilt.existing) == (0, 6)
    assert await differing_users(conn=conn) == []
