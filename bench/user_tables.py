"""What one table per user costs PostgreSQL as users grow.

    python -m bench.user_tables --users 10000 100000 1000000 [--database-url URL]
                                [--vacuum-limit-s S] [--resume DATABASE]

In a new database (on DATABASE_URL's server, default the embedded one) with the service's
migrations, users are added in steps up to each count, each with 3 events in their own table and
the global log as the service writes them (database.simulation.write_user_tables). At each count:

- first event of a new user (its table created in the same statement, as POST /interactions
  does it): p50 / p95 over 200 new users, one at a time;
- a returning user's history read on a new connection (a backend's first touch of one of the
  tables, as after a worker start) and on a warm one;
- the service's start-up on the database side: its pool opened (DB_POOL_MIN_SIZE connections)
  and the migrations checked, as main.py's lifespan does before loading the catalog;
- the catalog: pg_class rows, pg_class + pg_attribute size, database size;
- VACUUM ANALYZE of the whole database (the work autovacuum spreads over time); with
  --vacuum-limit-s it is cancelled after S seconds and the tables it finished give the rate;
- pg_dump (custom format, to a temporary file) duration, when pg_dump is on PATH.

The database is dropped at the end. Each figure is printed as it is taken. --resume continues
in the database of an interrupted run (still there when the process was killed): its users are
kept and counted.
"""

import argparse
import asyncio
import shutil
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import numpy as np
import pandas as pd

from config.settings import get_settings
from database.interactions import EventRow, recent_user_events, store_events
from database.migrations import apply_migrations
from database.pool import create_pool
from database.server import database_url
from database.simulation import copy_events_to_log, write_user_tables

EVENTS_PER_USER = 3
CHUNK = 50_000  # users added per step
NEW_USERS_TIMED = 200


def _events(first: int, last: int, now: datetime) -> pd.DataFrame:
    users = np.repeat([f"bench_{i}" for i in range(first, last)], EVENTS_PER_USER)
    return pd.DataFrame(
        {
            "user_id": users,
            "event_type": "product_click",
            "product_id": "P0000001",
            "query": None,
            "timestamp": pd.Timestamp(now - timedelta(hours=1)),
            "event_id": [str(uuid.uuid4()) for _ in range(len(users))],
        }
    )


def _percentiles(samples: list[float]) -> str:
    p50, p95 = np.percentile(np.array(samples) * 1000, [50, 95])
    return f"{p50:.1f} / {p95:.1f}"


def _taken(result: dict, name: str, value) -> None:
    result[name] = value
    print(f"  {name}: {value}", flush=True)


async def _vacuum(conn: asyncpg.Connection, limit_s: float | None) -> str:
    """VACUUM ANALYZE's duration, or (past the limit) how far it got: tables finished per
    second and the whole database's time at that rate."""
    started_at = await conn.fetchval("SELECT clock_timestamp()")
    started = time.perf_counter()
    try:
        if limit_s is not None:
            await conn.execute(f"SET statement_timeout = {int(limit_s * 1000)}")
        await conn.execute("VACUUM ANALYZE", timeout=3 * 3600)
        return f"{time.perf_counter() - started:.1f}"
    except asyncpg.QueryCanceledError:
        seconds = time.perf_counter() - started
        done, tables = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE last_vacuum >= $1), count(*) FROM pg_stat_user_tables",
            started_at,
        )
        return (
            f"stopped at {seconds:.0f} s: {done:,} of {tables:,} tables"
            f" ({done / seconds:.0f}/s, ~{tables / max(done, 1) * seconds:.0f} s for all)"
        )
    finally:
        await conn.execute("RESET statement_timeout")


async def _measure(
    url: str, conn: asyncpg.Connection, users: int, round_: int, vacuum_limit_s: float | None
) -> dict:
    result = {"users": users}
    print(f"at {users:,} users:", flush=True)
    now = datetime.now(UTC)
    run = uuid.uuid4().hex[:6]  # new users of this run, also when it resumes another's database
    first_events = []
    for i in range(NEW_USERS_TIMED):
        event = EventRow(
            f"new_{run}_{round_}_{i}",
            "product_click",
            "P0000001",
            None,
            now,
            str(uuid.uuid4()),
            False,
        )
        started = time.perf_counter()
        await store_events(conn=conn, events=[event])
        first_events.append(time.perf_counter() - started)
    _taken(result, "first_event_ms", _percentiles(first_events))
    cold, warm = [], []
    since = now - timedelta(days=30)
    for i in np.linspace(0, users - 1, 20).astype(int).tolist():
        started = time.perf_counter()
        fresh = await asyncpg.connect(url)
        await recent_user_events(conn=fresh, user_id=f"bench_{i}", since=since)
        cold.append(time.perf_counter() - started)
        await fresh.close()
        started = time.perf_counter()
        await recent_user_events(conn=conn, user_id=f"bench_{i}", since=since)
        warm.append(time.perf_counter() - started)
    _taken(result, "history_new_connection_ms", _percentiles(cold))
    _taken(result, "history_ms", _percentiles(warm))
    settings = get_settings()
    start_ups = []
    for _ in range(5):
        started = time.perf_counter()
        pool = await create_pool(
            url, min_size=settings.db_pool_min_size, max_size=settings.db_pool_max_size
        )
        async with pool.acquire() as pooled:
            await apply_migrations(pooled)
        start_ups.append(time.perf_counter() - started)
        await pool.close()
    _taken(result, "start_up_database_ms", _percentiles(start_ups))
    _taken(result, "pg_class_rows", await conn.fetchval("SELECT count(*) FROM pg_class"))
    catalog_mb = await conn.fetchval(
        "SELECT (pg_total_relation_size('pg_class') + pg_total_relation_size('pg_attribute'))"
        " / 1048576.0"
    )
    _taken(result, "catalog_mb", round(float(catalog_mb)))
    database_mb = await conn.fetchval("SELECT pg_database_size(current_database()) / 1048576.0")
    _taken(result, "database_mb", round(float(database_mb)))
    _taken(result, "vacuum_analyze_s", await _vacuum(conn, vacuum_limit_s))
    dump = None
    if shutil.which("pg_dump"):
        started = time.perf_counter()
        with tempfile.NamedTemporaryFile(suffix=".dump") as dump_file:
            dumping = await asyncio.create_subprocess_exec(
                "pg_dump",
                "-Fc",
                "--no-sync",
                "-f",
                dump_file.name,
                url,
                stderr=asyncio.subprocess.PIPE,
            )
            _, errors = await dumping.communicate()
        # pg_dump locks every table in one transaction: past the server's lock table
        # (max_locks_per_transaction x connections) it fails, which is a result too.
        dump = (
            f"{time.perf_counter() - started:.1f}"
            if dumping.returncode == 0
            else "fails: " + errors.decode().splitlines()[0].removeprefix("pg_dump: error: ")
        )
    _taken(result, "pg_dump_s", dump)
    return result


async def _run(
    server_url: str, counts: list[int], vacuum_limit_s: float | None, resume: str | None
) -> list[dict]:
    name = resume or f"user_tables_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_url)
    # The server settings that move these figures, printed with them.
    for setting in ("server_version", "autovacuum", "shared_buffers", "max_locks_per_transaction"):
        print(setting, await admin.fetchval(f"SHOW {setting}"), flush=True)
    if resume is None:
        await admin.execute(f'CREATE DATABASE "{name}"')
    print("database", name, flush=True)
    url = server_url.rsplit("/", 1)[0] + f"/{name}"
    results = []
    try:
        conn = await asyncpg.connect(url)
        await apply_migrations(conn)
        pool = await asyncpg.create_pool(url, min_size=2, max_size=2)
        existing = {
            r["user_id"]
            for r in await conn.fetch(
                "SELECT user_id FROM user_interaction_tables WHERE user_id LIKE 'bench%'"
            )
        }
        # A killed run stops inside a chunk: redo that chunk, without the users it wrote.
        have = len(existing) // CHUNK * CHUNK
        for round_, target in enumerate(c for c in sorted(counts) if c > have):
            started = time.perf_counter()
            created = 0
            for first in range(have, target, CHUNK):
                events = _events(first, min(first + CHUNK, target), datetime.now(UTC))
                events = events[~events["user_id"].isin(existing)]
                await copy_events_to_log(conn=conn, events=events)
                created += await write_user_tables(pool=pool, events=events)
            have = target
            seconds = time.perf_counter() - started
            result = await _measure(url, conn, target, round_, vacuum_limit_s)
            result["tables_per_s"] = round(created / seconds)
            print(result, flush=True)
            results.append(result)
        await pool.close()
        await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--database-url", help="a server to create the database on")
    parser.add_argument("--vacuum-limit-s", type=float, help="cancel VACUUM ANALYZE after S s")
    parser.add_argument("--resume", metavar="DATABASE", help="an interrupted run's database")
    args = parser.parse_args()
    settings = get_settings()
    with database_url(args.database_url or settings.database_url, Path(settings.pgdata_dir)) as url:
        results = asyncio.run(_run(url, args.users, args.vacuum_limit_s, args.resume))
    print(
        "\n| users | tables/s while adding | first event p50/p95 ms | history read, new"
        " connection p50/p95 ms | history read p50/p95 ms | service start-up, database"
        " p50/p95 ms | pg_class rows | pg_class +"
        " pg_attribute MB | database MB | VACUUM ANALYZE s | pg_dump s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['users']:,} | {r['tables_per_s']} | {r['first_event_ms']} "
            f"| {r['history_new_connection_ms']} | {r['history_ms']} "
            f"| {r['start_up_database_ms']} | {r['pg_class_rows']:,} "
            f"| {r['catalog_mb']:,} | {r['database_mb']:,} | {r['vacuum_analyze_s']} "
            f"| {r['pg_dump_s']} |"
        )


if __name__ == "__main__":
    main()
