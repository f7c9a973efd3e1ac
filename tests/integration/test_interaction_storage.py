"""Per-user tables and the global log, against a real PostgreSQL."""

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from database.identifiers import (
    qualified_user_table,
    quote_identifier,
    user_index_name,
    user_table,
    user_table_name,
)
from database.interactions import (
    ComputedRanking,
    EventRow,
    HistoryRead,
    ReadHistory,
    ensure_user_table,
    forget_home_rankings,
    recent_user_events,
    recent_users_events,
    store_events,
    store_home_rankings,
)


def _click(user_id: str, product_id: str, event_id: str = "", minutes_ago: int = 0) -> EventRow:
    return EventRow(
        user_id=user_id,
        event_type="product_click",
        product_id=product_id,
        query=None,
        timestamp=datetime.now(UTC) - timedelta(minutes=minutes_ago),
        event_id=event_id or f"{user_id}-{product_id}-{minutes_ago}",
        client_event_id=bool(event_id),
    )


def test_identifier_helpers():
    assert user_table_name("U12345") == "U12345_interactions"
    assert user_table("U12345") == '"user_events"."U12345_interactions"'
    assert quote_identifier('a"b') == '"a""b"'
    longest = "u" * 50
    assert len(user_table_name(longest)) == 63
    assert len(user_index_name(longest)) <= 63
    with pytest.raises(ValueError):
        user_table_name('x"; DROP TABLE products; --')
    with pytest.raises(ValueError):
        user_table_name("u" * 51)
    with pytest.raises(ValueError):
        quote_identifier("x" * 64)


async def test_first_event_creates_table_with_spec_columns(conn, product_ids):
    stored = await store_events(conn=conn, events=[_click("U12345", product_ids[0])])
    assert len(stored) == 1
    columns = await conn.fetch(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = 'user_events' AND table_name = $1 ORDER BY ordinal_position",
        "U12345_interactions",
    )
    assert [c["column_name"] for c in columns] == ["event_type", "product_id", "query", "timestamp"]
    await store_events(conn=conn, events=[_click("U12345", product_ids[1], minutes_ago=1)])
    await store_events(conn=conn, events=[_click("U99999", product_ids[2])])
    rows = await conn.fetch(
        'SELECT product_id FROM user_events."U12345_interactions" ORDER BY "timestamp"'
    )
    assert [r["product_id"] for r in rows] == [product_ids[1], product_ids[0]]
    log = await conn.fetchval("SELECT count(*) FROM interaction_events")
    assert log == 3


async def test_recent_events_newest_first_and_bounded_by_time(conn, product_ids):
    await store_events(
        conn=conn,
        events=[
            _click("reader", product_ids[0], minutes_ago=60 * 24 * 40),
            _click("reader", product_ids[1], minutes_ago=5),
            _click("reader", product_ids[2], minutes_ago=1),
        ],
    )
    since = datetime.now(UTC) - timedelta(days=30)
    events = await recent_user_events(conn=conn, user_id="reader", since=since)
    assert [e["product_id"] for e in events] == [product_ids[2], product_ids[1]]
    assert await recent_user_events(conn=conn, user_id="nobody_yet", since=since) == []


async def test_every_write_changes_the_history_stamp_and_a_kept_stamp_skips_the_read(
    conn, product_ids
):
    since = datetime.now(UTC) - timedelta(days=30)

    async def stamp() -> int:
        sql = "SELECT history_stamp FROM user_interaction_tables WHERE user_id = 'stamped'"
        return await conn.fetchval(sql)

    await store_events(conn=conn, events=[_click("stamped", product_ids[0], minutes_ago=3)])
    first = await stamp()
    unchanged = await recent_user_events(
        conn=conn, user_id="stamped", since=since, unless_stamp=first
    )
    assert unchanged is None
    await store_events(
        conn=conn,
        events=[
            _click("stamped", product_ids[1], minutes_ago=2),
            _click("stamped", product_ids[2], minutes_ago=1),
        ],
    )
    second = await stamp()
    assert second != first
    # The old stamp no longer holds: the events are read, as recent_user_events reads them.
    read = await recent_user_events(conn=conn, user_id="stamped", since=since, unless_stamp=first)
    assert read == await recent_user_events(conn=conn, user_id="stamped", since=since)
    assert [e["product_id"] for e in read] == [product_ids[2], product_ids[1], product_ids[0]]
    # A retried event stores nothing and changes nothing.
    retried = _click("stamped", product_ids[3], event_id="once")
    await store_events(conn=conn, events=[retried])
    third = await stamp()
    await store_events(conn=conn, events=[retried])
    assert await stamp() == third != second
    nobody = await recent_user_events(conn=conn, user_id="nobody_yet", since=since, unless_stamp=0)
    assert nobody == []


async def test_client_event_id_is_stored_once(conn, product_ids):
    event = _click("retrier", product_ids[0], event_id="evt-1")
    assert len(await store_events(conn=conn, events=[event])) == 1
    assert await store_events(conn=conn, events=[event]) == []
    assert await conn.fetchval('SELECT count(*) FROM user_events."retrier_interactions"') == 1
    assert await conn.fetchval("SELECT count(*) FROM interaction_events") == 1


async def test_concurrent_table_creation_for_one_user(database_url):
    pool = await asyncpg.create_pool(database_url, min_size=10, max_size=10)
    try:
        results = await asyncio.gather(
            *(_ensure(pool, "same_user") for _ in range(30)), return_exceptions=True
        )
        assert all(r in (True, False) for r in results), results
        assert results.count(True) == 1
    finally:
        await pool.close()


async def _ensure(pool: asyncpg.Pool, user_id: str) -> bool:
    async with pool.acquire() as conn:
        return await ensure_user_table(conn=conn, user_id=user_id)


async def test_batch_over_many_users_lands_in_each_users_table(conn, product_ids):
    await store_events(conn=conn, events=[_click("old_user", product_ids[0], minutes_ago=9)])
    batch = [
        _click(f"user_{n % 7}", product_ids[n % len(product_ids)], minutes_ago=n) for n in range(40)
    ] + [_click("old_user", product_ids[1], minutes_ago=1), _click("old_user", product_ids[2])]
    stored = await store_events(conn=conn, events=batch)  # 7 new tables, 1 existing
    assert len(stored) == 42
    since = datetime.now(UTC) - timedelta(hours=2)
    for n in range(7):
        rows = await recent_user_events(conn=conn, user_id=f"user_{n}", since=since)
        expected = [e.product_id for e in batch if e.user_id == f"user_{n}"]  # newest first
        assert [r["product_id"] for r in rows] == expected
    old = await recent_user_events(conn=conn, user_id="old_user", since=since)
    assert [r["product_id"] for r in old] == [product_ids[2], product_ids[1], product_ids[0]]
    assert await conn.fetchval("SELECT count(*) FROM interaction_events") == 43


async def test_concurrent_single_events_are_committed_together(database_url, conn, product_ids):
    from database.pool import create_pool
    from services.interactions import EventWriter

    await store_events(conn=conn, events=[_click("known_0", product_ids[0], minutes_ago=5)])
    rows = [_click(f"known_{n % 3}", product_ids[n % 20], minutes_ago=n % 4) for n in range(30)]
    rows += [_click(f"fresh_{n}", product_ids[n], event_id=f"e{n}") for n in range(10)]
    retry = _click("fresh_0", product_ids[0], event_id="e0")  # the same client event id again
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        writer = EventWriter(pool)
        results = await asyncio.gather(*(writer.store([row]) for row in [*rows, retry]))
    finally:
        await pool.close()
    assert writer.statements < len(rows) / 2  # grouped: far fewer statements than requests
    assert [len(r) for r in results[:-1]] == [1] * 40  # every distinct event stored
    assert results[-1] == []  # the retry: stored once, by the first request
    assert await conn.fetchval("SELECT count(*) FROM interaction_events") == 41
    since = datetime.now(UTC) - timedelta(hours=1)
    for n in range(3):
        stored = await recent_user_events(conn=conn, user_id=f"known_{n}", since=since)
        assert len(stored) == sum(r.user_id == f"known_{n}" for r in rows) + (n == 0)
    for n in range(10):
        assert len(await recent_user_events(conn=conn, user_id=f"fresh_{n}", since=since)) == 1


async def test_concurrent_history_reads_are_read_together(database_url, conn, product_ids):
    from database.pool import create_pool
    from services.history import HistoryReader

    for n in range(4):
        events = [_click(f"reader_{n}", product_ids[k], minutes_ago=k) for k in range(n + 1)]
        await store_events(conn=conn, events=events)
    await store_events(conn=conn, events=[_click("dropped", product_ids[0])])
    stamps = dict(await conn.fetch("SELECT user_id, history_stamp FROM user_interaction_tables"))
    since = datetime.now(UTC) - timedelta(hours=1)
    # Users with events, without any, read twice, with their stamp (not read) and another.
    reads = [("reader_0", None), ("nobody", None), ("reader_3", None), ("reader_3", None)]
    reads += [("reader_2", stamps["reader_2"]), ("reader_1", stamps["reader_1"] + 1)] * 5
    expected = [
        await recent_user_events(conn=conn, user_id=user, since=since, unless_stamp=stamp)
        for user, stamp in reads
    ]
    assert expected[4] is None and expected[1] == [] and len(expected[2]) == 4
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        reader = HistoryReader(pool)
        results = await asyncio.gather(*(reader.read(u, since, s) for u, s in reads))
        assert [found.events for found in results] == expected
        assert reader.statements < len(reads) / 2  # grouped: far fewer statements than reads
        # A table dropped by hand fails its group's statement: the others are read one by one.
        table = await conn.fetchval(
            "SELECT table_name FROM user_interaction_tables WHERE user_id = 'dropped'"
        )
        await conn.execute(f"DROP TABLE {qualified_user_table(table)}")
        results = await asyncio.gather(
            *(reader.read(u, since, s) for u, s in reads[:4]), reader.read("dropped", since)
        )
        assert [found.events for found in results] == [*expected[:4], []]
    finally:
        await pool.close()


async def test_a_stored_home_ranking_answers_reads_of_the_same_history_only(conn, product_ids):
    await store_events(
        conn=conn,
        events=[_click("sharer", p, minutes_ago=k) for k, p in enumerate(product_ids[:3])],
    )
    since = datetime.now(UTC) - timedelta(hours=1)

    async def read(version: str | None = "v1", since: datetime = since) -> ReadHistory:
        [found] = await recent_users_events(
            conn=conn, reads=[HistoryRead("sharer", since, ranking_version=version)]
        )
        return found

    first = await read()
    assert first.ranking is None and len(first.events) == 3 and first.stamp is not None
    oldest = first.events[-1]["timestamp"]
    await store_home_rankings(
        conn=conn,
        rankings=[
            ComputedRanking("sharer", "v1", first.stamp, oldest, b"ranked"),
            ComputedRanking("nobody_yet", "v1", 0, oldest, b"no table: not stored"),
        ],
    )
    # The same history: the stored ranking instead of the events (the table is not read).
    assert await read() == ReadHistory(None, first.stamp, b"ranked")
    # Another version, none asked for, or an event of the ranking out of the window: the events.
    for found in (await read("v2"), await read(None), await read(since=oldest + timedelta(0, 1))):
        assert found.ranking is None and found.events is not None
    # A ranking of an older history never replaces the one of a newer.
    await store_home_rankings(
        conn=conn, rankings=[ComputedRanking("sharer", "v1", first.stamp - 1, oldest, b"older")]
    )
    assert (await read()).ranking == b"ranked"
    # A new event changes the history: the events again, until a ranking of them is stored.
    await store_events(conn=conn, events=[_click("sharer", product_ids[3])])
    changed = await read()
    assert changed.ranking is None and len(changed.events) == 4
    assert changed.stamp == first.stamp + 1
    stored = await conn.fetchval("SELECT count(*) FROM computed_home_rankings")
    assert stored == 1  # the user without a table has none
    # A new version served: the rankings of the others go.
    assert await forget_home_rankings(conn=conn, keep_version="v2") == 1
