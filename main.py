"""FastAPI app: lifespan (database pool, migrations, catalog, models, scheduler), routers,
middleware and problem+json error handlers.

Run: uvicorn main:app --port 8000   (several workers: --workers N)
"""

import asyncio
import gc
import logging
import os
import time
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from config.logging import configure_logging
from config.settings import PROJECT_ROOT, Settings, get_settings
from database import jobs as job_queries
from database.interactions import forget_home_rankings
from database.migrations import apply_migrations
from database.pool import connection, create_pool
from database.products import other_listings, product_aliases
from database.server import release_embedded_server, start_embedded_server
from database.training import fetch_catalog
from database.trending import fetch_trending, trending_computed_at
from routers import admin, api_docs, catalog, health, interactions, recommendations
from routers import metrics as metrics_router
from routers.hot_routes import HotRoutes
from routers.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from routers.problems import install_problem_docs, install_problem_handlers
from routers.worker_balance import worker_balance
from schemas import MAX_BODY_BYTES
from services import metrics
from services.catalog import Catalog
from services.feeds import warm_caches
from services.history import HistoryReader, RankingStore
from services.interactions import EventWriter
from services.jobs import JobRunner
from services.models import ModelStore, trending_in_catalog_order
from services.text_encoder import QueryVectors
from services.variants import variants_of

logger = logging.getLogger(__name__)
WEB_DIR = PROJECT_ROOT / "web"
TELEMETRY_OFF = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}


async def load_catalog(conn) -> Catalog:
    return Catalog.from_frame(
        await fetch_catalog(conn=conn, arrow_strings=True),
        listings=await other_listings(conn=conn),
        aliases=await product_aliases(conn=conn),
    )


async def refresh_models(app: FastAPI) -> bool:
    """Serve a newly published version. A version trained on a different catalog (products
    imported since start-up) brings the catalog with it: both are swapped together."""
    store: ModelStore = app.state.models
    if store.pending_version() is None:
        return False
    catalog = app.state.catalog
    bundle = await asyncio.to_thread(store.load_new, len(catalog), catalog.position_of)
    if bundle is None:
        return False
    trained_on = bundle.arrays["product_ids"]
    if len(trained_on) != len(catalog) or (bundle.to_catalog < 0).any():
        async with connection(app.state.pool) as conn:
            catalog = await load_catalog(conn)
        bundle = await asyncio.to_thread(
            store.load_for_catalog, bundle, len(catalog), catalog.position_of
        )
        if bundle is None:
            return False
        logger.info("catalog reloaded with the new version: %d products", len(catalog))
    trending = app.state.trending
    if trending is not None and len(trending.scores) != len(catalog):
        trending = None  # positions changed: reloaded below
    await asyncio.to_thread(warm_caches, catalog, trending, bundle)
    # Assigned on the event loop, between requests' awaits: a request never sees the new
    # catalog with the old models.
    app.state.catalog = catalog
    store.install(bundle)
    app.state.trending = trending
    async with connection(app.state.pool) as conn:
        # Home rankings computed with other versions serve no request of this one.
        await forget_home_rankings(conn=conn, keep_version=bundle.version)
    await refresh_trending(app)
    return True


async def refresh_trending(app: FastAPI) -> None:
    """Reload trending scores when the hourly update has moved them on (one cheap query)."""
    async with connection(app.state.pool) as conn:
        computed_at = await trending_computed_at(conn=conn)
        current = app.state.trending
        if computed_at is None or (current is not None and current.computed_at == computed_at):
            return
        rows = await fetch_trending(conn=conn)
    catalog = app.state.catalog
    trending = trending_in_catalog_order(
        [(r["product_id"], r["score"]) for r in rows],
        catalog.position_of,
        len(catalog),
        computed_at,
    )
    await asyncio.to_thread(warm_caches, catalog, trending, app.state.models.bundle)
    if app.state.catalog is catalog:  # not replaced meanwhile by a new version's catalog
        app.state.trending = trending


async def heartbeat(app: FastAPI) -> None:
    bundle = app.state.models.bundle
    async with connection(app.state.pool) as conn:
        await job_queries.beat(
            conn=conn,
            worker=app.state.jobs.worker,
            model_version=bundle.version if bundle else None,
            started_at=app.state.started_at,
        )


async def watch_for_new_models(app: FastAPI, every_seconds: float) -> None:
    """Pick up a newly published artifact version and new trending scores without a restart
    (a cheap check of the `current` pointer), and report this worker's version."""
    while True:
        await asyncio.sleep(every_seconds)
        try:
            await refresh_models(app)
            await refresh_trending(app)
            await heartbeat(app)
        except Exception:
            logger.exception("model refresh failed; previous version keeps serving")


def start_scheduler(app: FastAPI, settings: Settings) -> AsyncIOScheduler:
    """Every worker schedules every job; the advisory lock in JobRunner lets one of them run."""
    scheduler = AsyncIOScheduler(timezone=UTC)
    for job, cron in (
        ("trending", settings.trending_cron),
        ("retrain", settings.retrain_cron),
        ("retention", settings.retention_cron),
    ):
        scheduler.add_job(
            app.state.jobs.run,
            CronTrigger.from_crontab(cron, timezone=UTC),
            args=[job, "schedule"],
            id=job,
            name=job,
            coalesce=True,  # a worker that was busy or asleep runs a missed slot once
            misfire_grace_time=600,
            max_instances=1,
        )
    scheduler.start()
    return scheduler


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        started = time.perf_counter()
        embedded = None
        watcher = None
        # The torch encoder, for a version trained before its encoder was exported (the
        # version's own ONNX encoder loads with it): started by the first search that needs it.
        app.state.encoder = None
        url = settings.database_url
        if not url:
            # Starting the embedded server blocks for ~0.5 s: keep it off the event loop.
            embedded = await asyncio.to_thread(start_embedded_server, settings.pgdata_dir)
            url = embedded.get_uri("postgres")
        pool = await create_pool(
            url, min_size=settings.db_pool_min_size, max_size=settings.db_pool_max_size
        )
        app.state.scheduler = None
        try:
            async with pool.acquire() as conn:
                applied = await apply_migrations(conn)
            if applied:
                logger.info("applied migrations: %s", ", ".join(applied))
            app.state.pool = pool
            app.state.settings = settings
            app.state.variants = variants_of(settings)
            app.state.started_at = datetime.now(UTC)
            app.state.background_tasks = set()
            app.state.jobs = JobRunner(pool=pool, settings=settings, database_url=url)
            in_user_tables = settings.user_events_source == "user_tables"
            app.state.event_writer = EventWriter(pool, to_user_tables=in_user_tables)
            app.state.history_reader = HistoryReader(pool, from_log=not in_user_tables)
            app.state.query_vectors = QueryVectors(settings.query_vector_cache_size)
            app.state.ranking_store = RankingStore(pool)
            phases: dict[str, float] = {}

            def done(phase: str) -> None:  # seconds since the previous phase ended
                phases[phase] = time.perf_counter() - started - sum(phases.values())

            done("database")
            async with pool.acquire() as conn:
                app.state.catalog = await load_catalog(conn)
            done("catalog")
            app.state.models = ModelStore(settings.artifacts_dir, settings.search_torch_threads)
            app.state.trending = None
            await refresh_models(app)
            done("models")
            await refresh_trending(app)
            done("trending")
            await heartbeat(app)
            # The catalog is millions of long-lived objects: keep them out of every GC pass, which
            # otherwise shows up as periodic latency spikes.
            gc.collect()
            gc.freeze()
            logger.info(
                "ready in %.1f s (%s)",
                time.perf_counter() - started,
                ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in phases.items()),
            )
            watcher = asyncio.create_task(watch_for_new_models(app, settings.model_reload_seconds))
            if balance is not None:
                balance.start()
            if settings.scheduler_enabled:
                app.state.scheduler = start_scheduler(app, settings)
            yield
        finally:
            if balance is not None:
                balance.stop()
            if app.state.scheduler is not None:
                app.state.scheduler.shutdown(wait=False)
            if watcher is not None:
                watcher.cancel()
            for task in getattr(app.state, "background_tasks", ()):
                task.cancel()
            if hasattr(app.state, "jobs"):
                try:
                    async with pool.acquire(timeout=2) as conn:
                        await job_queries.forget_worker(conn=conn, worker=app.state.jobs.worker)
                except Exception:  # shutting down anyway; the heartbeat simply ages out
                    logger.warning("could not remove this worker's heartbeat")
            await pool.close()
            metrics.mark_process_dead(os.getpid())
            if embedded is not None:
                await asyncio.to_thread(release_embedded_server, embedded)

    app = FastAPI(
        title="Recommendation service",
        version="0.1.0",
        description="Hybrid product recommendations for an e-commerce catalog.",
        lifespan=lifespan,
        telemetry=None if settings.opentelemetry else TELEMETRY_OFF,
        docs_url=None,  # served from the installed assets instead of a CDN: routers/api_docs.py
        redoc_url=None,
    )
    install_problem_handlers(app)
    install_problem_docs(app)
    if not settings.opentelemetry:
        # Innermost: the storefront's routes served past FastAPI's routing (routers/hot_routes.py).
        # With OpenTelemetry on, every request takes FastAPI's routing, which names its span.
        app.add_middleware(
            HotRoutes,
            fastapi=app,
            routes=[*recommendations.router.routes, *interactions.router.routes],
        )
    app.add_middleware(BodySizeLimitMiddleware, limit=MAX_BODY_BYTES)
    balance = worker_balance() if settings.balance_workers else None
    app.add_middleware(RequestContextMiddleware, balance=balance)
    if settings.cors_origins:  # outermost: a preflight is answered before anything else
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "X-API-Key", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
            max_age=600,
        )
    app.include_router(health.router)
    app.include_router(interactions.router)
    app.include_router(recommendations.router)
    app.include_router(catalog.router)
    app.include_router(admin.router)
    app.include_router(metrics_router.router)
    # The storefront demo and the model dashboard: static pages calling the API above.
    app.mount("/demo", StaticFiles(directory=WEB_DIR, html=True), name="demo")
    api_docs.install(app)
    return app


app = create_app()
