"""The statements of concurrent requests run together, one per group: the group commit of
single events (`EventWriter`) and the grouped history reads (`HistoryReader`).

No fixed wait: the first request's statement runs at once, and whatever arrives while it is in
flight goes into the next one, so a group grows with the load and costs nothing when idle. A
request never joins a statement already sent: it sees everything committed before it arrived.
"""

import asyncio
import logging
from collections import deque
from typing import Generic, TypeVar

import asyncpg

from database.pool import DATABASE_UNAVAILABLE, DatabaseUnavailable, connection

logger = logging.getLogger(__name__)
Item = TypeVar("Item")
Result = TypeVar("Result")


class StatementGroups(Generic[Item, Result]):
    """One worker's queue of requests' items, run in groups of at most `max_group_size` (in
    `size` units) by `run_group`, one statement per group."""

    def __init__(self, pool: asyncpg.Pool, max_group_size: int):
        self.pool = pool
        self.max_group_size = max_group_size
        self._pending: deque[tuple[Item, asyncio.Future]] = deque()
        self._drainer: asyncio.Task | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.statements = 0  # group statements run (for tests and benchmarks)

    def size(self, item: Item) -> int:
        return 1

    async def run_group(self, conn: asyncpg.Connection, items: list[Item]) -> list[Result]:
        """Each item's result, from one statement."""
        raise NotImplementedError

    async def submit(self, item: Item) -> Result:
        """The item's result once its group's statement is done; DatabaseUnavailable when the
        database cannot be reached."""
        return await self.submit_nowait(item)

    def submit_nowait(self, item: Item, wait: float = 0.0) -> asyncio.Future:
        """Queue the item; the future of its result (as `submit` returns it). With `wait`
        (seconds), an idle queue starts its statement that much later, with whatever else
        came meanwhile: for items no request waits for."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((item, future))
        if self._drainer is None or self._drainer.done():
            if wait <= 0:
                self._start_draining()
            elif self._timer is None:
                self._timer = loop.call_later(wait, self._start_draining)
        return future

    def _start_draining(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending and (self._drainer is None or self._drainer.done()):
            self._drainer = asyncio.create_task(self._drain())

    async def drained(self) -> None:
        """Return once every item queued so far has been run (for tests)."""
        self._start_draining()
        while self._drainer is not None and not self._drainer.done():
            await asyncio.shield(self._drainer)

    def _next_group(self) -> list[tuple[Item, asyncio.Future]]:
        group, size = [], 0
        while self._pending and (
            not group or size + self.size(self._pending[0][0]) <= self.max_group_size
        ):
            item, future = self._pending.popleft()
            group.append((item, future))
            size += self.size(item)
        return group

    async def _drain(self) -> None:
        while self._pending:
            group = self._next_group()
            try:
                # One connection for as long as groups keep coming: under load, no trip through
                # the pool per statement.
                async with connection(self.pool) as conn:
                    while group:
                        await self._run(conn, group)
                        group = self._next_group()
            except DatabaseUnavailable as exc:
                _fail(group, exc)
            except BaseException as exc:  # cancelled at shutdown: no request is left waiting
                _fail(group, exc if isinstance(exc, Exception) else DatabaseUnavailable("stopped"))
                raise

    async def _run(self, conn: asyncpg.Connection, group: list[tuple[Item, asyncio.Future]]):
        try:
            results = await self.run_group(conn, [item for item, _ in group])
        except asyncpg.PostgresError as exc:
            if isinstance(exc, DATABASE_UNAVAILABLE):  # the server going away: see connection()
                raise
            if len(group) == 1:
                _fail(group, exc)
                return
            # One request's item broke the statement: the others must not fail with it.
            logger.warning(
                "%s: group of %d failed (%s); running them one by one",
                type(self).__name__,
                len(group),
                exc,
            )
            for member in group:
                await self._run(conn, [member])
            return
        self.statements += 1
        for (_, future), result in zip(group, results, strict=True):
            if not future.done():  # a request cancelled meanwhile (client gone)
                future.set_result(result)


def _fail(group, exc: BaseException) -> None:
    for _, future in group:
        if not future.done():
            future.set_exception(exc)
