"""Shared fixtures: a real PostgreSQL (DATABASE_URL, or an embedded server in a temp folder), a
template database with the schema and a small generated catalog, and one fresh database per test."""

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pandas as pd
import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient

from config.settings import Settings
from database.csv_importer import import_catalog
from database.migrations import apply_migrations
from database.pool import create_pool
from database.server import release_embedded_server, start_embedded_server
from database.simulation import copy_events_to_log, write_user_tables
from database.training import fetch_catalog
from ml.clean_catalog import clean_catalog
from ml.generate_catalog import write_catalog
from ml.simulate import SimulationConfig, simulate

TEST_CATALOG_ROWS = 1500


def _with_database(url: str, database: str) -> str:
    """Same server, another database (works for host:port and unix-socket URLs)."""
    base, _, query = url.partition("?")
    server_part = base.rsplit("/", 1)[0] if base.count("/") > 2 else base
    return f"{server_part}/{database}" + (f"?{query}" if query else "")


@pytest.fixture(scope="session")
def server_url():
    """URL of a PostgreSQL server tests may create databases on."""
    configured = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if configured:
        yield configured
        return
    folder = Path(tempfile.mkdtemp(prefix="rec-tests-"))
    server = start_embedded_server(folder / "pgdata")
    try:
        yield server.get_uri("postgres")
    finally:
        release_embedded_server(server)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def catalog_csv(tmp_path_factory) -> Path:
    """A small generated catalog, run through the real cleaning pipeline."""
    folder = tmp_path_factory.mktemp("catalog")
    raw = write_catalog(folder / "raw.csv", rows=TEST_CATALOG_ROWS, seed=11)
    processed = folder / "processed.csv"
    clean_catalog([raw], processed)
    return processed


@pytest.fixture(scope="session")
async def template_database(server_url, catalog_csv):
    """A database with migrations applied and the test catalog imported, cloned per test."""
    name = f"rec_test_template_{os.getpid()}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    await admin.execute(f'CREATE DATABASE "{name}"')
    conn = await asyncpg.connect(_with_database(server_url, name))
    await apply_migrations(conn)
    await import_catalog(conn=conn, csv_path=catalog_csv)
    await conn.close()
    try:
        yield name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@asynccontextmanager
async def cloned_database(server_url: str, template: str | None, prefix: str) -> AsyncIterator[str]:
    """URL of a new database cloned from `template` (None: an empty one) on the same server,
    dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_url)
    clone = f' TEMPLATE "{template}" STRATEGY FILE_COPY' if template else ""
    await admin.execute(f'CREATE DATABASE "{name}"{clone}')
    try:
        yield _with_database(server_url, name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def store_simulated_log(
    url: str, conn: asyncpg.Connection, config: SimulationConfig
) -> tuple[pd.DataFrame, int]:
    """A simulated log of the database's catalog, stored as the service stores events: the
    global log and each user's table. Returns the events and how many user tables were made."""
    events = simulate(await fetch_catalog(conn=conn), config)
    await copy_events_to_log(conn=conn, events=events)
    pool = await create_pool(url, min_size=1, max_size=3)
    try:
        created = await write_user_tables(pool=pool, events=events)
    finally:
        await pool.close()
    return events, created


@pytest.fixture
async def database_url(server_url, template_database):
    """URL of a fresh database for this test only (dropped afterwards)."""
    async with cloned_database(server_url, template_database, "rec_test") as url:
        yield url


@pytest.fixture
async def conn(database_url):
    connection = await asyncpg.connect(database_url)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
def settings(database_url, tmp_path) -> Settings:
    return Settings(
        database_url=database_url, db_pool_max_size=10, artifacts_dir=tmp_path / "artifacts"
    )


@pytest.fixture(scope="session")
async def trained_catalog_version(server_url, template_database, tmp_path_factory) -> Path:
    """One artifact version of the test catalog (no clicks yet), trained once per session: the
    embeddings are the slow part (~10 s for 1,500 products), and training reuses them by digest."""
    from ml.train import train

    root = tmp_path_factory.mktemp("seed-artifacts")
    async with cloned_database(server_url, template_database, "rec_test_seed") as url:
        conn = await asyncpg.connect(url)
        try:
            result = await train(conn=conn, settings=Settings(database_url=url, artifacts_dir=root))
        finally:
            await conn.close()
    return result.folder


@pytest.fixture
def seeded_artifacts(settings, trained_catalog_version) -> Path:
    """The session's trained version copied into this test's artifacts folder and made current,
    before the app starts (use with pytest.mark.usefixtures)."""
    from services.artifacts import publish

    folder = settings.artifacts_dir / trained_catalog_version.name
    shutil.copytree(trained_catalog_version, folder)
    publish(settings.artifacts_dir, folder)
    return folder


@pytest.fixture
async def app(settings):
    from main import create_app

    application = create_app(settings)
    # Start-up loads the sentence encoder (several seconds on a busy machine).
    async with LifespanManager(application, startup_timeout=120):
        yield application


@pytest.fixture
async def client(app):
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as http:
        yield http


@pytest.fixture
async def product_ids(conn) -> list[str]:
    rows = await conn.fetch("SELECT id FROM products ORDER BY id LIMIT 20")
    return [row["id"] for row in rows]
