"""Load the processed catalog CSV into `products` with COPY, upserting on id.

    python -m database.csv_importer [--csv data/processed/Amazon-Products-Optimized.csv] [--force]

The cleaner's companion files beside the CSV (see `companion_paths`) are loaded in the same
transaction: every category a product is listed under (`product_categories`), ids merged into
another product (`product_aliases`), and the data-quality report, which is kept with the import
and compared with the previous one: a catalog whose parse rates collapse (a file saved through
the wrong encoding parses no price) is refused, nothing changed, unless --force. A file whose
checksum matches the last import is skipped (a second `make run` is quick).
"""

import argparse
import asyncio
import csv
import hashlib
import json
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
_CREATE_CATEGORY_STAGING = """
CREATE TEMP TABLE categories_staging (product_id text, main_category text, sub_category text)
ON COMMIT DROP
"""
_OWN_CATEGORIES = (
    "INSERT INTO categories_staging SELECT id, main_category, sub_category FROM products_staging"
)
_DROP_OLD_CATEGORIES = (
    "DELETE FROM product_categories WHERE product_id IN (SELECT id FROM products_staging)"
)
_INSERT_CATEGORIES = """
INSERT INTO product_categories
SELECT product_id, main_category, sub_category FROM categories_staging
WHERE product_id IN (SELECT id FROM products)
ON CONFLICT DO NOTHING
"""
_CREATE_ALIAS_STAGING = (
    "CREATE TEMP TABLE aliases_staging (alias_id text, product_id text) ON COMMIT DROP"
)
# An alias is no product of its own any more (its events and requests reach the product); an id
# that is a product again in this catalog is no alias.
_APPLY_ALIASES = (
    """
DELETE FROM product_categories c USING aliases_staging a
WHERE c.product_id = a.alias_id
AND NOT EXISTS (SELECT 1 FROM products_staging s WHERE s.id = a.alias_id)
""",
    """
DELETE FROM products p USING aliases_staging a
WHERE p.id = a.alias_id
AND NOT EXISTS (SELECT 1 FROM products_staging s WHERE s.id = a.alias_id)
""",
    "DELETE FROM product_aliases WHERE alias_id IN (SELECT id FROM products_staging)",
    """
INSERT INTO product_aliases
SELECT alias_id, product_id FROM aliases_staging
WHERE product_id IN (SELECT id FROM products_staging)
ON CONFLICT (alias_id) DO UPDATE SET product_id = EXCLUDED.product_id
""",
)
_LAST_IMPORT_CHECKSUM = "SELECT source_sha256 FROM catalog_imports ORDER BY id DESC LIMIT 1"
_LAST_QUALITY = (
    "SELECT quality FROM catalog_imports WHERE quality IS NOT NULL ORDER BY id DESC LIMIT 1"
)
_RECORD_IMPORT = (
    "INSERT INTO catalog_imports (source_sha256, rows_loaded, quality) VALUES ($1, $2, $3::jsonb)"
)
# A parse rate this much below the previous import's means the input broke, not the catalog.
MAX_PARSE_RATE_DROP = 0.10


@dataclass
class ImportResult:
    rows_loaded: int
    seconds: float
    skipped: bool
    aliases: int = 0


class CatalogQualityError(ValueError):
    """The catalog parses much worse than the previous import: refused."""


def companion_paths(csv_path: Path) -> dict[str, Path]:
    """The cleaner's files that go with a processed catalog CSV."""
    stem = csv_path.with_suffix("")
    return {
        "categories": Path(f"{stem}-categories.csv"),
        "aliases": Path(f"{stem}-aliases.csv"),
        "quality": Path(f"{stem}-quality.json"),
    }


def parse_rate_collapse(previous: dict | None, current: dict | None) -> str | None:
    """Why `current` (a quality report) parses much worse than `previous`, or None."""
    if not previous or not current:
        return None
    before = previous.get("overall", {}).get("parse_rates", {})
    now = current.get("overall", {}).get("parse_rates", {})
    worse = [
        f"{column} {before[column]['rate']:.1%} -> {rates['rate']:.1%}"
        for column, rates in now.items()
        if rates.get("rate") is not None
        and before.get(column, {}).get("rate") is not None
        and rates["rate"] < before[column]["rate"] - MAX_PARSE_RATE_DROP
    ]
    return "parse rates collapsed since the last import: " + ", ".join(worse) if worse else None


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
    """COPY `csv_path` (and its companion files) into staging tables and upsert it into
    products, in one transaction.

    Raises CatalogQualityError (nothing changed) when its parse rates collapsed, unless `force`.
    """
    started = time.perf_counter()
    _check_header(csv_path)
    checksum = file_sha256(csv_path)
    if not force and await conn.fetchval(_LAST_IMPORT_CHECKSUM) == checksum:
        return ImportResult(rows_loaded=0, seconds=time.perf_counter() - started, skipped=True)
    paths = companion_paths(csv_path)
    quality = json.loads(paths["quality"].read_text()) if paths["quality"].exists() else None
    async with conn.transaction():
        previous = await conn.fetchval(_LAST_QUALITY)
        problem = parse_rate_collapse(json.loads(previous) if previous else None, quality)
        if problem and not force:
            raise CatalogQualityError(f"{csv_path}: {problem} (import with --force to accept)")
        await conn.execute(_CREATE_STAGING)
        await conn.copy_to_table(
            "products_staging", source=csv_path, columns=PRODUCT_COLUMNS, format="csv", header=True
        )
        status = await conn.execute(_UPSERT_FROM_STAGING)
        rows = int(status.split()[-1])
        await conn.execute(_CREATE_CATEGORY_STAGING)
        if paths["categories"].exists():
            await conn.copy_to_table(
                "categories_staging", source=paths["categories"], format="csv", header=True
            )
        else:  # a catalog without the cleaner's files: each product in its own category
            await conn.execute(_OWN_CATEGORIES)
        await conn.execute(_DROP_OLD_CATEGORIES)
        await conn.execute(_INSERT_CATEGORIES)
        aliases = 0
        if paths["aliases"].exists():
            await conn.execute(_CREATE_ALIAS_STAGING)
            await conn.copy_to_table(
                "aliases_staging", source=paths["aliases"], format="csv", header=True
            )
            for statement in _APPLY_ALIASES:
                status = await conn.execute(statement)
            aliases = int(status.split()[-1])
        await conn.execute(_RECORD_IMPORT, checksum, rows, json.dumps(quality) if quality else None)
    return ImportResult(
        rows_loaded=rows, seconds=time.perf_counter() - started, skipped=False, aliases=aliases
    )


async def _main(csv_path: Path, force: bool) -> None:
    settings = get_settings()
    with database_url(settings.database_url, settings.pgdata_dir) as url:
        conn = await asyncpg.connect(url)
        try:
            await apply_migrations(conn)
            result = await import_catalog(conn=conn, csv_path=csv_path, force=force)
        except CatalogQualityError as exc:
            raise SystemExit(f"import refused: {exc}") from None
        finally:
            await conn.close()
    if result.skipped:
        print(f"catalog unchanged since last import, skipped ({csv_path})")
    else:
        print(
            f"imported {result.rows_loaded} products ({result.aliases} aliases) from {csv_path} "
            f"in {result.seconds:.1f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--csv", type=Path, default=get_settings().processed_catalog_path)
    parser.add_argument("--force", action="store_true", help="import even if unchanged")
    args = parser.parse_args()
    asyncio.run(_main(args.csv, args.force))


if __name__ == "__main__":
    main()
