"""SQL for interaction events: per-user tables plus the global log, written in one transaction."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from database.identifiers import user_index_name, user_table_name


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
    digest: str | None = None  # of the payload, kept with a client event id (migration 0014)


CREATE_USER_TABLE = "SELECT create_user_table($1, $2, $3)"
# Every write to a user's table changes the user's history stamp (migration 0011).
BUMP_HISTORY_STAMP = (
    "UPDATE user_interaction_tables SET history_stamp = history_stamp + 1 WHERE user_id = $1"
)
# The last argument: whether the users' tables are written (False: USER_EVENTS_SOURCE=global_log,
# the log and the users' registry only; migration 0016).
_INGEST_EVENTS = "SELECT ingest_events($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
_STORED_DIGESTS = (
    "SELECT event_id, payload_digest FROM ingested_event_ids WHERE event_id = ANY($1::text[])"
)
# The most events a request reads of a user's table (newest first): training prepares home
# rankings from the same number (ml/prepare_home.py).
HISTORY_LIMIT = 500
# One statement text for every group of users (migrations 0012, 0013): prepared once per
# connection.
_RECENT_USERS_EVENTS = "SELECT * FROM recent_users_events_or_rankings($1, $2, $3, $4, $5, $6)"
_STORE_HOME_RANKINGS = "SELECT store_home_rankings($1, $2, $3, $4, $5)"


@dataclass(frozen=True, slots=True)
class HistoryRead:
    """One request's read of a user's recent events."""

    user_id: str
    since: datetime  # events at or after this time
    # When the user's history stamp is still this one, the table is not read (migration 0011).
    unless_stamp: int | None = None
    # A home ranking some worker computed with this model version for the user's current
    # history answers instead of the events, when one is stored (migration 0013).
    ranking_version: str | None = None


@dataclass(frozen=True, slots=True)
class ReadHistory:
    """What a HistoryRead found: the events, or what stands for them."""

    # Newest first ([] for a user without a table); None when they were not read (the stamp
    # held, or a stored ranking answered).
    events: list[dict] | None
    stamp: int | None = None  # the user's history stamp in the read's snapshot, with events
    ranking: bytes | None = None  # the stored ranking for this stamp (ranking_version's)


@dataclass(frozen=True, slots=True)
class ComputedRanking:
    """A home ranking computed for a user's history, to share with the other workers."""

    user_id: str
    model_version: str
    stamp: int  # the history stamp of the read it ranked
    oldest_event: datetime  # the oldest event of that history
    ranking: bytes


async def ensure_user_table(*, conn: asyncpg.Connection, user_id: str) -> bool:
    """Create the user's interaction table unless it exists (safe under concurrency: see
    create_user_table in migration 0008). Returns True if created now."""
    async with conn.transaction():
        return await conn.fetchval(
            CREATE_USER_TABLE, user_id, user_table_name(user_id), user_index_name(user_id)
        )


async def store_events(
    *, conn: asyncpg.Connection, events: list[EventRow], to_user_tables: bool = True
) -> list[EventRow]:
    """Store validated events atomically, in one statement (one round trip, one commit): in the
    log and, `to_user_tables`, in the users' tables (created on their first event). Returns
    those stored now: an event whose client event id was stored before is a retry, skipped.
    Each event id must appear once."""
    if not events:
        return []
    by_user: dict[str, list[EventRow]] = defaultdict(list)
    for event in events:
        by_user[event.user_id].append(event)
    users, starts, ends, rows = [], [], [], []
    # Users in one order everywhere: two statements creating the same users' tables take their
    # locks in the same order, so they cannot deadlock.
    for user_id in sorted(by_user):
        users.append(user_id)
        starts.append(len(rows) + 1)
        rows.extend(by_user[user_id])
        ends.append(len(rows))
    stored = await conn.fetch(
        _INGEST_EVENTS,
        users,
        [user_table_name(u) for u in users],
        [user_index_name(u) for u in users],
        starts,
        ends,
        [e.event_type for e in rows],
        [e.product_id for e in rows],
        [e.query for e in rows],
        [e.timestamp for e in rows],
        [e.event_id for e in rows],
        [e.client_event_id for e in rows],
        [e.variant for e in rows],
        [e.digest for e in rows],
        to_user_tables,
    )
    stored_ids = {row[0] for row in stored}
    return [e for e in events if e.event_id in stored_ids]


async def stored_digests(
    *, conn: asyncpg.Connection, event_ids: list[str]
) -> dict[str, str | None]:
    """The payload digest stored with each of `event_ids` that was stored (None: stored before
    digests were kept)."""
    return dict(await conn.fetch(_STORED_DIGESTS, event_ids))


async def recent_user_events(
    *,
    conn: asyncpg.Connection,
    user_id: str,
    since: datetime,
    limit: int = HISTORY_LIMIT,
    unless_stamp: int | None = None,
    from_log: bool = False,
) -> list[dict] | None:
    """The user's events since `since`, newest first; [] for a user with no table yet. With
    `unless_stamp`: None, without reading the table, when the user's history stamp is still
    that one (no event added to or removed from the table since: migration 0011)."""
    [read] = await recent_users_events(
        conn=conn,
        reads=[HistoryRead(user_id, since, unless_stamp)],
        limit=limit,
        from_log=from_log,
    )
    return read.events


async def recent_users_events(
    *,
    conn: asyncpg.Connection,
    reads: list[HistoryRead],
    limit: int = HISTORY_LIMIT,
    from_log: bool = False,
) -> list[ReadHistory]:
    """What each read finds (its events as `recent_user_events` answers them, or a stored
    ranking), in one statement; the events from the users' tables, or `from_log`. A user
    registered but whose table was dropped by hand fails the statement (UndefinedTableError),
    unless the read is the only one: then it has no events."""
    try:
        rows = await conn.fetch(
            _RECENT_USERS_EVENTS,
            [read.user_id for read in reads],
            [read.since for read in reads],
            limit,
            [read.unless_stamp for read in reads],
            [read.ranking_version for read in reads],
            from_log,
        )
    except asyncpg.UndefinedTableError:
        if len(reads) == 1:
            return [ReadHistory([])]
        raise
    found: list[ReadHistory] = [ReadHistory([]) for _ in reads]
    for request, event_type, product_id, query, timestamp, stamp, ranking in rows:
        if event_type is not None:
            if not found[request - 1].events:
                found[request - 1] = ReadHistory([], stamp)
            found[request - 1].events.append(
                {
                    "event_type": event_type,
                    "product_id": product_id,
                    "query": query,
                    "timestamp": timestamp,
                }
            )
        elif ranking is not None:
            found[request - 1] = ReadHistory(None, stamp, ranking)
        else:  # the stamp held: the table was not read
            found[request - 1] = ReadHistory(None)
    return found


async def store_home_rankings(*, conn: asyncpg.Connection, rankings: list[ComputedRanking]) -> None:
    """Store rankings computed at request time, for any worker's next read of the same
    history; an older stamp's never replaces a newer one's (migration 0013)."""
    await conn.execute(
        _STORE_HOME_RANKINGS,
        [r.user_id for r in rankings],
        [r.model_version for r in rankings],
        [r.stamp for r in rankings],
        [r.oldest_event for r in rankings],
        [r.ranking for r in rankings],
    )


async def forget_home_rankings(*, conn: asyncpg.Connection, keep_version: str) -> int:
    """Delete the stored home rankings of every model version but `keep_version` (no request
    of the served version reads them); returns how many."""
    done = await conn.execute(
        "DELETE FROM computed_home_rankings WHERE model_version <> $1", keep_version
    )
    return int(done.split()[-1])
