"""The per-user tables as a projection of the global log: moved into their schema, rebuilt from
the log (after a restore, which leaves them out), and compared with it.

    python -m database.user_tables rebuild [--batch 500]
    python -m database.user_tables compare

Both honour DATABASE_URL (else the embedded server under data/pgdata)."""

import argparse
import asyncio
from dataclasses import dataclass

import asyncpg
from tqdm import tqdm

from database.identifiers import (
    USER_EVENTS_SCHEMA,
    qualified_user_table,
    quote_identifier,
    user_index_name,
    user_table_name,
)

# Tables made per transaction: each takes a few locks of the server's shared lock table
# (TABLES_MOVED_PER_TRANSACTION in database/migrations.py says how many it holds).
TABLES_PER_TRANSACTION = 200

# Every user with events in the log or a registry row (a user whose events retention removed
# keeps an empty table).
_USERS = """
SELECT user_id FROM (
    SELECT DISTINCT user_id FROM interaction_events
    UNION SELECT user_id FROM user_interaction_tables
) AS u ORDER BY user_id COLLATE "C"
"""
# Per user: rows and an order-independent sum of a hash of every column.
_ROW_HASH = (
    "hashtextextended(concat_ws('|', event_type, product_id, query,"
    ' extract(epoch FROM "timestamp")::text), 0)'
)
_LOG_DIGESTS = (
    f"SELECT user_id, count(*) AS rows, sum({_ROW_HASH})::numeric AS digest"  # noqa: S608
    " FROM interaction_events GROUP BY user_id"
)


# Every column of the log, for a backup's checksum.
_LOG_ROW_HASH = (
    "hashtextextended(concat_ws('|', user_id, event_type, product_id, query,"
    ' extract(epoch FROM "timestamp")::text, event_id, extract(epoch FROM ingested_at)::text,'
    " variant), 0)"
)


async def log_digest(*, conn: asyncpg.Connection) -> dict:
    """The log's row count and an order-independent checksum over every column."""
    row = await conn.fetchrow(
        f"SELECT count(*) AS events, coalesce(sum({_LOG_ROW_HASH}), 0)::numeric AS digest"  # noqa: S608
        " FROM interaction_events"
    )
    return {"events": row["events"], "digest": str(row["digest"])}


@dataclass
class Rebuilt:
    tables: int  # made now
    rows: int  # written to them
    existing: int  # found in place (a rebuild resumed), left as they were


async def rebuild_user_tables(
    *, pool: asyncpg.Pool, concurrency: int = 2, progress: bool = False
) -> Rebuilt:
    """Make every missing per-user table from the log, TABLES_PER_TRANSACTION users per
    transaction on `concurrency` connections. A table already there is left alone, so an
    interrupted rebuild resumes."""
    async with pool.acquire() as conn:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(USER_EVENTS_SCHEMA)}")
        users = [r["user_id"] for r in await conn.fetch(_USERS)]
    batches = [
        users[start : start + TABLES_PER_TRANSACTION]
        for start in range(0, len(users), TABLES_PER_TRANSACTION)
    ]
    result = Rebuilt(0, 0, 0)
    with tqdm(total=len(users), desc="user tables", unit="user", disable=not progress) as bar:

        async def shard(index: int) -> None:
            async with pool.acquire() as conn:
                for batch in batches[index::concurrency]:
                    async with conn.transaction():
                        for user_id in batch:
                            rows = await conn.fetchval(
                                "SELECT rebuild_user_table($1, $2, $3)",
                                user_id,
                                user_table_name(user_id),
                                user_index_name(user_id),
                            )
                            if rows < 0:
                                result.existing += 1
                            else:
                                result.tables += 1
                                result.rows += rows
                    bar.update(len(batch))

        await asyncio.gather(*(shard(i) for i in range(concurrency)))
    return result


async def differing_users(*, conn: asyncpg.Connection) -> list[str]:
    """Users whose table does not hold exactly their events of the log (same rows, every
    column), or who have events and no table. Reads the tables one at a time."""
    log = {r["user_id"]: (r["rows"], r["digest"]) for r in await conn.fetch(_LOG_DIGESTS)}
    tables = {
        r["user_id"]: r["table_name"]
        for r in await conn.fetch("SELECT user_id, table_name FROM user_interaction_tables")
    }
    differing = sorted(set(log) - set(tables))
    for user_id, table in sorted(tables.items()):
        if await conn.fetchval("SELECT to_regclass($1)", qualified_user_table(table)) is None:
            differing.append(user_id)
            continue
        found = await conn.fetchrow(
            f"SELECT count(*) AS rows, coalesce(sum({_ROW_HASH}), 0)::numeric AS digest"  # noqa: S608
            f" FROM {qualified_user_table(table)}"
        )
        if (found["rows"], found["digest"]) != log.get(user_id, (0, 0)):
            differing.append(user_id)
    return differing


async def _main(args: argparse.Namespace) -> None:
    from config.settings import get_settings
    from database.migrations import apply_migrations
    from database.pool import create_pool
    from database.server import database_url

    settings = get_settings()
    with database_url(settings.database_url, settings.pgdata_dir) as url:
        pool = await create_pool(url, min_size=1, max_size=3)
        try:
            async with pool.acquire() as conn:
                await apply_migrations(conn)
            if args.command == "rebuild":
                rebuilt = await rebuild_user_tables(pool=pool, progress=not args.no_progress)
                print(
                    f"rebuilt {rebuilt.tables:,} user tables ({rebuilt.rows:,} events);"
                    f" {rebuilt.existing:,} were in place"
                )
                return
            async with pool.acquire() as conn:
                differing = await differing_users(conn=conn)
            print(f"{len(differing):,} users whose table differs from the log")
            if differing:
                print("e.g. " + ", ".join(differing[:10]))
                raise SystemExit(1)
        finally:
            await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("rebuild", "compare"))
    parser.add_argument("--no-progress", action="store_true")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
