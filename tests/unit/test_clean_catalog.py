"""Cleaning rules on the kinds of mess the real Amazon India file has."""

import csv
import re
from pathlib import Path

import pytest

from ml.clean_catalog import (
    PROCESSED_COLUMNS,
    clean_catalog,
    clean_name,
    clean_row,
    compute_discount_ratio,
    parse_price,
    parse_rating,
    parse_rating_count,
    product_id_from_link,
)
from ml.generate_catalog import RAW_COLUMNS, indian_rupees

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "data" / "raw" / "amazon-in-sample"
LINK = (
    "https://www.amazon.in/boAt-Airdopes-141/dp/B09N3ZNHTY/ref=sr_1_5?qid=1679128666&s=electronics"
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("₹32,999", 32999.0),
        ("₹9,99,999", 999999.0),
        (" ₹1,299 ", 1299.0),
        ("₹499.50", 499.5),
        ("", None),
        (None, None),
        ("₹0", None),
        ("FREE", None),
    ],
)
def test_parse_price(raw, expected):
    assert parse_price(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("4.2", 4.2), (" 3.9 ", 3.9), ("Get", None), ("FREE", None), ("", None), ("7.5", None)],
)
def test_parse_rating(raw, expected):
    assert parse_rating(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2,255", 2255),
        ("1,72,343", 172343),
        ("24.0", 24),
        ("FREE Delivery by Amazon", None),
        ("Only 2 left in stock.", None),
        ("", None),
    ],
)
def test_parse_rating_count(raw, expected):
    assert parse_rating_count(raw) == expected


def test_clean_name_strips_truncation_and_whitespace():
    assert (
        clean_name("  boAt Airdopes   141 Earbuds for Ga...") == "boAt Airdopes 141 Earbuds for Ga"
    )
    assert clean_name("Café  Chair…") == "Café Chair"
    assert clean_name("Kurta (हिंदी पैक)") == "Kurta (हिंदी पैक)"


def test_discount_ratio():
    assert compute_discount_ratio(1299.0, 3995.0) == 0.675
    assert compute_discount_ratio(100.0, 100.0) == 0.0
    assert compute_discount_ratio(None, 100.0) is None
    assert compute_discount_ratio(150.0, 100.0) is None


def test_product_id_is_asin_or_stable_hash():
    assert product_id_from_link(LINK) == "B09N3ZNHTY"
    no_asin = "https://www.amazon.in/sspa/click?ie=UTF8&spc=abc"
    hashed = product_id_from_link(no_asin)
    assert hashed is not None and re.fullmatch(r"[A-Z0-9]{10}", hashed)
    # The tracking query string changes between scrapes; the id must not.
    assert product_id_from_link(no_asin.replace("abc", "xyz")) == hashed
    assert product_id_from_link("") is None


def _raw(**overrides):
    row = {
        "name": "boAt Airdopes 141 Earbuds",
        "main_category": "tv, audio & cameras",
        "sub_category": "Headphones",
        "image": "https://m.media-amazon.com/images/I/51HBom8xz7L.jpg",
        "link": LINK,
        "ratings": "3.9",
        "no_of_ratings": "1,72,343",
        "discount_price": "₹1,299",
        "actual_price": "₹3,995",
    }
    return row | overrides


def test_clean_row_typical():
    row, reason = clean_row(_raw())
    assert reason is None
    assert row["id"] == "B09N3ZNHTY"
    assert row["no_of_ratings"] == 172343
    assert row["discount_price"] == 1299.0 and row["actual_price"] == 3995.0
    assert row["discount_ratio"] == 0.675


def test_clean_row_single_price_is_actual_price():
    row, _ = clean_row(_raw(actual_price="", discount_price="₹499"))
    assert row["actual_price"] == 499.0 and row["discount_ratio"] == 0.0


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"name": "   "}, "missing_name"),
        ({"sub_category": ""}, "missing_category"),
        ({"link": ""}, "missing_link"),
    ],
)
def test_clean_row_drops(overrides, reason):
    assert clean_row(_raw(**overrides)) == (None, reason)


def test_clean_catalog_summary_and_output(tmp_path):
    raw = tmp_path / "raw.csv"
    with raw.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=RAW_COLUMNS)
        writer.writeheader()
        writer.writerow(_raw())
        writer.writerow(_raw(sub_category="Speakers"))  # same product, other category
        writer.writerow(_raw(name="", link=LINK.replace("B09N3ZNHTY", "B000000001")))
        writer.writerow(
            _raw(link=LINK.replace("B09N3ZNHTY", "B000000002"), ratings="Get", actual_price="")
        )
    out = tmp_path / "out.csv"
    summary = clean_catalog([raw], out)
    assert (summary.rows_read, summary.rows_kept) == (4, 2)
    assert summary.dropped == {"duplicate": 1, "missing_name": 1}
    with out.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == PROCESSED_COLUMNS
    assert [r["id"] for r in rows] == ["B09N3ZNHTY", "B000000002"]
    assert rows[0]["sub_category"] == "Headphones"  # first listing wins
    assert rows[1]["ratings"] == ""


def test_real_sample_cleans_without_junk(tmp_path):
    out = tmp_path / "sample.csv"
    summary = clean_catalog([SAMPLE_DIR], out)
    assert summary.rows_read > 10_000
    assert summary.dropped["duplicate"] > 0  # the real data lists products under several categories
    with out.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == summary.rows_kept
    assert len({r["id"] for r in rows}) == len(rows)
    for row in rows:
        assert re.fullmatch(r"[A-Z0-9]{10}", row["id"])
        for column in ("ratings", "discount_price", "actual_price", "discount_ratio"):
            assert row[column] == "" or float(row[column]) >= 0
        assert row["no_of_ratings"] == "" or row["no_of_ratings"].isdigit()
        assert not row["name"].endswith("...")


def test_indian_rupee_format():
    assert indian_rupees(999999) == "₹9,99,999"
    assert indian_rupees(32999) == "₹32,999"
    assert indian_rupees(499) == "₹499"
    assert parse_price(indian_rupees(1234567)) == 1234567.0
