"""The workers' shared load table and the rule that closes a connection: a worker serving at
least EXCESS_TO_SHED more connections than its siblings' mean closes half the excess per tick;
a lone worker, a balanced one or a stopped sibling's stale slot never makes it close."""

import asyncio
import time

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from routers import worker_balance as wb
from routers.middleware import RequestContextMiddleware


def test_siblings_see_each_others_load_and_a_stopped_one_is_forgotten(tmp_path):
    path = tmp_path / "loads"
    first = wb.SiblingLoads(path, pid=101)
    second = wb.SiblingLoads(path, pid=102)
    now = time.monotonic()  # a system-wide clock: the same in every process
    assert first.siblings_mean(now) == 0.0  # a claimed slot starts with no load
    first.publish(6.0, now)
    second.publish(2.0, now)
    assert first.siblings_mean(now) == 2.0
    assert second.siblings_mean(now) == 6.0
    # A slot not written for STALE_SECONDS is a stopped worker's, and is free to claim.
    assert first.siblings_mean(now + wb.STALE_SECONDS + 0.1) is None
    second.close()
    assert first.siblings_mean(now) is None
    third = wb.SiblingLoads(path, pid=103)
    assert third._offset == second._offset  # the freed slot is reused
    third.close()
    first.close()
    assert not path.exists()  # the last worker out removes the table


def test_a_slot_per_worker_up_to_the_table_size(tmp_path):
    path = tmp_path / "loads"
    tables = [wb.SiblingLoads(path, pid=1000 + i) for i in range(wb.SLOTS)]
    assert len({t._offset for t in tables}) == wb.SLOTS
    with pytest.raises(RuntimeError, match="no free slot"):
        wb.SiblingLoads(path, pid=5000)
    for table in tables:
        table.close()


def _clients(count: int, first_port: int = 40000) -> list[tuple[str, int]]:
    return [("127.0.0.1", first_port + i) for i in range(count)]


def _balances(path, *pids: int) -> list[wb.WorkerBalance]:
    """Balances with their slots claimed, ticked by hand (`update`) for the test."""
    balances = [wb.WorkerBalance(path, pid=pid) for pid in pids]
    for balance in balances:
        balance.open_table()
    return balances


def _tick(*balances: wb.WorkerBalance) -> None:
    """A tick of every worker, in which each reads the others' counts of the same tick."""
    for balance in balances:
        balance.update()
    for balance in balances:
        balance.ticks -= 1
        balance.update()


def test_the_busier_worker_closes_one_connection_per_tick(tmp_path):
    path = tmp_path / "loads"
    busy, idle = _balances(path, 201, 202)
    busy_clients, idle_clients = _clients(6), _clients(2, first_port=50000)
    for client in busy_clients:
        busy.saw(client)
    for client in idle_clients:
        idle.saw(client)
    _tick(busy, idle)
    assert (busy.connections, idle.connections) == (6, 2)
    assert not idle.should_close(idle_clients[0])
    assert not busy.should_close(None)  # no address: nothing to count it by
    # Half the gap of 4 per tick: had both reconnected to the idle worker, 4 against 4.
    assert busy.should_close(busy_clients[0])
    assert busy.should_close(busy_clients[1])
    assert not busy.should_close(busy_clients[2])
    busy.saw(("127.0.0.1", 40006))  # one client reconnected to the busy worker again,
    idle.saw(("127.0.0.1", 50002))  # the other to the idle one
    _tick(busy, idle)
    assert (busy.connections, idle.connections) == (5, 3)  # closed ones no longer counted
    assert busy.should_close(busy_clients[2])
    assert not busy.should_close(busy_clients[3])
    idle.saw(("127.0.0.1", 50003))
    _tick(busy, idle)
    assert (busy.connections, idle.connections) == (4, 4)
    assert not busy.should_close(busy_clients[3])
    busy.stop()
    idle.stop()
    assert not path.exists()


def test_a_connection_without_requests_for_a_while_is_not_counted(tmp_path):
    (balance,) = _balances(tmp_path / "loads", 251)
    balance.saw(("127.0.0.1", 1))
    balance.update()
    assert balance.connections == 1
    for _ in range(wb.ACTIVE_TICKS):
        balance.update()
    assert balance.connections == 0
    balance.stop()


def test_a_worker_without_siblings_never_closes(tmp_path):
    (alone,) = _balances(tmp_path / "loads", 301)
    for client in _clients(50):
        alone.saw(client)
    alone.update()
    assert alone.connections == 50 and alone.excess == 0
    assert not alone.should_close(_clients(1)[0])
    alone.stop()


async def test_started_it_ticks_in_the_event_loop(tmp_path):
    balance = wb.WorkerBalance(tmp_path / "loads", pid=351)
    balance.start()
    try:
        balance.saw(("127.0.0.1", 1))
        await asyncio.sleep(3 * wb.TICK_SECONDS)
        assert balance.ticks >= 2 and balance.connections == 1
    finally:
        balance.stop()


async def test_the_middleware_notes_connections_and_adds_connection_close(tmp_path):
    (balance,) = _balances(tmp_path / "loads", 401)
    app = RequestContextMiddleware(
        Starlette(routes=[Route("/", lambda request: PlainTextResponse("ok"))]), balance=balance
    )
    transport = httpx.ASGITransport(app=app, client=("10.0.0.1", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        kept = await client.get("/")
        assert balance._last_request == {("10.0.0.1", 1234): 0}
        balance._closes_left = 1  # as a tick leaves it when the siblings serve 2 fewer
        closed = await client.get("/")
    assert "connection" not in kept.headers
    assert closed.headers["connection"] == "close" and closed.text == "ok"
    assert balance._last_request == {}  # the closed connection no longer counts
    balance.stop()


async def test_without_a_table_the_worker_serves_unbalanced(tmp_path, caplog):
    balance = wb.WorkerBalance(tmp_path / "no such folder" / "loads", pid=501)
    balance.start()
    assert "worker balance off" in caplog.text
    balance.saw(("127.0.0.1", 1))
    assert balance._last_request == {}  # nothing kept that no tick would ever prune
    assert not balance.should_close(("127.0.0.1", 1))
    balance.stop()


def test_a_lone_process_gets_no_balance():
    assert wb.worker_balance() is None  # pytest's process has no supervisor
