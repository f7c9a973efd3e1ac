"""Admin endpoints (X-API-Key): trigger jobs, see what every worker serves and how jobs went."""

import asyncio
import json
import logging
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import FileResponse

from database import jobs as job_queries
from database.pool import connection
from routers.dependencies import Pool
from routers.problems import ProblemError
from schemas import (
    ArtifactsOut,
    EvaluationOut,
    JobAccepted,
    JobName,
    JobRunOut,
    JobStatusOut,
    MetricsSummaryOut,
    Problem,
    StatusOut,
    VariantOut,
    WorkerOut,
)
from services import metrics
from services.artifacts import current_version_folder
from services.jobs import JOBS

logger = logging.getLogger(__name__)


def require_api_key(request: Request, x_api_key: Annotated[str | None, Header()] = None) -> None:
    configured = request.app.state.settings.admin_api_key
    if configured is None or not configured.get_secret_value():
        raise ProblemError(
            403, "admin endpoints are disabled: set ADMIN_API_KEY", problem_type="admin-disabled"
        )
    if x_api_key is None or not secrets.compare_digest(
        x_api_key.encode(), configured.get_secret_value().encode()
    ):
        raise ProblemError(401, "missing or wrong X-API-Key header", problem_type="unauthorized")


router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[Depends(require_api_key)],
    responses={401: {"model": Problem}, 403: {"model": Problem}},
)


@router.post(
    "/jobs/{job}",
    status_code=202,
    response_model=JobAccepted,
    responses={409: {"model": Problem}},
    name="admin:run_job",
)
async def run_job(request: Request, pool: Pool, job: JobName):
    """Start a job now, in the background; /admin/status shows how it went."""
    async with connection(pool) as conn:
        if await job_queries.job_is_running(conn=conn, job=job):
            raise ProblemError(409, f"{job} is already running", problem_type="job-running")
    runner = request.app.state.jobs
    task = asyncio.create_task(runner.run(job, "admin"))
    # Keep a reference until done: the event loop holds tasks only weakly.
    request.app.state.background_tasks.add(task)
    task.add_done_callback(request.app.state.background_tasks.discard)
    return JobAccepted(job=job, status="started", detail="see GET /admin/status")


@router.get("/status", response_model=StatusOut, name="admin:status")
async def status(request: Request, pool: Pool):
    """Versions served per worker, last run / next run of each job, row counts."""
    app = request.app
    settings = app.state.settings
    bundle = app.state.models.bundle
    recent = datetime.now(UTC) - timedelta(seconds=3 * settings.model_reload_seconds + 30)
    async with connection(pool) as conn:
        last_runs = {r["job"]: r for r in await job_queries.last_job_runs(conn=conn)}
        running = {job: await job_queries.job_is_running(conn=conn, job=job) for job in JOBS}
        workers = await job_queries.live_workers(conn=conn, since=recent)
        counts = await job_queries.row_counts(conn=conn)
    scheduler = app.state.scheduler
    jobs = {}
    for job in JOBS:
        scheduled = scheduler.get_job(job) if scheduler else None
        run = last_runs.get(job)
        jobs[job] = JobStatusOut(
            last_run=JobRunOut(**{k: run[k] for k in JobRunOut.model_fields}) if run else None,
            next_run_at=scheduled.next_run_time if scheduled else None,
            running=running[job],
        )
    current = current_version_folder(settings.artifacts_dir)
    root = settings.artifacts_dir
    on_disk = (
        sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if root.exists()
        else []
    )
    return StatusOut(
        worker=app.state.jobs.worker,
        model_version=bundle.version if bundle else None,
        workers=[WorkerOut(**dict(w)) for w in workers],
        artifacts=ArtifactsOut(
            current=current.name if current else None,
            on_disk=on_disk,
            load_error=app.state.models.last_error,
        ),
        jobs=jobs,
        row_counts=counts,
        variants=[
            VariantOut(name=v.name, share=share, ranker=v.ranker, weights=v.weights)
            for v, share in app.state.variants
        ],
    )


@router.get("/metrics", response_model=MetricsSummaryOut, name="admin:metrics")
async def metrics_summary():
    """Requests and latency percentiles per route, events stored, query embedding sources."""
    return metrics.summary()


def _report(folder: Path, name: str) -> dict | None:
    path = folder / name
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        logger.warning("%s: unreadable evaluation report", path)
        return None


@router.get(
    "/evaluation",
    response_model=EvaluationOut,
    responses={404: {"model": Problem}},
    name="admin:evaluation",
)
async def evaluation(request: Request):
    """The latest offline evaluation report (tables as JSON; the plot at /evaluation/plot)."""
    folder = request.app.state.settings.reports_dir
    report = _report(folder, "evaluation.json")
    if report is None:
        raise ProblemError(
            404,
            f"no evaluation report in {folder.name}/: run python -m ml.evaluate",
            problem_type="no-report",
        )
    return EvaluationOut(
        written_at=datetime.fromtimestamp((folder / "evaluation.json").stat().st_mtime, UTC),
        report=report,
        sessions=_report(folder, "sessions.json"),
        has_plot=(folder / "evaluation.png").is_file(),
    )


@router.get(
    "/evaluation/plot",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}}}, 404: {"model": Problem}},
    name="admin:evaluation_plot",
)
async def evaluation_plot(request: Request):
    """The evaluation's accuracy-vs-diversity plot (PNG)."""
    path = request.app.state.settings.reports_dir / "evaluation.png"
    if not path.is_file():
        raise ProblemError(
            404, "no evaluation plot: run python -m ml.evaluate", problem_type="no-report"
        )
    return FileResponse(path, media_type="image/png")
