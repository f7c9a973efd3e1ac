"""The asyncpg connection pool the app keeps on app.state."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

# What asyncpg raises when the server is down, restarting or out of reach: connecting refused or
# timed out, a pooled connection lost, the server shutting down or starting up.
DATABASE_UNAVAILABLE = (
    ConnectionError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    # A pooled connection whose server went away while it sat idle can be left mid-protocol.
    asyncpg.InternalClientError,
)
# How long a client should wait before retrying a write refused during an outage.
RETRY_AFTER_SECONDS = 5
# A request waits this long for a connection: an outage answers quickly instead of hanging.
ACQUIRE_TIMEOUT_SECONDS = 2.0


class DatabaseUnavailable(Exception):
    """The database cannot be reached (stopped, restarting, unreachable)."""


@asynccontextmanager
async def connection(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection; DatabaseUnavailable when the server cannot be reached or is lost
    meanwhile (a socket that is gone is an OSError too)."""
    try:
        async with pool.acquire(timeout=ACQUIRE_TIMEOUT_SECONDS) as conn:
            try:
                yield conn
            except (*DATABASE_UNAVAILABLE, OSError):
                # Lost mid-operation: closed, never handed to the next request (the pool's reset
                # sends no query that would find out).
                conn.terminate()
                raise
    except (*DATABASE_UNAVAILABLE, OSError) as exc:
        raise DatabaseUnavailable(f"{type(exc).__name__}: {exc}") from exc


async def _reset_when_needed(conn: asyncpg.Connection) -> None:
    """Release without a round trip: asyncpg's default reset sends a reset query every time.
    Nothing here leaves session state behind (no LISTEN, no SET, no cursors; the jobs' session
    locks are released in a finally), except a transaction left open by a cancelled request.
    A connection lost mid-operation is terminated by `connection()`, which every caller after
    start-up uses."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def create_pool(url: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        # Queries on per-user tables are built per user; a bounded statement cache keeps
        # memory flat with many users.
        statement_cache_size=256,
        command_timeout=30,
        reset=_reset_when_needed,
    )
