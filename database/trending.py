"""SQL for trending scores: score(p) = sum over p's clicks of rate ^ (age in hours), kept up to date
incrementally and persisted, so a restart loses nothing."""

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

TRENDING_LOCK_KEY = 7_311_002
# Events are taken by arrival time up to `now - ARRIVAL_LAG`: a transaction still committing with an
# earlier now() would otherwise land behind the watermark and never be counted.
ARRIVAL_LAG = timedelta(minutes=1)
NEGLIGIBLE_SCORE = 1e-4

_STATE = "SELECT computed_at, watermark FROM trending_state"
_DECAY_ALL = "UPDATE trending_scores SET score = score * power($1::float8, $2::float8)"
_DROP_NEGLIGIBLE = "DELETE FROM trending_scores WHERE score < $1"
_ADD_ARRIVALS = """
INSERT INTO trending_scores (product_id, score)
SELECT product_id,
       sum(power($1::float8, greatest(extract(epoch FROM $2::timestamptz - "timestamp") / 3600, 0)))
FROM interaction_events
WHERE event_type = 'product_click'
  AND ingested_at > $3 AND ingested_at <= $4
  AND "timestamp" > $2::timestamptz - make_interval(days => $5)
GROUP BY product_id
ON CONFLICT (product_id) DO UPDATE SET score = trending_scores.score + EXCLUDED.score
"""
_SAVE_STATE = """
INSERT INTO trending_state (singleton, computed_at, watermark) VALUES (true, $1, $2)
ON CONFLICT (singleton) DO UPDATE SET computed_at = $1, watermark = $2
"""
_SCORES = "SELECT product_id, score FROM trending_scores"


@dataclass
class TrendingUpdate:
    products: int
    incremental: bool
    seconds: float


async def update_trending(
    *, conn: asyncpg.Connection, decay_rate: float, window_days: int, now: datetime
) -> TrendingUpdate:
    """Bring trending scores to `now`: decay the stored scores by the hours since the last run,
    then add the clicks that arrived since. The first run computes from the whole window."""
    started = time.perf_counter()
    watermark_now = now - ARRIVAL_LAG
    async with conn.transaction():
        # One updater at a time, whichever worker or script runs it.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", TRENDING_LOCK_KEY)
        state = await conn.fetchrow(_STATE)
        if state is None:
            since = datetime.min.replace(tzinfo=now.tzinfo)
        else:
            hours = max((now - state["computed_at"]).total_seconds() / 3600, 0.0)
            await conn.execute(_DECAY_ALL, decay_rate, hours)
            since = state["watermark"]
        await conn.execute(_ADD_ARRIVALS, decay_rate, now, since, watermark_now, window_days)
        await conn.execute(_DROP_NEGLIGIBLE, NEGLIGIBLE_SCORE)
        await conn.execute(_SAVE_STATE, now, watermark_now)
        products = await conn.fetchval("SELECT count(*) FROM trending_scores")
    return TrendingUpdate(products, state is not None, time.perf_counter() - started)


async def trending_computed_at(*, conn: asyncpg.Connection) -> datetime | None:
    return await conn.fetchval("SELECT computed_at FROM trending_state")


async def fetch_trending(*, conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(_SCORES)
