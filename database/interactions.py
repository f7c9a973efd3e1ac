"""SQL for interaction events: per-user tables plus the global log, written in one transaction."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from database.identifiers import quote_identifier, user_index_name, user_table, user_table_name


@dataclass(frozen=True, slots=True)
class EventRow:
    user_id: str
    event_type: str
    product_id: str | None
    query: str | None
    timestamp: datetime
    event_id: str
    client_event_id: bool  # the client sent the id, so a retry must be recognised
    variant: str | None = None  # the user's A/B ranking variant when the event arrived


CREATE_USER_TABLE = """
CREATE TABLE {table} (
    event_type  text        NOT NULL CHECK (event_type IN ('product_click', 'search_query')),
    product_id  text,
    query       text,
    "timestamp" timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX {index} ON {table} ("timestamp" DESC);
"""
_LOCK_USER = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"
_USER_TABLE_EXISTS = "SELECT 1 FROM user_interaction_tables WHERE user_id = $1"
REGISTER_USER_TABLE = "INSERT INTO user_interaction_tables (user_id, table_name) VALUES ($1, $2)"
_CLAIM_EVENT_IDS = """
INSERT INTO ingested_event_ids (event_id, user_id)
SELECT * FROM unnest($1::text[], $2::text[])
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id
"""
_APPEND_GLOBAL_LOG = """
INSERT INTO interaction_events
    (user_id, event_type, product_id, query, "timestamp", event_id, variant)
SELECT * FROM unnest(
    $1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[], $7::text[]
)
"""
_APPEND_USER_TABLE = """
INSERT INTO {table} (event_type, product_id, query, "timestamp")
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
"""
_APPEND_USER_TABLES = "SELECT append_user_events($1, $2, $3, $4, $5, $6, $7)"
_RECENT_USER_EVENTS = """
SELECT event_type, product_id, query, "timestamp" FROM {table}
WHERE "timestamp" >= $1 ORDER BY "timestamp" DESC LIMIT $2
"""


async def ensure_user_table(*, conn: asyncpg.Connection, user_id: str) -> bool:
    """Create the user's interaction table unless it exists. Returns True if created now.

    Safe under concurrency: an advisory lock per user serialises creators, and the registry row
    is written in the same transaction as the table.
    """
    async with conn.transaction():
        await conn.execute(_LOCK_USER, user_id)
        if await conn.fetchval(_USER_TABLE_EXISTS, user_id):
            return False
        table = user_table(user_id)
        index = quote_identifier(user_index_name(user_id))
        await conn.execute(CREATE_USER_TABLE.format(table=table, index=index))
        await conn.execute(REGISTER_USER_TABLE, user_id, user_table_name(user_id))
        return True


async def _append(conn: asyncpg.Connection, events: list[EventRow]) -> list[EventRow]:
    """One transaction: claim client event ids, append to the log and to each user's table.

    Returns the events stored now (a claimed-before event id means a retry: skipped).
    """
    async with conn.transaction():
        claimed = [e for e in events if e.client_event_id]
        if claimed:
            fresh = {
                row["event_id"]
                for row in await conn.fetch(
                    _CLAIM_EVENT_IDS, [e.event_id for e in claimed], [e.user_id for e in claimed]
                )
            }
            events = [e for e in events if not e.client_event_id or e.event_id in fresh]
        if not events:
            return []
        await conn.execute(
            _APPEND_GLOBAL_LOG,
            [e.user_id for e in events],
            [e.event_type for e in events],
            [e.product_id for e in events],
            [e.query for e in events],
            [e.timestamp for e in events],
            [e.event_id for e in events],
            [e.variant for e in events],
        )
        by_user: dict[str, list[EventRow]] = defaultdict(list)
        for event in events:
            by_user[event.user_id].append(event)
        if len(by_user) == 1:
            [(user_id, user_events)] = by_user.items()
            await conn.execute(
                _APPEND_USER_TABLE.format(table=user_table(user_id)),
                [e.event_type for e in user_events],
                [e.product_id for e in user_events],
                [e.query for e in user_events],
                [e.timestamp for e in user_events],
            )
        else:
            # Many users: one server-side loop instead of a round trip (and a statement to
            # prepare) per user table.
            await conn.execute(_APPEND_USER_TABLES, *_user_slices(by_user))
    return events


def _user_slices(by_user: dict[str, list[EventRow]]) -> tuple[list, ...]:
    """Rows grouped by user table, with each table's 1-based [start, end] slice."""
    tables, starts, ends, rows = [], [], [], []
    for user_id, user_events in by_user.items():
        tables.append(user_table_name(user_id))
        starts.append(len(rows) + 1)
        rows.extend(user_events)
        ends.append(len(rows))
    return (
        tables,
        starts,
        ends,
        [e.event_type for e in rows],
        [e.product_id for e in rows],
        [e.query for e in rows],
        [e.timestamp for e in rows],
    )


async def store_events(*, conn: asyncpg.Connection, events: list[EventRow]) -> list[EventRow]:
    """Store validated events atomically; returns those stored now (retries are skipped).

    The common case (tables exist) costs one transaction. A user's first event fails on the
    missing table, which is then created and the whole transaction retried.
    """
    try:
        return await _append(conn, events)
    except asyncpg.UndefinedTableError:
        for user_id in sorted({e.user_id for e in events}):
            await ensure_user_table(conn=conn, user_id=user_id)
        return await _append(conn, events)


async def recent_user_events(
    *, conn: asyncpg.Connection, user_id: str, since: datetime, limit: int = 500
) -> list[asyncpg.Record]:
    """The user's events since `since`, newest first; [] for a user with no table yet."""
    try:
        return await conn.fetch(_RECENT_USER_EVENTS.format(table=user_table(user_id)), since, limit)
    except asyncpg.UndefinedTableError:
        return []
