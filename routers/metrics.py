"""GET /metrics in the Prometheus text format."""

import time

from fastapi import APIRouter, Request, Response

from services import metrics

router = APIRouter(tags=["operations"])


@router.get("/metrics", name="metrics", include_in_schema=False)
async def prometheus_metrics(request: Request) -> Response:
    """Request latency per route, status counts, model version and age, jobs, events."""
    bundle = request.app.state.models.bundle
    if bundle is not None:
        metrics.MODEL_AGE.set(time.time() - bundle.created_at.timestamp())
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)
