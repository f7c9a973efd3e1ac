"""SQL for operations: job runs and their advisory locks, worker heartbeats, the hourly activity
rollup, retention and the row counts /admin/status shows."""

from datetime import datetime

import asyncpg

from database.identifiers import qualified_user_table

# One advisory lock per job: whichever worker, replica or CLI holds it runs the job.
JOB_LOCK_KEYS = {"trending": 7_311_010, "retrain": 7_311_011, "retention": 7_311_012}
# Batch statements over millions of rows may take longer than the pool's 30 s request timeout.
BATCH_TIMEOUT = 3600


async def try_job_lock(*, conn: asyncpg.Connection, job: str) -> bool:
    """Session-level lock, held until released or the connection closes (a crash frees it)."""
    return await conn.fetchval("SELECT pg_try_advisory_lock($1)", JOB_LOCK_KEYS[job])


async def release_job_lock(*, conn: asyncpg.Connection, job: str) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1)", JOB_LOCK_KEYS[job])


async def job_is_running(*, conn: asyncpg.Connection, job: str) -> bool:
    return await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND ((classid::bigint << 32) | objid::bigint) = $1)",
        JOB_LOCK_KEYS[job],
    )


async def mark_interrupted_runs(*, conn: asyncpg.Connection, job: str) -> None:
    """Runs left 'running' by a process that died (called while holding the job's lock)."""
    await conn.execute(
        "UPDATE job_runs SET outcome = 'interrupted', finished_at = now(),"
        " detail = 'the process running it stopped' WHERE job = $1 AND outcome = 'running'",
        job,
    )


async def succeeded_since(*, conn: asyncpg.Connection, job: str, since: datetime) -> bool:
    return await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM job_runs WHERE job = $1 AND outcome = 'succeeded'"
        " AND started_at >= $2)",
        job,
        since,
    )


async def start_job_run(*, conn: asyncpg.Connection, job: str, trigger: str, worker: str) -> int:
    return await conn.fetchval(
        "INSERT INTO job_runs (job, trigger, worker) VALUES ($1, $2, $3) RETURNING id",
        job,
        trigger,
        worker,
    )


async def finish_job_run(
    *, conn: asyncpg.Connection, run_id: int, outcome: str, detail: str
) -> None:
    await conn.execute(
        "UPDATE job_runs SET outcome = $2, detail = $3, finished_at = now() WHERE id = $1",
        run_id,
        outcome,
        detail[:2000],
    )


async def last_job_runs(*, conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """The latest run of every job, and its latest successful run's time."""
    return await conn.fetch(
        """
        SELECT DISTINCT ON (job) job, id, trigger, started_at, finished_at, outcome, detail,
               worker, extract(epoch FROM finished_at - started_at) AS seconds,
               (SELECT max(started_at) FROM job_runs s
                WHERE s.job = r.job AND s.outcome = 'succeeded') AS last_success_at
        FROM job_runs r ORDER BY job, started_at DESC, id DESC
        """
    )


async def beat(
    *, conn: asyncpg.Connection, worker: str, model_version: str | None, started_at: datetime
) -> None:
    await conn.execute(
        """
        INSERT INTO worker_heartbeats (worker, model_version, started_at, seen_at)
        VALUES ($1, $2, $3, now())
        ON CONFLICT (worker) DO UPDATE SET model_version = $2, started_at = $3, seen_at = now()
        """,
        worker,
        model_version,
        started_at,
    )


async def live_workers(*, conn: asyncpg.Connection, since: datetime) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT worker, model_version, started_at, seen_at FROM worker_heartbeats"
        " WHERE seen_at >= $1 ORDER BY worker",
        since,
    )


async def forget_worker(*, conn: asyncpg.Connection, worker: str) -> None:
    await conn.execute("DELETE FROM worker_heartbeats WHERE worker = $1", worker)


async def refresh_activity_rollup(*, conn: asyncpg.Connection, since: datetime) -> int:
    """Recount the hourly buckets from `since` (the current hour is partial and recounted)."""
    status = await conn.execute(
        """
        INSERT INTO activity_hourly (bucket, event_type, events, users, products)
        SELECT date_trunc('hour', "timestamp"), event_type, count(*),
               count(DISTINCT user_id), count(DISTINCT product_id)
        FROM interaction_events
        WHERE "timestamp" >= date_trunc('hour', $1::timestamptz)
        GROUP BY 1, 2
        ON CONFLICT (bucket, event_type) DO UPDATE
        SET events = EXCLUDED.events, users = EXCLUDED.users, products = EXCLUDED.products
        """,
        since,
        timeout=BATCH_TIMEOUT,
    )
    return int(status.split()[-1])


async def tables_with_events_before(*, conn: asyncpg.Connection, cutoff: datetime) -> list[str]:
    """Per-user tables that may hold rows older than `cutoff`, found from the global log (which
    holds every event) so that no per-user table is scanned to find them."""
    rows = await conn.fetch(
        "SELECT DISTINCT t.table_name FROM interaction_events e"
        ' JOIN user_interaction_tables t USING (user_id) WHERE e."timestamp" < $1',
        cutoff,
        timeout=BATCH_TIMEOUT,
    )
    return [r["table_name"] for r in rows]


# The registry rows are locked in user order first, the order ingest_events locks them in (its
# callers sort the users by code point, as COLLATE "C" does): the two cannot deadlock.
_BUMP_HISTORY_STAMPS = """
UPDATE user_interaction_tables SET history_stamp = history_stamp + 1
WHERE user_id IN (
    SELECT user_id FROM user_interaction_tables WHERE table_name = ANY($1::text[])
    ORDER BY user_id COLLATE "C" FOR UPDATE
)
"""


async def bump_history_stamps(*, conn: asyncpg.Connection, table_names: list[str]) -> None:
    """Change the history stamps of these tables' users (their events changed)."""
    await conn.execute(_BUMP_HISTORY_STAMPS, table_names, timeout=BATCH_TIMEOUT)


async def trim_user_tables(
    *, conn: asyncpg.Connection, table_names: list[str], cutoff: datetime
) -> int:
    """Delete rows older than `cutoff` from these per-user tables, in one transaction, and
    change their users' history stamps (migration 0011)."""
    removed = 0
    async with conn.transaction():
        await conn.execute(_BUMP_HISTORY_STAMPS, table_names, timeout=BATCH_TIMEOUT)
        for table in table_names:
            status = await conn.execute(
                f'DELETE FROM {qualified_user_table(table)} WHERE "timestamp" < $1',  # noqa: S608
                cutoff,
                timeout=BATCH_TIMEOUT,
            )
            removed += int(status.split()[-1])
    return removed


async def trim_global_log(*, conn: asyncpg.Connection, cutoff: datetime) -> int:
    status = await conn.execute(
        'DELETE FROM interaction_events WHERE "timestamp" < $1', cutoff, timeout=BATCH_TIMEOUT
    )
    return int(status.split()[-1])


async def trim_activity_rollup(*, conn: asyncpg.Connection, cutoff: datetime) -> int:
    status = await conn.execute("DELETE FROM activity_hourly WHERE bucket < $1", cutoff)
    return int(status.split()[-1])


async def row_counts(*, conn: asyncpg.Connection) -> dict[str, int]:
    """Estimated sizes from the planner's statistics (exact counts of a 5M-row log take
    seconds), except the small tables."""
    estimates = await conn.fetch(
        "SELECT relname, reltuples::bigint AS estimate FROM pg_class"
        " WHERE relname IN ('products', 'interaction_events') AND relkind IN ('r', 'p')"
    )
    counts = {f"{r['relname']}_estimate": max(int(r["estimate"]), 0) for r in estimates}
    counts["users_with_tables"] = await conn.fetchval(
        "SELECT count(*) FROM user_interaction_tables"
    )
    counts["trending_products"] = await conn.fetchval("SELECT count(*) FROM trending_scores")
    counts["products"] = await conn.fetchval("SELECT count(*) FROM products")
    return counts
