"""VACUUM (ANALYZE) of the benchmark database, the last step of `bench.prepare`:

    python -m bench.vacuum   (PGDATA_DIR or DATABASE_URL as for the service)

A database just filled by the simulator sets hint bits and writes checkpoints on its first reads:
the first load runs on it stalled (p99 60-300 ms at 550k, 2026-12-06) until it settled. A vacuum
does that work once, as autovacuum would over a day of a shop's traffic.
"""

import asyncio
import time

import asyncpg

from config.settings import get_settings
from database.server import database_url


async def _vacuum(url: str) -> float:
    conn = await asyncpg.connect(url)
    try:
        started = time.perf_counter()
        await conn.execute("VACUUM (ANALYZE)", timeout=3 * 3600)
        return time.perf_counter() - started
    finally:
        await conn.close()


def main() -> None:
    settings = get_settings()
    with database_url(settings.database_url, settings.pgdata_dir) as url:
        print(f"VACUUM (ANALYZE): {asyncio.run(_vacuum(url)):.1f} s")


if __name__ == "__main__":
    main()
