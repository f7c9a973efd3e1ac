"""Liveness and readiness probes."""

import asyncpg
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from database.pool import DatabaseUnavailable, connection
from database.products import count_products
from routers.dependencies import Pool
from schemas import HealthOut, ReadyOut

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthOut, name="health:live")
async def health():
    """Liveness: the process answers."""
    return HealthOut(status="ok")


@router.get(
    "/ready",
    response_model=ReadyOut,
    responses={503: {"model": ReadyOut}},
    name="health:ready",
)
async def ready(request: Request, pool: Pool):
    """Readiness: the database answers; which model versions are loaded."""
    trending = request.app.state.trending
    models = request.app.state.models.versions() | {
        "trending": trending.computed_at.isoformat() if trending else None
    }
    try:
        async with connection(pool) as conn:
            products = await count_products(conn=conn)
    except (DatabaseUnavailable, asyncpg.PostgresError):
        body = ReadyOut(status="not_ready", database="unreachable", products=None, models=models)
        return JSONResponse(body.model_dump(), status_code=503)
    return ReadyOut(status="ready", database="ok", products=products, models=models)
