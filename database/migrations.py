"""Ordered, idempotent schema migrations, recorded in schema_migrations.

Each file in database/migrations/NNNN_name.sql runs once, in its own transaction, in name order.
An advisory lock makes concurrent starters (several uvicorn workers) wait instead of racing.
"""

from pathlib import Path

import asyncpg

from database.identifiers import USER_EVENTS_SCHEMA, quote_identifier

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
MIGRATION_LOCK_KEY = 7_311_001  # arbitrary, unique to this application
# Per-user tables a migration moves per transaction: each takes a few locks, and the shared lock
# table of a default server holds 6,400 (max_locks_per_transaction 64 x max_connections 100).
TABLES_MOVED_PER_TRANSACTION = 200
_NEXT_TO_MOVE = """
DELETE FROM user_tables_to_move WHERE table_name IN (
    SELECT table_name FROM user_tables_to_move LIMIT $1 FOR UPDATE SKIP LOCKED
) RETURNING table_name
"""


CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


def migration_files() -> list[Path]:
    return sorted(MIGRATIONS_DIR.glob("*.sql"))


async def apply_migrations(conn: asyncpg.Connection) -> list[str]:
    """Apply pending migrations; return the versions applied now."""
    applied_now = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(CREATE_MIGRATIONS_TABLE)
        done = {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}
        for path in migration_files():
            if path.stem in done:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text())
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", path.stem)
            applied_now.append(path.stem)
        # Per-user tables a migration left to move, in batches (each table takes locks).
        if await conn.fetchval("SELECT to_regclass('user_tables_to_move') IS NOT NULL"):
            await move_user_tables(conn)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    return applied_now


async def move_user_tables(conn: asyncpg.Connection) -> int:
    """Move the tables a migration left in public (user_tables_to_move) into their schema,
    a batch per transaction; returns how many were moved."""
    moved = 0
    while True:
        async with conn.transaction():
            rows = await conn.fetch(_NEXT_TO_MOVE, TABLES_MOVED_PER_TRANSACTION)
            names = [r["table_name"] for r in rows]
            for name in names:
                await conn.execute(
                    f"ALTER TABLE IF EXISTS public.{quote_identifier(name)}"
                    f" SET SCHEMA {quote_identifier(USER_EVENTS_SCHEMA)}"
                )
        if not names:
            return moved
        moved += len(names)
