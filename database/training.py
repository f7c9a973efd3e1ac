"""SQL the offline training reads: the catalog and the global event log (never per-user tables)."""

import io
from datetime import datetime

import asyncpg
import pandas as pd

from database.products import PRODUCT_COLUMNS

_CATALOG = """
SELECT id, name, main_category, sub_category, image, link, ratings, no_of_ratings,
       discount_price, actual_price, discount_ratio
FROM products ORDER BY id
"""


async def fetch_catalog(*, conn: asyncpg.Connection) -> pd.DataFrame:
    """The whole catalog ordered by id, numeric columns as float (NaN when empty)."""
    rows = await conn.fetch(_CATALOG)
    frame = pd.DataFrame([dict(r) for r in rows], columns=PRODUCT_COLUMNS)
    for column in ("ratings", "no_of_ratings", "discount_ratio", "discount_price", "actual_price"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    return frame


_EVENTS_SINCE = """
SELECT user_id, event_type, product_id, query, extract(epoch FROM "timestamp")::float8 AS epoch
FROM interaction_events
WHERE "timestamp" >= '{since}'::timestamptz
"""


async def fetch_events(*, conn: asyncpg.Connection, since: datetime) -> pd.DataFrame:
    """Clicks and searches since `since`, streamed with COPY (millions of rows)."""
    buffer = io.BytesIO()
    # `since` is a datetime we produced, rendered in ISO format: no user text reaches this SQL.
    await conn.copy_from_query(
        _EVENTS_SINCE.format(since=since.isoformat()), output=buffer, format="csv", header=True
    )
    buffer.seek(0)
    return pd.read_csv(
        buffer,
        dtype={
            "user_id": str,
            "event_type": str,
            "product_id": str,
            "query": str,
            "epoch": "float64",
        },
        keep_default_na=False,
    )
