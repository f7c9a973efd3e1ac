"""History reads of concurrent requests in one statement.

Most home requests read the user's recent events: a new user's to learn there are none, a known
user's to learn whether they changed since training. Each worker's `HistoryReader` sends the
reads that arrive while its previous read is in flight together (`recent_users_events`, one round
trip), as `EventWriter` does for writes. No fixed wait: a read on an idle worker goes at once, and
a read never joins a statement already sent, so it sees every event committed before it arrived.
"""

import asyncio
import logging
from collections import deque
from datetime import datetime

import asyncpg

from database.interactions import HistoryRead, recent_users_events
from database.pool import DatabaseUnavailable, connection
from services import metrics

logger = logging.getLogger(__name__)
# At most this many reads in one statement: a longer one would hold back the requests it serves.
MAX_GROUP_READS = 64


class HistoryReader:
    """Reads users' recent events for one worker, the reads of concurrent requests together."""

    def __init__(self, pool: asyncpg.Pool, max_group_reads: int = MAX_GROUP_READS):
        self.pool = pool
        self.max_group_reads = max_group_reads
        self._pending: deque[tuple[HistoryRead, asyncio.Future]] = deque()
        self._drainer: asyncio.Task | None = None
        self.statements = 0  # group statements sent (for tests and benchmarks)

    async def read(
        self, user_id: str, since: datetime, unless_stamp: int | None = None
    ) -> list[dict] | None:
        """The user's events since `since`, newest first ([] without any); None when
        `unless_stamp` is given and still the user's history stamp (the table was not read).
        DatabaseUnavailable when the database cannot be reached."""
        future = asyncio.get_running_loop().create_future()
        self._pending.append((HistoryRead(user_id, since, unless_stamp), future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._pending:
            count = min(len(self._pending), self.max_group_reads)
            group = [self._pending.popleft() for _ in range(count)]
            try:
                await self._read(group)
            except BaseException as exc:  # cancelled at shutdown: no request is left waiting
                _fail(group, exc if isinstance(exc, Exception) else DatabaseUnavailable("stopped"))
                raise

    async def _read(self, group: list[tuple[HistoryRead, asyncio.Future]]) -> None:
        try:
            async with connection(self.pool) as conn:
                events = await recent_users_events(conn=conn, reads=[read for read, _ in group])
        except DatabaseUnavailable as exc:
            _fail(group, exc)
            return
        except asyncpg.PostgresError as exc:
            if len(group) == 1:
                _fail(group, exc)
                return
            # One read broke the statement (a user's table dropped by hand): the others must
            # not fail with it.
            logger.warning(
                "group of %d history reads failed (%s); reading one by one", len(group), exc
            )
            for member in group:
                await self._read([member])
            return
        self.statements += 1
        metrics.HISTORY_READ_GROUP_SIZE.observe(len(group))
        for (_, future), read in zip(group, events, strict=True):
            if not future.done():  # a request cancelled meanwhile (client gone)
                future.set_result(read)


def _fail(group, exc: BaseException) -> None:
    for _, future in group:
        if not future.done():
            future.set_exception(exc)
