"""Processed CSV -> products, against a real PostgreSQL."""

import csv

from database.csv_importer import import_catalog
from database.migrations import apply_migrations, migration_files


async def test_import_round_trip(conn, catalog_csv):
    with catalog_csv.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert await conn.fetchval("SELECT count(*) FROM products") == len(rows)

    sample = next(r for r in rows if r["discount_ratio"] and r["ratings"] and r["no_of_ratings"])
    stored = await conn.fetchrow("SELECT * FROM products WHERE id = $1", sample["id"])
    assert stored["name"] == sample["name"]
    assert stored["main_category"] == sample["main_category"]
    assert stored["sub_category"] == sample["sub_category"]
    assert stored["link"] == sample["link"]
    assert float(stored["actual_price"]) == float(sample["actual_price"])
    assert float(stored["discount_price"]) == float(sample["discount_price"])
    assert stored["no_of_ratings"] == int(sample["no_of_ratings"])
    assert abs(stored["ratings"] - float(sample["ratings"])) < 1e-6
    assert abs(stored["discount_ratio"] - float(sample["discount_ratio"])) < 1e-6

    missing_price = next(r for r in rows if r["actual_price"] == "")
    assert (
        await conn.fetchval("SELECT actual_price FROM products WHERE id = $1", missing_price["id"])
        is None
    )


async def test_unchanged_file_is_skipped_and_forced_import_upserts(conn, catalog_csv):
    before = await conn.fetch("SELECT id FROM products ORDER BY id")
    skipped = await import_catalog(conn=conn, csv_path=catalog_csv)
    assert skipped.skipped
    forced = await import_catalog(conn=conn, csv_path=catalog_csv, force=True)
    assert not forced.skipped and forced.rows_loaded == len(before)
    after = await conn.fetch("SELECT id FROM products ORDER BY id")
    assert before == after  # ids stable across runs, no duplicates


async def test_changed_row_is_updated(conn, catalog_csv, tmp_path):
    with catalog_csv.open(encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        columns = reader.fieldnames
    rows[0]["name"] = "Renamed product"
    changed = tmp_path / "changed.csv"
    with changed.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    result = await import_catalog(conn=conn, csv_path=changed)
    assert result.rows_loaded == len(rows)
    name = await conn.fetchval("SELECT name FROM products WHERE id = $1", rows[0]["id"])
    assert name == "Renamed product"
    assert await conn.fetchval("SELECT count(*) FROM products") == len(rows)


async def test_migrations_recorded_and_idempotent(conn):
    versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")]
    assert versions == [path.stem for path in migration_files()]
    assert await apply_migrations(conn) == []
