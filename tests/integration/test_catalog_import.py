"""Processed CSV -> products, against a real PostgreSQL."""

import csv

from database.csv_importer import import_catalog
from database.migrations import apply_migrations, migration_files
from database.training import fetch_catalog
from services.catalog import Catalog


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


def _raw_row(asin: str, **overrides) -> dict:
    row = {
        "name": "boAt Airdopes 141 Bluetooth Earbuds",
        "main_category": "tv, audio & cameras",
        "sub_category": "Headphones",
        "image": f"https://m.media-amazon.com/images/I/{asin}.jpg",
        "link": f"https://www.amazon.in/boAt-Airdopes-141/dp/{asin}/ref=sr_1_5",
        "ratings": "4.1",
        "no_of_ratings": "1,200",
        "discount_price": "₹1,299",
        "actual_price": "₹4,490",
    }
    return row | overrides


def _clean(tmp_path, name: str, rows: list[dict]):
    from ml.clean_catalog import clean_catalog
    from ml.generate_catalog import RAW_COLUMNS

    raw = tmp_path / f"{name}-raw.csv"
    with raw.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=RAW_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    processed = tmp_path / f"{name}.csv"
    clean_catalog([raw], processed)
    return processed


async def test_every_listing_and_alias_is_imported_and_served(conn, tmp_path):
    from main import load_catalog

    image = "https://m.media-amazon.com/images/I/same.jpg"
    processed = _clean(
        tmp_path,
        "listed",
        [
            _raw_row("B0AAAAAAA1"),
            _raw_row("B0AAAAAAA1", main_category="sports", sub_category="Running"),
            _raw_row("B0AAAAAAA2", name="Clog size 8", image=image, no_of_ratings="50"),
            _raw_row("B0AAAAAAA3", name="Clog size 9", image=image, no_of_ratings="5"),
            _raw_row("B0AAAAAAA4", name="Clog size 8", image=image, no_of_ratings="7"),
        ],
    )
    result = await import_catalog(conn=conn, csv_path=processed)
    assert result.aliases == 1
    listed = await conn.fetch(
        "SELECT main_category, sub_category FROM product_categories WHERE product_id = $1 "
        "ORDER BY 1",
        "B0AAAAAAA1",
    )
    assert [tuple(r) for r in listed] == [
        ("sports", "Running"),
        ("tv, audio & cameras", "Headphones"),
    ]
    aliases = await conn.fetch("SELECT alias_id, product_id FROM product_aliases")
    assert [tuple(r) for r in aliases] == [("B0AAAAAAA4", "B0AAAAAAA2")]
    assert await conn.fetchval("SELECT count(*) FROM products WHERE id = 'B0AAAAAAA4'") == 0

    catalog = await load_catalog(conn)
    position = catalog.position_of["B0AAAAAAA1"]
    assert catalog.position_of["B0AAAAAAA4"] == catalog.position_of["B0AAAAAAA2"]
    # The category filter and the category's top list see the second listing too.
    assert catalog.matches(position, catalog.resolve_category("running"), None, None)
    assert catalog.matching([position], ("sports",), None, None).tolist() == [True]
    assert position in catalog.top_by_category["sports"].tolist()
    assert not catalog.matches(catalog.position_of["B0AAAAAAA2"], ("Running",), None, None)


async def test_an_import_whose_parse_rates_collapse_is_refused(conn, tmp_path):
    import pytest

    from database.csv_importer import CatalogQualityError

    good = _clean(tmp_path, "good", [_raw_row(f"B0GOOD000{i}") for i in range(5)])
    await import_catalog(conn=conn, csv_path=good)
    before = await conn.fetch("SELECT * FROM products ORDER BY id")
    # The same file saved through the wrong encoding and a broken price column.
    broken = _clean(
        tmp_path,
        "broken",
        [_raw_row(f"B0GOOD000{i}", discount_price="N/A", actual_price="N/A") for i in range(5)],
    )
    with pytest.raises(CatalogQualityError, match="discount_price 100.0% -> 0.0%"):
        await import_catalog(conn=conn, csv_path=broken)
    assert await conn.fetch("SELECT * FROM products ORDER BY id") == before
    forced = await import_catalog(conn=conn, csv_path=broken, force=True)
    assert not forced.skipped
    price = await conn.fetchval("SELECT discount_price FROM products WHERE id = 'B0GOOD0001'")
    assert price is None


async def test_serving_catalog_reads_the_stored_values_back(conn):
    """The serving catalog is read with COPY into Arrow strings: text that looks like a missing
    value stays text, an empty image is no image, float4 ratings come back as stored."""
    await conn.execute(
        "INSERT INTO products (id, name, main_category, sub_category, image, link, ratings,"
        " no_of_ratings, discount_price, actual_price, discount_ratio) VALUES"
        " ('ZZZZZZZZZ1', 'NA', 'null', 'N/A', '', NULL, 3.6, 12, 99.5, NULL, NULL),"
        " ('ZZZZZZZZZ2', 'Quote \"and\" comma, line\nbreak', 'x', 'y', 'http://i', 'http://l',"
        " NULL, NULL, NULL, 10, 0.25)"
    )
    frame = await fetch_catalog(conn=conn, arrow_strings=True)
    catalog = Catalog.from_frame(frame)
    stored = await conn.fetchval("SELECT count(*) FROM products")
    assert len(catalog) == stored
    assert list(catalog.ids) == sorted(catalog.ids)
    first, second = catalog.products(
        [catalog.position_of["ZZZZZZZZZ1"], catalog.position_of["ZZZZZZZZZ2"]]
    )
    assert first == {
        "id": "ZZZZZZZZZ1",
        "name": "NA",
        "main_category": "null",
        "sub_category": "N/A",
        "image": None,
        "link": None,
        "ratings": 3.6,
        "no_of_ratings": 12,
        "discount_price": 99.5,
        "actual_price": None,
        "discount_ratio": None,
    }
    assert second["name"] == 'Quote "and" comma, line\nbreak'
    assert (second["ratings"], second["no_of_ratings"]) == (None, None)
    assert second["actual_price"] == 10.0
    assert second["discount_ratio"] == 0.25
    # The same catalog read with Python strings (training) holds the same values.
    plain = Catalog.from_frame(await fetch_catalog(conn=conn))
    assert plain.products(list(range(len(plain)))) == catalog.products(list(range(len(catalog))))
    assert (plain.brand_code == catalog.brand_code).all()
    assert (plain.sub_category == catalog.sub_category).all()


async def test_product_cache_stays_right_when_it_fills_up(conn, monkeypatch):
    from services import catalog as catalog_module

    monkeypatch.setattr(catalog_module, "PRODUCT_CACHE_SIZE", 5)
    catalog = Catalog.from_frame(await fetch_catalog(conn=conn, arrow_strings=True))
    assert [p["id"] for p in catalog.products([0, 1, 2, 3])] == list(catalog.ids[:4])
    # Two cached, three new: the cache is cleared to make room, and still every one answers.
    pages = catalog.products([2, 3, 10, 11, 12])
    assert [p["id"] for p in pages] == list(catalog.ids[[2, 3, 10, 11, 12]])
