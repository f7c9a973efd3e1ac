"""Durability under kill: clients post events with their own event ids, the whole server (uvicorn
and its workers) is killed with SIGKILL mid-stream and started again, and the clients retry what
was not acknowledged. Every event that got a 2xx is stored, and every event is stored exactly
once, in the global log and in its user's table."""

import asyncio
import os
import signal
from collections import Counter

import asyncpg
import httpx

from bench.server import start_server

CLIENTS = 8
ACKED_BEFORE_KILL = 200  # well into the stream


async def _post_until_stopped(
    base: str, client: int, stop: asyncio.Event, enough: asyncio.Event, sent: list, acked: set
):
    async with httpx.AsyncClient(base_url=base, timeout=5) as http:
        number = 0
        while not stop.is_set():
            event = {
                "user_id": f"D{client}",
                "event_type": "search_query",
                "query": f"query {number}",
                "event_id": f"d{client}-{number}",
            }
            sent.append(event)
            number += 1
            try:
                response = await http.post("/interactions", json=event)
            except httpx.TransportError:
                await asyncio.sleep(0.05)  # the server is gone: this one is retried later
                continue
            if response.status_code in (200, 201):
                acked.add(event["event_id"])
                if len(acked) >= ACKED_BEFORE_KILL:
                    enough.set()


async def _retry(base: str, events: list) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        for event in events:
            response = await http.post("/interactions", json=event)
            assert response.status_code in (200, 201), response.text


async def test_every_acknowledged_event_survives_sigkill_exactly_once(database_url, tmp_path):
    env = os.environ | {
        "DATABASE_URL": database_url,
        "ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "SCHEDULER_ENABLED": "false",
    }
    base, server = await asyncio.to_thread(start_server, env, 2)
    sent: list[dict] = []
    acked: set[str] = set()
    stop, enough = asyncio.Event(), asyncio.Event()
    try:
        clients = [
            asyncio.create_task(_post_until_stopped(base, c, stop, enough, sent, acked))
            for c in range(CLIENTS)
        ]
        await asyncio.wait_for(enough.wait(), 120)
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        await asyncio.sleep(0.5)  # requests in flight fail against the dead server
        stop.set()
        await asyncio.gather(*clients)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
    base, server = await asyncio.to_thread(start_server, env, 2)
    try:
        unacknowledged = [e for e in sent if e["event_id"] not in acked]
        await _retry(base, unacknowledged)
    finally:
        server.terminate()
        server.wait(30)

    conn = await asyncpg.connect(database_url)
    try:
        logged = Counter(
            r["event_id"] for r in await conn.fetch("SELECT event_id FROM interaction_events")
        )
        assert set(logged) == {e["event_id"] for e in sent}  # nothing lost, acknowledged or not
        assert max(logged.values()) == 1  # nothing twice
        for client in range(CLIENTS):
            table = f'user_events."D{client}_interactions"'  # this test's users' fixed names
            rows = await conn.fetch(f"SELECT query FROM {table}")  # noqa: S608
            expected = sorted(e["query"] for e in sent if e["user_id"] == f"D{client}")
            assert sorted(r["query"] for r in rows) == expected
    finally:
        await conn.close()
    assert acked and len(unacknowledged) < len(sent)
