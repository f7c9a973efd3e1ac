"""Export the global event log to Parquet, the input of `python -m ml.train --engine spark`.

    python -m ml.export_events --out events.parquet [--days 60]

Columns: user_id, event_type, product_id, query (strings, empty when absent), epoch (seconds,
float64), the same rows the local training reads from PostgreSQL (database/training.py). On a
cluster, copy the file to storage its executors read (HDFS, S3, a shared volume) and pass that
path to `--events`.
"""

import argparse
import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from config.settings import get_settings
from database.migrations import apply_migrations
from database.server import database_url
from database.training import fetch_events

EVENT_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("event_type", pa.string()),
        ("product_id", pa.string()),
        ("query", pa.string()),
        ("epoch", pa.float64()),
    ]
)


def write_events(events: pd.DataFrame, path: str | Path) -> None:
    table = pa.Table.from_pandas(
        events[EVENT_SCHEMA.names], schema=EVENT_SCHEMA, preserve_index=False
    )
    pq.write_table(table, str(path))


def read_events(path: str | Path, since: datetime) -> pd.DataFrame:
    """The events of an export (a path, or a URL pyarrow reads: s3://, hdfs://) since `since`,
    as database.training.fetch_events returns them."""
    table = pq.read_table(
        str(path), filters=[("epoch", ">=", since.timestamp())], schema=EVENT_SCHEMA
    )
    return table.to_pandas()


async def export_events(*, conn: asyncpg.Connection, since: datetime, path: Path) -> int:
    events = await fetch_events(conn=conn, since=since)
    await asyncio.to_thread(write_events, events, path)
    return len(events)


async def _main(path: Path, days: float) -> None:
    settings = get_settings()
    started = time.perf_counter()
    with database_url(settings.database_url, settings.pgdata_dir) as url:
        conn = await asyncpg.connect(url)
        try:
            await apply_migrations(conn)
            rows = await export_events(
                conn=conn, since=datetime.now(UTC) - timedelta(days=days), path=path
            )
        finally:
            await conn.close()
    print(f"exported {rows:,} events to {path} in {time.perf_counter() - started:.1f} s")


def main() -> None:
    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="Parquet file to write")
    parser.add_argument(
        "--days",
        type=float,
        default=max(settings.training_window_days, settings.history_days),
        help="events of the last N days (default: what a training reads)",
    )
    args = parser.parse_args()
    asyncio.run(_main(args.out, args.days))


if __name__ == "__main__":
    main()
