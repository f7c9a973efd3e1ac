"""The asyncpg connection pool the app keeps on app.state."""

import asyncpg


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
