"""Jobs: hourly trending (+ activity rollup), daily retraining (in a separate process) and
retention. Whoever runs them (the scheduler of any worker or replica, an admin request, the
data team's CLI) goes through `JobRunner.run`: a PostgreSQL advisory lock lets one run at a time,
and a scheduled run is skipped when a run already succeeded in the same period."""

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from pydantic import SecretStr

from config.settings import PROJECT_ROOT, Settings
from database import jobs as job_queries
from database.pool import connection
from database.trending import update_trending
from services import metrics

logger = logging.getLogger(__name__)
JOBS = ("trending", "retrain", "retention")
# A scheduled run within this time of the last success is the same slot, run by another worker.
SAME_SLOT = {
    "trending": timedelta(minutes=30),
    "retrain": timedelta(hours=12),
    "retention": timedelta(hours=12),
}
RETENTION_TABLES_PER_TRANSACTION = 50


@dataclass
class JobResult:
    job: str
    ran: bool  # False: running elsewhere, or already done in this slot
    outcome: str | None = None  # succeeded | failed
    detail: str = ""
    seconds: float = 0.0


def worker_name() -> str:
    return f"{os.uname().nodename}:{os.getpid()}"


def settings_environment(settings: Settings, database_url: str) -> dict[str, str]:
    """Environment for a child process that must see the same settings as this one."""
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        if value is not None and not isinstance(value, SecretStr):  # the child needs no secret
            env[name.upper()] = str(value)
    env["DATABASE_URL"] = database_url
    return env


class JobRunner:
    def __init__(self, *, pool: asyncpg.Pool, settings: Settings, database_url: str):
        self.pool = pool
        self.settings = settings
        self.database_url = database_url
        self.worker = worker_name()

    async def run(self, job: str, trigger: str) -> JobResult:
        """Run `job` unless it is running elsewhere (or, when scheduled, already ran this slot)."""
        if job not in JOBS:
            raise ValueError(f"unknown job {job!r}")
        async with connection(self.pool) as conn:
            if not await job_queries.try_job_lock(conn=conn, job=job):
                return JobResult(job, ran=False, detail="running elsewhere")
            try:
                return await self._run_locked(conn, job, trigger)
            finally:
                await job_queries.release_job_lock(conn=conn, job=job)

    async def _run_locked(self, conn: asyncpg.Connection, job: str, trigger: str) -> JobResult:
        await job_queries.mark_interrupted_runs(conn=conn, job=job)
        if trigger == "schedule":
            since = datetime.now(UTC) - SAME_SLOT[job]
            if await job_queries.succeeded_since(conn=conn, job=job, since=since):
                return JobResult(job, ran=False, detail="already ran in this period")
        run_id = await job_queries.start_job_run(
            conn=conn, job=job, trigger=trigger, worker=self.worker
        )
        started = time.perf_counter()
        try:
            detail = await getattr(self, f"_{job}")(conn)
            outcome = "succeeded"
        except Exception as exc:  # a failed job is recorded and leaves what is serving alone
            logger.exception("job %s failed", job)
            detail, outcome = f"{type(exc).__name__}: {exc}", "failed"
        seconds = time.perf_counter() - started
        await job_queries.finish_job_run(conn=conn, run_id=run_id, outcome=outcome, detail=detail)
        metrics.JOB_SECONDS.labels(job).observe(seconds)
        metrics.JOB_RUNS.labels(job, outcome).inc()
        if outcome == "succeeded":
            metrics.JOB_LAST_SUCCESS.labels(job).set(time.time())
        logger.info("job %s %s in %.1f s: %s", job, outcome, seconds, detail)
        return JobResult(job, True, outcome, detail, seconds)

    async def _trending(self, conn: asyncpg.Connection) -> str:
        now = datetime.now(UTC)
        update = await update_trending(
            conn=conn,
            decay_rate=self.settings.trending_decay_rate,
            window_days=self.settings.training_window_days,
            now=now,
        )
        # Recount the last two hours: the previous hour may have got late events.
        buckets = await job_queries.refresh_activity_rollup(
            conn=conn, since=now - timedelta(hours=2)
        )
        kind = "incremental" if update.incremental else "full"
        return f"{update.products} products scored ({kind}); {buckets} activity buckets"

    async def _retrain(self, conn: asyncpg.Connection) -> str:
        """Training in a child process: its CPU and GBs of memory never touch request serving;
        it publishes a validated version that every worker's watcher picks up."""
        command = [sys.executable, "-m", "ml.train", "--no-progress"]
        nice = shutil.which("nice")
        if nice and self.settings.retrain_nice:  # the CPU goes to requests first
            command = [nice, "-n", str(self.settings.retrain_nice), *command]
        process = await asyncio.create_subprocess_exec(
            *command,
            cwd=PROJECT_ROOT,
            env=settings_environment(self.settings, self.database_url),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group: a kill reaches anything it started
        )
        limit = self.settings.retrain_timeout_minutes
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=limit * 60)
        except TimeoutError:
            _kill_group(process)
            await process.wait()
            raise RuntimeError(
                f"training ran past its limit of {limit:g} min (RETRAIN_TIMEOUT_MINUTES) "
                "and was killed; the serving version is unchanged"
            ) from None
        except asyncio.CancelledError:
            _kill_group(process)
            await process.wait()
            raise
        if process.returncode != 0:
            lines = stderr.decode(errors="replace").strip().splitlines()
            raise RuntimeError(f"training exited with {process.returncode}: {_last(lines)}")
        return _last(stdout.decode(errors="replace").strip().splitlines())

    async def _retention(self, conn: asyncpg.Connection) -> str:
        cutoff = datetime.now(UTC) - timedelta(days=self.settings.retention_days)
        tables = await job_queries.tables_with_events_before(conn=conn, cutoff=cutoff)
        user_rows = 0
        for start in range(0, len(tables), RETENTION_TABLES_PER_TRANSACTION):
            batch = tables[start : start + RETENTION_TABLES_PER_TRANSACTION]
            if self.settings.user_events_source == "user_tables":
                user_rows += await job_queries.trim_user_tables(
                    conn=conn, table_names=batch, cutoff=cutoff
                )
            else:  # the log alone holds the events: their users' histories change with it
                await job_queries.bump_history_stamps(conn=conn, table_names=batch)
        log_rows = await job_queries.trim_global_log(conn=conn, cutoff=cutoff)
        rollup_cutoff = datetime.now(UTC) - timedelta(days=self.settings.activity_retention_days)
        buckets = await job_queries.trim_activity_rollup(conn=conn, cutoff=rollup_cutoff)
        where = (
            f"{user_rows} from {len(tables)} user tables"
            if self.settings.user_events_source == "user_tables"
            else f"{len(tables)} users' histories"
        )
        return (
            f"removed events before {cutoff:%Y-%m-%d %H:%M}: {log_rows} from the log, "
            f"{where}; {buckets} activity buckets"
        )


def _kill_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(process.pid, signal.SIGKILL)


def _last(lines: list[str]) -> str:
    return lines[-1] if lines else ""
