"""History reads of concurrent requests in one statement.

Most home requests read the user's recent events: a new user's to learn there are none, a known
user's to learn whether they changed since training. Each worker's `HistoryReader` sends the
reads that arrive while its previous read is in flight together (`recent_users_events`, one
round trip), as `EventWriter` does for writes (services/grouped.py).
"""

from datetime import datetime

import asyncpg

from database.interactions import HistoryRead, recent_users_events
from services import metrics
from services.grouped import StatementGroups

# At most this many reads in one statement: a longer one would hold back the requests it serves.
MAX_GROUP_READS = 64


class HistoryReader(StatementGroups[HistoryRead, list[dict] | None]):
    """Reads users' recent events for one worker, the reads of concurrent requests together."""

    def __init__(self, pool: asyncpg.Pool, max_group_reads: int = MAX_GROUP_READS):
        super().__init__(pool, max_group_reads)

    async def read(
        self, user_id: str, since: datetime, unless_stamp: int | None = None
    ) -> list[dict] | None:
        """The user's events since `since`, newest first ([] without any); None when
        `unless_stamp` is given and still the user's history stamp (the table was not read).
        DatabaseUnavailable when the database cannot be reached."""
        return await self.submit(HistoryRead(user_id, since, unless_stamp))

    async def run_group(
        self, conn: asyncpg.Connection, reads: list[HistoryRead]
    ) -> list[list[dict] | None]:
        # A user's table dropped by hand fails the statement: its reads then run one by one.
        events = await recent_users_events(conn=conn, reads=reads)
        metrics.HISTORY_READ_GROUP_SIZE.observe(len(reads))
        return events
