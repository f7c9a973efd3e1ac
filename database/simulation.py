"""Bulk writes of simulated events: COPY into the global log, and each user's own table created
and filled as the API would have done (but a batch of users per transaction)."""

import asyncio

import asyncpg
import numpy as np
import pandas as pd
from tqdm import tqdm

from database.identifiers import USER_EVENTS_SCHEMA, user_index_name, user_table_name
from database.interactions import BUMP_HISTORY_STAMP, CREATE_USER_TABLE

LOG_COLUMNS = ["user_id", "event_type", "product_id", "query", "timestamp", "event_id"]
USER_COLUMNS = ["event_type", "product_id", "query", "timestamp"]
USERS_PER_TRANSACTION = 500
BATCH_TIMEOUT = 3600  # millions of rows take longer than the pool's 30 s request timeout


async def copy_events_to_log(*, conn: asyncpg.Connection, events: pd.DataFrame) -> None:
    records = _nulls_as_none(events[LOG_COLUMNS]).itertuples(index=False, name=None)
    await conn.copy_records_to_table(
        "interaction_events", records=records, columns=LOG_COLUMNS, timeout=BATCH_TIMEOUT
    )


async def write_user_tables(
    *, pool: asyncpg.Pool, events: pd.DataFrame, concurrency: int = 2, progress: bool = False
) -> int:
    """Create and fill the per-user tables of users that have none yet; returns how many.
    Table creation costs PostgreSQL ~8 ms of CPU each, so `concurrency` connections share it."""
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT user_id FROM user_interaction_tables")
    existing = {r["user_id"] for r in rows}
    # The records are made once for the whole frame and sliced per user: pandas per user
    # (a group's frame, its nulls replaced) cost ~4 ms, more than PostgreSQL's table creation.
    events = events.sort_values("user_id", kind="stable")
    users = events["user_id"].to_numpy()
    records = list(_nulls_as_none(events[USER_COLUMNS]).itertuples(index=False, name=None))
    bounds = np.flatnonzero(np.r_[True, users[1:] != users[:-1], True])
    groups = [
        (users[start], records[start:end])
        for start, end in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)
        if users[start] not in existing
    ]
    batches = [
        groups[start : start + USERS_PER_TRANSACTION]
        for start in range(0, len(groups), USERS_PER_TRANSACTION)
    ]
    with tqdm(total=len(groups), desc="user tables", unit="user", disable=not progress) as bar:

        async def shard(index: int) -> None:
            async with pool.acquire() as conn:
                for batch in batches[index::concurrency]:
                    await _write_batch(conn, batch)
                    bar.update(len(batch))

        await asyncio.gather(*(shard(i) for i in range(concurrency)))
    return len(groups)


async def _write_batch(conn: asyncpg.Connection, batch: list[tuple[str, list[tuple]]]) -> None:
    async with conn.transaction():
        for user_id, records in batch:
            name = user_table_name(user_id)
            await conn.fetchval(CREATE_USER_TABLE, user_id, name, user_index_name(user_id))
            await conn.copy_records_to_table(
                name, records=records, columns=USER_COLUMNS, schema_name=USER_EVENTS_SCHEMA
            )
            await conn.execute(BUMP_HISTORY_STAMP, user_id)


def _nulls_as_none(frame: pd.DataFrame) -> pd.DataFrame:
    """pandas keeps missing text as NaN; COPY wants None."""
    return frame.astype(object).where(frame.notna(), None)
