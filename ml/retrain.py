"""Run a job now, as the scheduler would, for the data team and cron-less setups.

    python -m ml.retrain                    full retraining (in a child process), then trending
    python -m ml.retrain --job trending     hourly trending scores and activity rollup
    python -m ml.retrain --job retention    delete interaction rows older than RETENTION_DAYS

The same advisory lock as the service's scheduler guards each job: if a worker is already
running it, this exits with status 3 and does nothing. The run is recorded in job_runs and shown
by GET /admin/status. Serving workers pick up a new model version by themselves.
"""

import argparse
import asyncio
import sys

from config.settings import get_settings
from database.migrations import apply_migrations
from database.pool import create_pool
from database.server import database_url
from services.jobs import JOBS, JobRunner

EXIT_BUSY = 3


async def _run(job: str) -> int:
    settings = get_settings()
    with database_url(settings.database_url, settings.pgdata_dir) as url:
        pool = await create_pool(url, min_size=1, max_size=2)
        try:
            async with pool.acquire() as conn:
                await apply_migrations(conn)
            result = await JobRunner(pool=pool, settings=settings, database_url=url).run(job, "cli")
        finally:
            await pool.close()
    if not result.ran:
        print(f"{job}: not run ({result.detail})", file=sys.stderr)
        return EXIT_BUSY
    print(f"{job} {result.outcome} in {result.seconds:.1f} s: {result.detail}")
    return 0 if result.outcome == "succeeded" else 1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog="Settings come from environment variables (see the README's configuration table).",
    )
    parser.add_argument("--job", choices=JOBS, default="retrain")
    args = parser.parse_args()
    sys.exit(asyncio.run(_run(args.job)))


if __name__ == "__main__":
    main()
