"""SQL the offline training reads: the catalog and the global event log (never per-user tables)."""

import io
from datetime import datetime

import asyncpg
import pandas as pd
import pyarrow as pa

from database.products import PRODUCT_COLUMNS

_CATALOG = """
SELECT id, name, main_category, sub_category, image, link, ratings, no_of_ratings,
       discount_price, actual_price, discount_ratio
FROM products ORDER BY id
"""


async def _copied(conn: asyncpg.Connection, query: str) -> io.BytesIO:
    """The query's rows as CSV with a header, in memory. Written by a coroutine: given a file,
    asyncpg writes each chunk through the thread pool (hundreds of thread hops at 100k rows)."""
    buffer = io.BytesIO()

    async def write(chunk: bytes) -> None:
        buffer.write(chunk)

    await conn.copy_from_query(query, output=write, format="csv", header=True)
    buffer.seek(0)
    return buffer


async def fetch_catalog(*, conn: asyncpg.Connection, arrow_strings: bool = False) -> pd.DataFrame:
    """The whole catalog ordered by id, numeric columns as float (NaN when empty), an empty image
    or link as missing.

    Streamed with COPY and parsed by pandas' C reader: at 550k products, fetching records took
    several times longer than the query. With `arrow_strings`, the text columns are Arrow
    strings (one buffer per column instead of a Python object per value: the serving catalog's
    memory).
    """
    buffer = await _copied(conn, _CATALOG)
    text = pd.ArrowDtype(pa.string()) if arrow_strings else str
    frame = pd.read_csv(
        buffer,
        dtype={
            **{column: text for column in _TEXT_COLUMNS},
            **{column: "float64" for column in _NUMERIC_COLUMNS},
        },
        keep_default_na=False,
        na_values={column: [""] for column in ("image", "link", *_NUMERIC_COLUMNS)},
    )
    return frame[PRODUCT_COLUMNS]


_TEXT_COLUMNS = ("id", "name", "main_category", "sub_category", "image", "link")
_NUMERIC_COLUMNS = ("ratings", "no_of_ratings", "discount_price", "actual_price", "discount_ratio")


_EVENTS_SINCE = """
SELECT user_id, event_type, product_id, query, extract(epoch FROM "timestamp")::float8 AS epoch
FROM interaction_events
WHERE "timestamp" >= '{since}'::timestamptz
"""


async def fetch_events(*, conn: asyncpg.Connection, since: datetime) -> pd.DataFrame:
    """Clicks and searches since `since`, streamed with COPY (millions of rows)."""
    # `since` is a datetime we produced, rendered in ISO format: no user text reaches this SQL.
    buffer = await _copied(conn, _EVENTS_SINCE.format(since=since.isoformat()))
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


async def fetch_history_stamps(*, conn: asyncpg.Connection) -> dict[str, int]:
    """Each user's history stamp (changed by every write to the user's table). Read in the
    transaction that reads the log, they are the stamps of the histories training sees."""
    rows = await conn.fetch("SELECT user_id, history_stamp FROM user_interaction_tables")
    return {r["user_id"]: r["history_stamp"] for r in rows}
