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
            yield conn
    except (*DATABASE_UNAVAILABLE, OSError) as exc:
        raise DatabaseUnavailable(f"{type(exc).__name__}: {exc}") from exc


async def create_pool(url: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        # Queries on per-user tables are built per user; a bounded statement cache keeps
        # memory flat with many users.
        statement_cache_size=256,
        command_timeout=30,
    )
