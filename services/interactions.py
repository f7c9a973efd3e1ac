"""Event ingestion: check events against the catalog, then store them all or none."""

import dataclasses
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg

from database.interactions import EventRow, store_events
from database.pool import connection
from database.products import canonical_product_ids
from schemas import InteractionIn, InteractionOut
from services import metrics


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


async def ingest_events(
    *,
    pool: asyncpg.Pool,
    events: list[InteractionIn],
    variant_of: Callable[[str], str | None] = lambda user_id: None,
) -> list[InteractionOut]:
    """Validate product ids against the catalog and store every event, or none; each event is
    logged with the user's A/B variant (`variant_of`). A click on an alias (a listing merged
    into another product) is stored as a click on that product.

    Raises UnknownProductsError before anything is written, DatabaseUnavailable when the
    database cannot be reached (nothing stored: one transaction).
    """
    rows = to_event_rows(events, now=datetime.now(UTC), variant_of=variant_of)
    clicked = sorted({row.product_id for row in rows if row.product_id})
    async with connection(pool) as conn:
        known = await canonical_product_ids(conn=conn, product_ids=clicked) if clicked else {}
        unknown = [
            (position, row.product_id)
            for position, row in enumerate(rows)
            if row.product_id and row.product_id not in known
        ]
        if unknown:
            raise UnknownProductsError(unknown)
        rows = [
            dataclasses.replace(row, product_id=known[row.product_id])
            if row.product_id and known[row.product_id] != row.product_id
            else row
            for row in rows
        ]
        # An event_id repeated inside one request is a retry too: keep its first occurrence.
        first_of_id: dict[str, EventRow] = {}
        for row in rows:
            first_of_id.setdefault(row.event_id, row)
        stored = await store_events(conn=conn, events=list(first_of_id.values()))
    for row in stored:
        metrics.EVENTS_INGESTED.labels(row.event_type).inc()
    stored_ids = {row.event_id for row in stored}
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
