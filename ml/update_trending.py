"""Bring the persisted trending scores up to date (the hourly job; safe to run any time).

python -m ml.update_trending
"""

import argparse
import asyncio
from datetime import UTC, datetime

import asyncpg

from config.settings import get_settings
from database.migrations import apply_migrations
from database.server import database_url
from database.trending import update_trending


async def _main() -> None:
    settings = get_settings()
    with database_url(settings.database_url, settings.pgdata_dir) as url:
        conn = await asyncpg.connect(url)
        try:
            await apply_migrations(conn)
            result = await update_trending(
                conn=conn,
                decay_rate=settings.trending_decay_rate,
                window_days=settings.training_window_days,
                now=datetime.now(UTC),
            )
        finally:
            await conn.close()
    kind = "incremental" if result.incremental else "full"
    print(f"trending: {kind} update, {result.products} products scored, {result.seconds:.2f} s")


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n")[0]).parse_args()
    asyncio.run(_main())


if __name__ == "__main__":
    main()
