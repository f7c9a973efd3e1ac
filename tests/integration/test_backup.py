"""Backup and restore: the archive leaves the per-user tables out and restore rebuilds them from
the log, event for event; the restored database serves the same home feeds."""

from datetime import UTC, datetime

import asyncpg
import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient

from config.settings import Settings
from database.backup import ARCHIVED_TABLES, BackupError, dump, restore
from database.identifiers import qualified_user_table
from database.interactions import EventRow, store_events
from database.migrations import move_user_tables
from database.user_tables import differing_users
from ml.simulate import SimulationConfig
from tests.conftest import cloned_database, store_simulated_log

USER_COLUMNS = 'event_type, product_id, query, "timestamp"'


async def _home_pages(settings: Settings, users: list[str]) -> dict[str, list[str]]:
    from main import create_app

    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=120):
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://test") as client:
            pages = {}
            for user in users:
                response = await client.get("/recommendations/home", params={"user_id": user})
                assert response.status_code == 200, response.text
                body = response.json()
                pages[user] = [body["model_version"], *(i["id"] for i in body["items"])]
            return pages


async def _user_rows(conn, table: str) -> list[tuple]:
    rows = await conn.fetch(f"SELECT {USER_COLUMNS} FROM {qualified_user_table(table)}")  # noqa: S608
    return sorted(tuple(r) for r in rows)


@pytest.mark.usefixtures("seeded_artifacts")
async def test_restore_rebuilds_every_event_and_serves_the_same_feeds(
    server_url, database_url, conn, settings, product_ids, tmp_path
):
    config = SimulationConfig(users=40, events=2_000, days=10, seed=3)
    events, _ = await store_simulated_log(database_url, conn, config)
    # Values a round trip could bend: no product, a query with quotes and non-ASCII text.
    odd = [
        EventRow(
            "odd_1", "search_query", None, "naïve 'café' | \"x\"", datetime.now(UTC), "e1", True
        ),
        EventRow("odd_1", "product_click", product_ids[0], None, datetime.now(UTC), "e2", False),
    ]
    await store_events(conn=conn, events=odd)
    users = sorted(events["user_id"].unique())[:5] + ["odd_1"]
    before = await _home_pages(settings, users)

    summary = await dump(database_url, tmp_path / "backup")
    assert summary["log"]["events"] == len(events) + 2
    with pytest.raises(BackupError, match="choose an empty folder"):
        await dump(database_url, tmp_path / "backup")

    async with cloned_database(server_url, None, "rec_test_restore") as restored_url:
        result = await restore(restored_url, tmp_path / "backup")
        assert result["user_tables"] == events["user_id"].nunique() + 1
        assert result["events"] == len(events) + 2
        restored = await asyncpg.connect(restored_url)
        try:
            assert await differing_users(conn=restored) == []
            registry = "SELECT user_id, table_name, history_stamp FROM user_interaction_tables"
            assert sorted(await restored.fetch(registry)) == sorted(await conn.fetch(registry))
            for user_id, table, _ in await conn.fetch(registry):
                assert await _user_rows(restored, table) == await _user_rows(conn, table), user_id
            for table in ARCHIVED_TABLES - {"computed_home_rankings", "worker_heartbeats"}:
                count = f"SELECT count(*) FROM {table}"  # noqa: S608
                assert await restored.fetchval(count) == await conn.fetchval(count), table
        finally:
            await restored.close()
        # A second restore into a database that is no longer empty is refused.
        with pytest.raises(BackupError, match="restore into an empty one"):
            await restore(restored_url, tmp_path / "backup")
        after = await _home_pages(settings.model_copy(update={"database_url": restored_url}), users)
    assert after == before


async def test_every_table_has_a_place_in_the_backup(conn):
    tables = {
        (r["schemaname"], r["tablename"])
        for r in await conn.fetch(
            "SELECT schemaname, tablename FROM pg_tables"
            " WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        )
    }
    # The archive takes the public schema; user_events is rebuilt from the log; no other.
    assert {schema for schema, _ in tables} <= {"public", "user_events"}
    assert {t for s, t in tables if s == "public"} == ARCHIVED_TABLES


async def test_tables_made_before_the_schema_are_moved_in_batches(conn, product_ids):
    await store_events(
        conn=conn,
        events=[
            EventRow("old", "product_click", product_ids[0], None, datetime.now(UTC), "o1", False)
        ],
    )
    # As a table made before the migration: in public, listed to move.
    await conn.execute('ALTER TABLE user_events."old_interactions" SET SCHEMA public')
    await conn.execute("INSERT INTO user_tables_to_move VALUES ('old_interactions')")
    assert await move_user_tables(conn) == 1
    assert await conn.fetchval('SELECT count(*) FROM user_events."old_interactions"') == 1
    assert await conn.fetchval("SELECT count(*) FROM user_tables_to_move") == 0
    assert await differing_users(conn=conn) == []
