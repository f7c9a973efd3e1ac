"""History reads of concurrent requests in one statement.

Most home requests read the user's recent events: a new user's to learn there are none, a known
user's to learn whether they changed since training. Each worker's `HistoryReader` sends the
reads that arrive while its previous read is in flight together (`recent_users_events`, one
round trip), as `EventWriter` does for writes (services/grouped.py). `RankingStore` shares the
home rankings a worker computes, in groups too, with every worker's next read of the same history.
"""

import logging
from datetime import datetime

import asyncpg

from database.interactions import (
    ComputedRanking,
    HistoryRead,
    ReadHistory,
    recent_users_events,
    store_home_rankings,
)
from services import metrics
from services.grouped import StatementGroups

logger = logging.getLogger(__name__)

# At most this many reads in one statement: a longer one would hold back the requests it serves.
MAX_GROUP_READS = 64


class HistoryReader(StatementGroups[HistoryRead, ReadHistory]):
    """Reads users' recent events for one worker, the reads of concurrent requests together."""

    def __init__(
        self, pool: asyncpg.Pool, max_group_reads: int = MAX_GROUP_READS, from_log: bool = False
    ):
        super().__init__(pool, max_group_reads)
        self.from_log = from_log  # USER_EVENTS_SOURCE=global_log

    async def read(
        self,
        user_id: str,
        since: datetime,
        unless_stamp: int | None = None,
        ranking_version: str | None = None,
    ) -> ReadHistory:
        """The user's events since `since`, newest first ([] without any); events None when
        `unless_stamp` is given and still the user's history stamp (the table was not read),
        or when a home ranking of `ranking_version` is stored for the user's current history
        (it is returned instead). DatabaseUnavailable when the database cannot be reached."""
        return await self.submit(HistoryRead(user_id, since, unless_stamp, ranking_version))

    async def run_group(
        self, conn: asyncpg.Connection, reads: list[HistoryRead]
    ) -> list[ReadHistory]:
        # A user's table dropped by hand fails the statement: its reads then run one by one.
        found = await recent_users_events(conn=conn, reads=reads, from_log=self.from_log)
        metrics.HISTORY_READ_GROUP_SIZE.observe(len(reads))
        return found


# At most this many rankings (a few KB each) in one statement.
MAX_GROUP_RANKINGS = 32
# How long a computed ranking waits for others to be stored with it: a statement per ranking
# cost more than the ranking's read saves (~0.1 ms of a worker's CPU and as much of
# PostgreSQL's), and a request for the same history within this time computes it again.
STORE_WAIT_SECONDS = 0.05


class RankingStore(StatementGroups[ComputedRanking, None]):
    """Stores the home rankings one worker computes, those of concurrent requests together,
    without holding back the requests: a ranking not stored is computed again by the next
    request that needs it."""

    def __init__(self, pool: asyncpg.Pool, max_group_rankings: int = MAX_GROUP_RANKINGS):
        super().__init__(pool, max_group_rankings)

    def keep(self, ranking: ComputedRanking) -> None:
        """Queue the ranking for the next group statement and return at once."""
        self.submit_nowait(ranking, STORE_WAIT_SECONDS).add_done_callback(_log_failure)

    async def run_group(self, conn: asyncpg.Connection, rankings: list[ComputedRanking]) -> list:
        await store_home_rankings(conn=conn, rankings=rankings)
        return [None] * len(rankings)


def _log_failure(done) -> None:
    if not done.cancelled() and done.exception() is not None:
        logger.warning("a computed home ranking was not stored: %s", done.exception())
