"""Persisted, incremental trending scores against a real PostgreSQL."""

from datetime import UTC, datetime, timedelta

import pytest

from database.interactions import EventRow, store_events
from database.trending import fetch_trending, update_trending

RATE = 0.95


def _click(user: str, product: str, at: datetime, event_id: str) -> EventRow:
    return EventRow(user, "product_click", product, None, at, event_id, False)


def _expected(events: list[tuple[str, datetime]], now: datetime) -> dict[str, float]:
    expected: dict[str, float] = {}
    for product, at in events:
        hours = (now - at).total_seconds() / 3600
        expected[product] = expected.get(product, 0.0) + RATE**hours
    return expected


async def _scores(conn) -> dict[str, float]:
    return {r["product_id"]: r["score"] for r in await fetch_trending(conn=conn)}


async def test_incremental_update_equals_full_recompute(conn, product_ids):
    start = datetime.now(UTC) + timedelta(minutes=2)  # first run sees everything stored so far
    a, b, c = product_ids[:3]
    first = [(a, start - timedelta(hours=1)), (a, start - timedelta(hours=3)), (b, start)]
    await store_events(
        conn=conn,
        events=[_click("u1", p, at, f"first{i}") for i, (p, at) in enumerate(first)],
    )
    full = await update_trending(conn=conn, decay_rate=RATE, window_days=60, now=start)
    assert not full.incremental and full.products == 2
    assert await _scores(conn) == pytest.approx(_expected(first, start))

    # Arrivals after the first run, one of them late: sent now with a client time 5 hours ago.
    second = [(b, start + timedelta(minutes=30)), (c, start - timedelta(hours=5))]
    await store_events(
        conn=conn,
        events=[_click("u2", p, at, f"second{i}") for i, (p, at) in enumerate(second)],
    )
    await conn.execute(
        "UPDATE interaction_events SET ingested_at = $1 WHERE event_id LIKE 'second%'",
        start + timedelta(minutes=40),
    )
    later = start + timedelta(hours=2)
    incremental = await update_trending(conn=conn, decay_rate=RATE, window_days=60, now=later)
    assert incremental.incremental and incremental.products == 3
    assert await _scores(conn) == pytest.approx(_expected(first + second, later))

    # Nothing new: running again only decays.
    again = later + timedelta(hours=10)
    await update_trending(conn=conn, decay_rate=RATE, window_days=60, now=again)
    assert await _scores(conn) == pytest.approx(_expected(first + second, again))


async def test_events_outside_the_window_are_ignored(conn, product_ids):
    now = datetime.now(UTC) + timedelta(minutes=2)
    await store_events(
        conn=conn, events=[_click("old", product_ids[0], now - timedelta(days=90), "old1")]
    )
    result = await update_trending(conn=conn, decay_rate=RATE, window_days=60, now=now)
    assert result.products == 0
