"""Load the processed catalog CSV into `products` with COPY, upserting on id.

    python -m database.csv_importer [--csv data/processed/Amazon-Products-Optimized.csv] [--force]

A file whose checksum matches the last import is skipped (a second `make run` is quick).
"""

import argparse
import asyncio
import csv
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from config.settings import get_settings
from database.migrations import apply_migrations
from database.products import PRODUCT_COLUMNS
from database.server import database_url

_CREATE_STAGING = (
    "CREATE TEMP TABLE products_staging (LIKE products INCLUDING DEFAULTS) ON COMMIT DROP"
)
_UPSERT_FROM_STAGING = """
INSERT INTO products SELECT * FROM products_staging
ON CONFLICT (id) DO UPDATE SET
    name = EXCLUDED.name, main_category = EXCLUDED.main_category,
    sub_category = EXCLUDED.sub_category, image = EXCLUDED.image, link = EXCLUDED.link,
    ratings = EXCLUDED.ratings, no_of_ratings = EXCLUDED.no_of_ratings,
    discount_price = EXCLUDED.discount_price, actual_price = EXCLUDED.actual_price,
    discount_ratio = EXCLUDED.discount_ratio
"""
_LAST_IMPORT_CHECKSUM = "SELECT source_sha256 FROM catalog_imports ORDER BY id DESC LIMIT 1"
_RECORD_IMPORT = "INSERT INTO catalog_imports (source_sha256, rows_loaded) VALUES ($1, $2)"


@dataclass
class ImportResult:
    rows_loaded: int
    seconds: float
    skipped: bool


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_header(path: Path) -> None:
    with path.open(newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle), [])
    if header != PRODUCT_COLUMNS:
        raise ValueError(f"{path}: expected columns {PRODUCT_COLUMNS}, found {header}")


async def import_catalog(
    *, conn: asyncpg.Connection, csv_path: Path, force: bool = False
) -> ImportResult:
    """COPY `csv_path` into a staging table and upsert it into products, in one transaction."""
    started = time.perf_counter()
    _check_header(csv_path)
    checksum = file_sha256(csv_path)
    if not force and await conn.fetchval(_LAST_IMPORT_CHECKSUM) == checksum:
        return ImportResult(rows_loaded=0, seconds=time.perf_counter() - started, skipped=True)
    async with conn.transaction():
        await conn.execute(_CREATE_STAGING)
        await conn.copy_to_table(
            "products_staging", source=csv_path, columns=PRODUCT_COLUMNS, format="csv", header=True
        )
        status = await conn.execute(_UPSERT_FROM_STAGING)
        rows = int(status.split()[-1])
        await conn.execute(_RECORD_IMPORT, checksum, rows)
    return ImportResult(rows_loaded=rows, seconds=time.perf_counter() - started, skipped=False)


async def _main(csv_path: Path, force: bool) -> None:
    settings = get_settings()
    with database_url(settings.database_url, settings.pgdata_dir) as url:
        conn = await asyncpg.connect(url)
        try:
            await apply_migrations(conn)
            result = await import_catalog(conn=conn, csv_path=csv_path, force=force)
        finally:
            await conn.close()
    if result.skipped:
        print(f"catalog unchanged since last import, skipped ({csv_path})")
    else:
        print(f"imported {result.rows_loaded} products from {csv_path} in {result.seconds:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--csv", type=Path, default=get_settings().processed_catalog_path)
    parser.add_argument("--force", action="store_true", help="import even if unchanged")
    args = parser.parse_args()
    asyncio.run(_main(args.csv, args.force))


if __name__ == "__main__":
    main()
