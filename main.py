"""FastAPI app: lifespan (database pool, migrations), routers, problem+json error handlers.

Run: uvicorn main:app --port 8000
"""

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI

from config.settings import Settings, get_settings
from database.migrations import apply_migrations
from database.pool import create_pool
from database.server import release_embedded_server, start_embedded_server
from routers import health, interactions
from routers.problems import install_problem_handlers

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        embedded = None
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
            app.state.model_versions = {}
            yield
        finally:
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
    return app


app = create_app()
