"""Cleaning rules on the kinds of mess the real Amazon India file has."""

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from ml.clean_catalog import (
    PROCESSED_COLUMNS,
    clean_catalog,
    clean_name,
    clean_row,
    compute_discount_ratio,
    output_paths,
    parse_price,
    parse_rating,
    parse_rating_count,
    product_id_from_link,
    repair_text,
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
    assert summary.dropped == {"missing_name": 1} and summary.duplicates_merged == 1
    rows = _read(out)
    assert list(rows[0]) == PROCESSED_COLUMNS
    assert [r["id"] for r in rows] == ["B000000002", "B09N3ZNHTY"]  # sorted by id
    assert rows[0]["ratings"] == ""
    # Both listings' categories are kept; the column holds the first in the merge order.
    listed = [
        tuple(r.values()) for r in _read(output_paths(out)["categories"])
    ]  # (product_id, main_category, sub_category)
    assert [(p, sub) for p, _, sub in listed] == [
        ("B000000002", "Headphones"),
        ("B09N3ZNHTY", "Headphones"),
        ("B09N3ZNHTY", "Speakers"),
    ]
    assert rows[1]["sub_category"] == "Headphones"
    report = json.loads(output_paths(out)["quality"].read_text())
    assert report["overall"]["dropped"] == {"missing_name": 1}
    assert report["overall"]["parse_rates"]["ratings"] == {
        "non_empty": 3,
        "parsed": 2,
        "rate": 0.6667,
    }


def _read(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("boAt Xtend 1.69â€\x9d HD Display", "boAt Xtend 1.69” HD Display"),  # UTF-8 read as cp1252
        ("ASAPÂ™ Cleaner", "ASAP™ Cleaner"),
        ("Rts&trade; Women&#39;s Kurta &amp; Dupatta", "Rts™ Women's Kurta & Dupatta"),
        ("Bell\x07 Ringer\x1b Toy", "Bell Ringer Toy"),  # control characters
        ("EIO\ufffd 100% Cotton", "EIO 100% Cotton"),  # a lost byte
        ("Zip™ Pro® ½ kg", "Zip™ Pro® ½ kg"),  # NFKC would glue "ZipTM" and split "1⁄2"
        ("ＦＵＬＬ width ﬁt", "FULL width fit"),  # NFKC where it does no damage
        ("Kurta (हिंदी पैक)", "Kurta (हिंदी पैक)"),
    ],
)
def test_repair_text(raw, expected):
    assert repair_text(raw) == expected


def test_mojibake_price_parses_after_repair():
    assert parse_price("â‚¹10,999") == 10999.0
    row, _ = clean_row(_raw(discount_price="â‚¹1,299", actual_price="â‚¹3,995"))
    assert (row["discount_price"], row["actual_price"]) == (1299.0, 3995.0)


def test_single_price_in_actual_price_is_also_the_selling_price():
    row, _ = clean_row(_raw(discount_price="", actual_price="₹499"))
    assert row["discount_price"] == row["actual_price"] == 499.0 and row["discount_ratio"] == 0.0


def test_image_urls_of_one_picture_are_unified():
    plain = "https://m.media-amazon.com/images/I/71abc.jpg"
    detour = "https://m.media-amazon.com/images/W/IMAGERENDERING_521856-T1/images/I/71abc.jpg"
    assert clean_row(_raw(image=detour))[0]["image"] == plain
    assert clean_row(_raw(image=plain))[0]["image"] == plain


def _write(path: Path, rows: list[dict], columns=RAW_COLUMNS) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def test_a_file_without_optional_columns_is_cleaned_with_a_warning(tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    _write(folder / "a.csv", [_raw()])
    no_image = [c for c in RAW_COLUMNS if c not in ("image", "ratings")]
    _write(folder / "b.csv", [_raw(link=LINK.replace("B09N3ZNHTY", "B000000002"))], no_image)
    out = tmp_path / "out.csv"
    summary = clean_catalog([folder], out)
    assert summary.rows_kept == 2
    rows = {r["id"]: r for r in _read(out)}
    assert rows["B000000002"]["image"] == "" and rows["B000000002"]["ratings"] == ""
    assert rows["B09N3ZNHTY"]["image"].startswith("https://")
    assert any("b.csv" in w and "image" in w for w in summary.report["warnings"])
    assert summary.report["files"][str(folder / "b.csv")]["missing_columns"] == [
        "image",
        "ratings",
    ]


def test_a_file_without_a_required_column_fails_and_leaves_nothing(tmp_path):
    raw = tmp_path / "raw.csv"
    _write(raw, [_raw()], [c for c in RAW_COLUMNS if c != "link"])
    out = tmp_path / "out" / "catalog.csv"
    with pytest.raises(ValueError, match="link"):
        clean_catalog([raw], out)
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_listings_of_one_product_merge_the_same_whatever_the_row_order(tmp_path):
    image = "https://m.media-amazon.com/images/I/71abc.jpg"
    listings = [
        _raw(sub_category="Headphones", image="", no_of_ratings="120", ratings="4.1"),
        _raw(sub_category="Speakers", image=image, no_of_ratings="2,255", ratings="4.3"),
        _raw(
            sub_category="All Electronics",
            image="",
            discount_price="",
            actual_price="",
            no_of_ratings="5",
        ),
        _raw(link=LINK.replace("B09N3ZNHTY", "B000000002"), name="Other thing"),
    ]
    outputs = []
    for attempt, order in enumerate(([0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1])):
        folder = tmp_path / f"run{attempt}"
        folder.mkdir()
        _write(folder / "x.csv", [listings[i] for i in order[:2]])
        _write(folder / "y.csv", [listings[i] for i in order[2:]])
        out = folder / "out.csv"
        clean_catalog([folder], out)
        outputs.append(
            [output_paths(out)[k].read_bytes() for k in ("catalog", "categories", "aliases")]
        )
    assert outputs[0] == outputs[1] == outputs[2]
    merged = {r["id"]: r for r in _read(tmp_path / "run0" / "out.csv")}["B09N3ZNHTY"]
    # The most-reviewed listing gives ratings and the category column; its image is kept.
    assert (merged["ratings"], merged["no_of_ratings"]) == ("4.3", "2255")
    assert merged["sub_category"] == "Speakers" and merged["image"] == image
    categories = _read(output_paths(tmp_path / "run0" / "out.csv")["categories"])
    assert sorted(c["sub_category"] for c in categories if c["product_id"] == "B09N3ZNHTY") == [
        "All Electronics",
        "Headphones",
        "Speakers",
    ]


def test_near_duplicates_under_other_ids_become_aliases(tmp_path):
    image = "https://m.media-amazon.com/images/I/518VMaWPthL._AC_UL320_.jpg"
    size_8 = _raw(name="crocs mens Bayaband Clog", image=image, no_of_ratings="1,732")
    size_9 = size_8 | {"link": LINK.replace("B09N3ZNHTY", "B000000009"), "no_of_ratings": "10"}
    other_price = size_8 | {
        "link": LINK.replace("B09N3ZNHTY", "B000000007"),
        "discount_price": "₹1",
    }
    raw = tmp_path / "raw.csv"
    _write(raw, [size_9, size_8, other_price])
    out = tmp_path / "out.csv"
    summary = clean_catalog([raw], out)
    assert summary.near_duplicates_merged == 1
    assert [r["id"] for r in _read(out)] == ["B000000007", "B09N3ZNHTY"]
    assert _read(output_paths(out)["aliases"]) == [
        {"alias_id": "B000000009", "product_id": "B09N3ZNHTY"}
    ]


def test_real_sample_cleans_without_junk(tmp_path):
    out = tmp_path / "sample.csv"
    summary = clean_catalog([SAMPLE_DIR], out)
    assert summary.rows_read > 10_000
    assert summary.duplicates_merged > 0  # the real data lists products under several categories
    rows = _read(out)
    assert len(rows) == summary.rows_kept
    assert len({r["id"] for r in rows}) == len(rows)
    overall = summary.report["overall"]
    assert overall["parse_rates"]["discount_price"]["rate"] >= 0.99
    assert overall["repairs"]["mojibake"] > 0
    leftovers = re.compile(r"â€|Ã.|Â|&(?:amp|#\d+|[a-z]+);|[\x00-\x08\x0b-\x1f\x7f-\x9f\ufffd]")
    for row in rows:
        assert re.fullmatch(r"[A-Z0-9]{10}", row["id"])
        for column in ("ratings", "discount_price", "actual_price", "discount_ratio"):
            assert row[column] == "" or float(row[column]) >= 0
        assert row["no_of_ratings"] == "" or row["no_of_ratings"].isdigit()
        assert not row["name"].endswith("...")
        assert not leftovers.search(row["name"]), row["name"]
        assert (row["discount_price"] == "") == (row["actual_price"] == "")


def test_indian_rupee_format():
    assert indian_rupees(999999) == "₹9,99,999"
    assert indian_rupees(32999) == "₹32,999"
    assert indian_rupees(499) == "₹499"
    assert parse_price(indian_rupees(1234567)) == 1234567.0


def test_a_real_file_saved_through_the_wrong_encoding_cleans_like_the_original(tmp_path):
    # Real rows with ₹ prices, curly quotes and ® in names, re-saved as if their UTF-8 had been
    # read as cp1252: every price becomes "â‚¹…" and would parse as nothing without the repair.
    with (SAMPLE_DIR / "All Electronics.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))[:40]
    rows += [r for r in _sample_rows() if "’" in r["name"] or "®" in r["name"]][:10]

    def garble(text: str) -> str:
        return text.encode("utf-8").decode("cp1252", errors="ignore")

    original, garbled = tmp_path / "original", tmp_path / "garbled"
    original.mkdir()
    garbled.mkdir()
    _write(original / "x.csv", rows)
    _write(garbled / "x.csv", [{k: garble(v) for k, v in r.items()} for r in rows])
    clean_catalog([original], tmp_path / "a.csv")
    summary = clean_catalog([garbled], tmp_path / "b.csv")
    assert summary.report["overall"]["parse_rates"]["discount_price"]["rate"] == 1.0
    assert summary.report["overall"]["repairs"]["mojibake"] >= 40
    assert _read(tmp_path / "b.csv") == _read(tmp_path / "a.csv")


def _sample_rows() -> list[dict]:
    rows = []
    for file in sorted(SAMPLE_DIR.glob("*.csv")):
        with file.open(encoding="utf-8") as handle:
            rows += list(csv.DictReader(handle))
    return rows


@pytest.mark.parametrize(
    "raw",
    [
        "RTX 3050ÂTi Laptop",  # the non-breaking space's second byte lost
        "RTX 3050Â\xa0Ti Laptop",  # its two bytes read as Latin-1
        "RTX 3050Â Ti Laptop",  # its second byte turned into a plain space
        "RTX 3050Â\u200bTi Laptop",  # a zero-width space behind it
    ],
)
def test_a_mis_decoded_non_breaking_space_becomes_a_space(raw):
    assert clean_name(raw) == "RTX 3050 Ti Laptop"


def test_accented_capitals_of_real_words_stay():
    assert clean_name("Âge Crème de Jour") == "Âge Crème de Jour"


def test_a_list_price_many_times_the_usual_is_doubted():
    from services.catalog import implausible_discounts

    selling = np.array([399.0] + [300.0 + i for i in range(30)])
    listed = np.array([18899.0] + [600.0 + 2 * i for i in range(30)])
    doubted = implausible_discounts(selling, listed, np.array(["Cables"] * 31, object))
    assert doubted.tolist() == [True] + [False] * 30
