"""Event ingestion: check events against the catalog, then store them all or none.

Single events from concurrent requests are committed together (group commit): each worker's
`EventWriter` gathers the events that arrive while a write is in flight and stores them in the
next statement (services/grouped.py). A request is answered only after the statement holding its
events committed.
"""

import dataclasses
import hashlib
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg

from database.interactions import EventRow, store_events, stored_digests
from database.pool import connection
from database.products import canonical_product_ids
from schemas import InteractionIn, InteractionOut
from services import metrics
from services.catalog import Catalog
from services.grouped import StatementGroups

# At most this many events in one group statement: a longer statement would hold back the
# requests whose events it carries.
MAX_GROUP_EVENTS = 500


class EventIdConflictError(Exception):
    """Client event ids already stored for another event (a retry must repeat its payload)."""

    def __init__(self, event_ids: list[str]):
        super().__init__(f"{len(event_ids)} event id(s) reused for another event")
        self.event_ids = event_ids


class UnknownProductsError(Exception):
    """Some events name products that are not in the catalog."""

    def __init__(self, unknown: list[tuple[int, str]]):
        super().__init__(f"{len(unknown)} unknown product id(s)")
        self.unknown = unknown  # (position in the request, product_id)


def to_event_rows(
    events: list[InteractionIn], now: datetime, variant_of: Callable[[str], str | None]
) -> list[EventRow]:
    return [
        EventRow(
            user_id=event.user_id,
            event_type=event.event_type,
            product_id=event.product_id,
            query=event.query,
            timestamp=event.timestamp or now,
            event_id=event.event_id or uuid.uuid4().hex,
            client_event_id=event.event_id is not None,
            variant=variant_of(event.user_id),
        )
        for event in events
    ]


class EventWriter(StatementGroups[list[EventRow], list[EventRow]]):
    """Stores events for one worker, committing concurrent requests' events in one statement
    (services/grouped.py)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        max_group_events: int = MAX_GROUP_EVENTS,
        to_user_tables: bool = True,
    ):
        super().__init__(pool, max_group_events)
        self.to_user_tables = to_user_tables  # False: USER_EVENTS_SOURCE=global_log

    def size(self, rows: list[EventRow]) -> int:
        return len(rows)

    async def store(self, rows: list[EventRow]) -> list[EventRow]:
        """Store `rows` (distinct event ids); returns those stored now (the others were stored
        before: retries). DatabaseUnavailable when the database cannot be reached."""
        return await self.submit(rows)

    async def run_group(
        self, conn: asyncpg.Connection, requests: list[list[EventRow]]
    ) -> list[list[EventRow]]:
        # The same client event id from two requests in one group: only the first is sent;
        # the other is a retry of it.
        first: dict[str, EventRow] = {}
        for rows in requests:
            for row in rows:
                first.setdefault(row.event_id, row)
        stored = await store_events(
            conn=conn, events=list(first.values()), to_user_tables=self.to_user_tables
        )
        metrics.EVENT_GROUP_SIZE.observe(len(first))
        stored_now = {id(row) for row in stored}
        return [[row for row in rows if id(row) in stored_now] for rows in requests]


def known_products(
    catalog: Catalog | None, product_ids: list[str]
) -> tuple[dict[str, str], list[str]]:
    """The product each id stands for (itself, or the product an alias was merged into), from
    the catalog in memory, and the ids it does not know."""
    if catalog is None:
        return {}, product_ids
    known, missing = {}, []
    for product_id in product_ids:
        position = catalog.position_of.get(product_id)
        if position is None:
            missing.append(product_id)
        else:
            known[product_id] = catalog.ids[position]
    return known, missing


def payload_digest(row: EventRow, sent_timestamp: datetime | None) -> str:
    """What a retry must repeat: the event as the client sent it (the product as the catalog
    knows it; the timestamp only when the client gave one)."""
    sent = sent_timestamp.isoformat() if sent_timestamp is not None else None
    parts = [row.user_id, row.event_type, row.product_id, row.query, sent]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


async def _refuse_reused_ids(conn: asyncpg.Connection, rows: list[EventRow]) -> None:
    """EventIdConflictError naming the rows' event ids stored before with another payload."""
    stored = await stored_digests(conn=conn, event_ids=[row.event_id for row in rows])
    reused = [
        row.event_id
        for row in rows
        if stored.get(row.event_id) is not None and stored[row.event_id] != row.digest
    ]
    if reused:
        raise EventIdConflictError(reused)


async def ingest_events(
    *,
    pool: asyncpg.Pool,
    events: list[InteractionIn],
    variant_of: Callable[[str], str | None] = lambda user_id: None,
    catalog: Catalog | None = None,
    writer: EventWriter | None = None,
    to_user_tables: bool = True,
) -> list[InteractionOut]:
    """Validate product ids against the catalog and store every event, or none; each event is
    logged with the user's A/B variant (`variant_of`). A click on an alias (a listing merged
    into another product) is stored as a click on that product.

    Product ids are looked up in `catalog` (in memory) first; only ids it does not know (a
    product imported since it was loaded) are asked of the database. With a `writer`, the
    events go through its group commit (and its choice of tables); without one, in their own
    statement, in the users' tables too unless `to_user_tables` is False.

    Raises UnknownProductsError before anything is written, EventIdConflictError when a client
    event id was stored before for another event (a batch: before anything is written; a single
    event: nothing new was written), DatabaseUnavailable when the database cannot be reached
    (nothing stored: one statement).
    """
    rows = to_event_rows(events, now=datetime.now(UTC), variant_of=variant_of)
    clicked = sorted({row.product_id for row in rows if row.product_id})
    known, missing = known_products(catalog, clicked)
    if missing:
        async with connection(pool) as conn:
            known |= await canonical_product_ids(conn=conn, product_ids=missing)
    unknown = [
        (position, row.product_id)
        for position, row in enumerate(rows)
        if row.product_id and row.product_id not in known
    ]
    if unknown:
        raise UnknownProductsError(unknown)
    rows = [
        dataclasses.replace(
            row,
            product_id=known.get(row.product_id, row.product_id),
            digest=payload_digest(row, event.timestamp) if row.client_event_id else None,
        )
        if row.client_event_id or (row.product_id and known[row.product_id] != row.product_id)
        else row
        for row, event in zip(rows, events, strict=True)
    ]
    claimed = [row for row in rows if row.client_event_id]
    if len(rows) > 1 and claimed:  # a batch: refused whole, before any of it is stored
        async with connection(pool) as conn:
            await _refuse_reused_ids(conn, claimed)
    # An event_id repeated inside one request is a retry too: keep its first occurrence.
    first_of_id: dict[str, EventRow] = {}
    for row in rows:
        first_of_id.setdefault(row.event_id, row)
    distinct = list(first_of_id.values())
    if writer is not None:
        stored = await writer.store(distinct)
    else:
        async with connection(pool) as conn:
            stored = await store_events(conn=conn, events=distinct, to_user_tables=to_user_tables)
    for row in stored:
        metrics.EVENTS_INGESTED.labels(row.event_type).inc()
    stored_ids = {row.event_id for row in stored}
    retried = [row for row in claimed if row.event_id not in stored_ids]
    if retried:  # stored before: the same event again, or another under its id
        async with connection(pool) as conn:
            await _refuse_reused_ids(conn, retried)
    return [
        InteractionOut(
            event_id=row.event_id,
            user_id=row.user_id,
            event_type=row.event_type,
            product_id=row.product_id,
            query=row.query,
            timestamp=row.timestamp,
            duplicate=row.event_id not in stored_ids or first_of_id[row.event_id] is not row,
        )
        for row in rows
    ]
