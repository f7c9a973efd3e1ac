"""Clean raw Amazon products CSVs into the processed catalog the service imports.

    python -m ml.clean_catalog --input data/raw/amazon-in-sample \
        --output data/processed/Amazon-Products-Optimized.csv

--input takes files or folders of CSVs (the real data ships one file per category). Text is
repaired (mojibake, HTML entities, control characters), prices parse after the repair, the
listings of one product (one ASIN in several category files) are merged whatever the row order,
and near-identical listings under other ids become aliases. Beside the catalog, from the same
output name:

    <name>-categories.csv   every (main_category, sub_category) a product is listed under
    <name>-aliases.csv      ids merged into another product (alias_id, product_id)
    <name>-quality.json     the data-quality report (its summary is printed)

A run that fails leaves none of them half-written.
"""

import argparse
import base64
import csv
import hashlib
import html
import json
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import ftfy
import numpy as np
import pyarrow as pa
from tqdm import tqdm

from database.csv_importer import companion_paths
from database.products import PRODUCT_COLUMNS, RAW_COLUMNS
from services.catalog import implausible_discounts, product_groups

PROCESSED_COLUMNS = PRODUCT_COLUMNS
# Without a name and a link (the product's id comes from it) there is no product; every other
# column may be missing from a file and is then blank for its rows.
REQUIRED_RAW_COLUMNS = {"name", "link"}
# Amazon's own 10-character product id (ASIN) sits in the link: /dp/B09TVVGXWS or /gp/product/...
ASIN_IN_LINK = re.compile(r"/(?:dp|gp/product|gp/aw/d)/([A-Z0-9]{10})(?:[/?]|$)")
NUMBER_IN_TEXT = re.compile(r"^\d+(?:\.\d+)?$")
# A price, rating or count as most rows have it: nothing to repair (the repair is the slow
# part of cleaning).
PLAIN_VALUE = re.compile(r"^\s*₹?[\d,]+(?:\.\d+)?\s*$")
TRUNCATION_MARK = re.compile(r"(?:\s*(?:\.{3,}|…))+\s*$")
# C0/C1 control characters (tab and newline become spaces with the rest of the whitespace).
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
HTML_ENTITY = re.compile(r"&(?:#\d+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);")
REPLACEMENT_CHARACTER = "\ufffd"  # a byte that was lost before the file reached us
# NFKC would turn these into plain letters and digits glued to the word: "Zip™" -> "ZipTM".
KEEP_UNDER_NFKC = "™®©℠°²³¹½¼¾"
_KEEP_SPLIT = re.compile(f"([{KEEP_UNDER_NFKC}])")
# The same picture under two URLs: .../images/W/IMAGERENDERING_521856-T1/images/I/x.jpg
IMAGE_RENDERING_PATH = re.compile(r"/images/W/[^/]+/images/")
NAME_WORDS = re.compile(r"\w+")
# "Â" right after a letter or digit and before a space, a letter or a digit: in this English
# catalog always the lead byte of a mis-decoded non-breaking space.
STRAY_NBSP_LEAD = re.compile(r"(?<=[A-Za-z0-9])Â(?=[\s\u200b\xadA-Za-z0-9])")
INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff\xad]")


def _nfkc(text: str) -> str:
    if not any(c in KEEP_UNDER_NFKC for c in text):
        return unicodedata.normalize("NFKC", text)
    return "".join(
        part if part in KEEP_UNDER_NFKC else unicodedata.normalize("NFKC", part)
        for part in _KEEP_SPLIT.split(text)
    )


def repair_text(value: str | None, repairs: Counter | None = None) -> str:
    """Repair a raw text field: HTML entities, mojibake (ftfy), control and replacement
    characters removed, NFKC (but for symbols it would damage), whitespace collapsed. Keeps
    non-ASCII letters (Hindi names are real). `repairs` counts what was repaired, by kind."""
    if not value:
        return ""
    text = value
    found: list[str] = []
    if "&" in text and HTML_ENTITY.search(text):  # links have "&s=" on every row
        unescaped = html.unescape(text)
        if unescaped != text:
            found.append("html_entity")
            text = unescaped
    if not text.isascii():  # mojibake is made of non-ASCII characters
        fixed = ftfy.fix_text(text, unescape_html=False, uncurl_quotes=False, normalization="NFC")
        if fixed != text:
            found.append("mojibake")
            text = fixed
    if "Â" in text and STRAY_NBSP_LEAD.search(text):
        # A non-breaking space decoded as Latin-1 ("Â\xa0") whose second byte was lost or
        # turned into a plain space before ftfy saw it: "RTX 3050ÂTi" is "RTX 3050 Ti".
        found.append("mojibake")
        text = STRAY_NBSP_LEAD.sub(" ", text)
    if INVISIBLE.search(text):  # zero-width spaces and soft hyphens: nothing a name shows
        text = INVISIBLE.sub(lambda m: "" if m.group() == "\xad" else " ", text)
    if CONTROL_CHARACTERS.search(text):
        found.append("control_character")
        text = CONTROL_CHARACTERS.sub(" ", text)
    if REPLACEMENT_CHARACTER in text:
        found.append("replacement_character")
        text = text.replace(REPLACEMENT_CHARACTER, "")
    if not text.isascii():
        text = _nfkc(text)
    if found and repairs is not None:
        repairs.update(found)
    return " ".join(text.split())


def clean_name(value: str | None, repairs: Counter | None = None) -> str:
    """Repair a product name and drop the '...' the scraper left on truncated names."""
    name = repair_text(value, repairs)
    # The regex only where it can match: searched from every position it is slow.
    return TRUNCATION_MARK.sub("", name) if name.endswith(("...", "…")) else name


def _repaired(value: str | None, repairs: Counter | None = None) -> str:
    """A value as it will be parsed: most are plain already (the repair is the slow part)."""
    if not value:
        return ""
    return value.strip() if PLAIN_VALUE.match(value) else repair_text(value, repairs)


def parse_price(value: str | None) -> float | None:
    """'₹32,999' (or its mojibake 'â‚¹32,999') -> 32999.0; empty, zero or junk -> None."""
    return _price(_repaired(value))


def parse_rating(value: str | None) -> float | None:
    """'4.2' -> 4.2; 'Get', 'FREE', empty or outside 0..5 -> None."""
    return _rating(_repaired(value))


def parse_rating_count(value: str | None) -> int | None:
    """'2,255' -> 2255, '24.0' -> 24; 'FREE Delivery by Amazon' -> None."""
    return _rating_count(_repaired(value))


def _price(text: str) -> float | None:
    text = text.replace("₹", "").replace(",", "")
    if not NUMBER_IN_TEXT.match(text):
        return None
    price = float(text)
    return price if price > 0 else None


def _rating(text: str) -> float | None:
    if not NUMBER_IN_TEXT.match(text):
        return None
    rating = float(text)
    return rating if 0 <= rating <= 5 else None


def _rating_count(text: str) -> int | None:
    text = text.replace(",", "")
    if not NUMBER_IN_TEXT.match(text):
        return None
    count = float(text)
    return int(count) if count.is_integer() else None


def compute_discount_ratio(
    discount_price: float | None, actual_price: float | None
) -> float | None:
    """1 - discount/actual to 3 places; None when a price is missing or discount > actual."""
    if discount_price is None or actual_price is None or discount_price > actual_price:
        return None
    return round(1 - discount_price / actual_price, 3)


def product_id_from_link(link: str) -> str | None:
    """Stable 10-character id: the ASIN in the link, else a hash of the link without its
    tracking query string (which changes between scrapes)."""
    if not link:
        return None
    match = ASIN_IN_LINK.search(link)
    if match:
        return match.group(1)
    stable_part = link.split("?", 1)[0].split("/ref=", 1)[0]
    digest = hashlib.sha1(stable_part.encode("utf-8")).digest()
    return base64.b32encode(digest).decode("ascii")[:10]


def canonical_image(url: str) -> str:
    """One URL per picture: without the /images/W/IMAGERENDERING_.../ detour."""
    return IMAGE_RENDERING_PATH.sub("/images/", url)


@dataclass
class FileQuality:
    """What one input file held and what cleaning made of it."""

    rows_read: int = 0
    rows_cleaned: int = 0  # rows that made a product row (before listings are merged)
    dropped: Counter = field(default_factory=Counter)
    missing_columns: list[str] = field(default_factory=list)
    # Per parsed column: non-empty raw values and how many of them parsed.
    present: Counter = field(default_factory=Counter)
    parsed: Counter = field(default_factory=Counter)
    repairs: Counter = field(default_factory=Counter)
    single_price_filled: int = 0
    images_unified: int = 0

    def add(self, other: "FileQuality") -> None:
        self.rows_read += other.rows_read
        self.rows_cleaned += other.rows_cleaned
        for mine, theirs in (
            (self.dropped, other.dropped),
            (self.present, other.present),
            (self.parsed, other.parsed),
            (self.repairs, other.repairs),
        ):
            mine.update(theirs)
        self.single_price_filled += other.single_price_filled
        self.images_unified += other.images_unified

    def as_dict(self) -> dict:
        return {
            "rows_read": self.rows_read,
            "rows_cleaned": self.rows_cleaned,
            "dropped": dict(sorted(self.dropped.items())),
            "missing_columns": self.missing_columns,
            "parse_rates": {
                column: {
                    "non_empty": self.present[column],
                    "parsed": self.parsed[column],
                    "rate": round(self.parsed[column] / self.present[column], 4)
                    if self.present[column]
                    else None,
                }
                for column in PARSED_COLUMNS
            },
            "repairs": dict(sorted(self.repairs.items())),
            "single_price_filled": self.single_price_filled,
            "images_unified": self.images_unified,
        }


PARSED_COLUMNS = ("discount_price", "actual_price", "ratings", "no_of_ratings")
# Parsers of text already repaired.
_PARSERS = {
    "discount_price": _price,
    "actual_price": _price,
    "ratings": _rating,
    "no_of_ratings": _rating_count,
}


_category_repairs: dict[str, tuple[str, Counter]] = {}


def _repair_category(value: str | None, repairs: Counter) -> str:
    """repair_text for the few distinct category names, each repaired once per process."""
    if not value:
        return ""
    known = _category_repairs.get(value)
    if known is None:
        found: Counter = Counter()
        known = _category_repairs[value] = (repair_text(value, found), found)
    if known[1]:
        repairs.update(known[1])
    return known[0]


def clean_row(
    raw: dict[str, str | None], quality: FileQuality | None = None
) -> tuple[dict | None, str | None]:
    """Clean one raw row. Returns (processed row, None) or (None, drop reason)."""
    quality = quality if quality is not None else FileQuality()
    name = clean_name(raw.get("name"), quality.repairs)
    if not name:
        return None, "missing_name"
    main_category = _repair_category(raw.get("main_category"), quality.repairs)
    sub_category = _repair_category(raw.get("sub_category"), quality.repairs)
    if not main_category or not sub_category:
        return None, "missing_category"
    link = repair_text(raw.get("link"))
    product_id = product_id_from_link(link)
    if product_id is None:
        return None, "missing_link"
    values = {}
    for column, parse in _PARSERS.items():
        text = raw.get(column)
        if text and text.strip():
            values[column] = parse(_repaired(text, quality.repairs))
            quality.present[column] += 1
            quality.parsed[column] += values[column] is not None
        else:
            values[column] = None
    discount_price, actual_price = values["discount_price"], values["actual_price"]
    # A listing shows one price when there is no discount: it is both the selling and the
    # list price (discount ratio 0), whichever column the file put it in.
    if (discount_price is None) != (actual_price is None):
        quality.single_price_filled += 1
        discount_price = actual_price = discount_price or actual_price
    image = repair_text(raw.get("image"))
    unified = canonical_image(image)
    quality.images_unified += unified != image
    return {
        "id": product_id,
        "name": name,
        "main_category": main_category,
        "sub_category": sub_category,
        "image": unified,
        "link": link,
        "ratings": values["ratings"],
        "no_of_ratings": values["no_of_ratings"],
        "discount_price": discount_price,
        "actual_price": actual_price,
        "discount_ratio": compute_discount_ratio(discount_price, actual_price),
    }, None


def input_files(inputs: Iterable[Path]) -> list[Path]:
    """CSV files of `inputs` (files, or folders read in name order)."""
    files: list[Path] = []
    for path in inputs:
        files += sorted(path.glob("*.csv")) if path.is_dir() else [path]
    return files


def read_file(file: Path, quality: FileQuality) -> Iterator[dict[str, str | None]]:
    """Rows of one CSV; optional columns it lacks are blank (and named in `quality`)."""
    with file.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or [])
        missing = REQUIRED_RAW_COLUMNS - columns
        if missing:
            raise ValueError(f"{file}: missing required columns {sorted(missing)}")
        quality.missing_columns = [c for c in RAW_COLUMNS if c not in columns]
        yield from reader


def _listing_order(row: dict) -> tuple:
    """The merge order of one product's listings, from the data alone (never the row order):
    most ratings first, then the most complete, then by their text."""
    filled = sum(row[c] not in (None, "") for c in PROCESSED_COLUMNS)
    return (
        -(row["no_of_ratings"] if row["no_of_ratings"] is not None else -1),
        -filled,
        tuple("" if row[c] is None else str(row[c]) for c in PROCESSED_COLUMNS),
    )


def merge_listings(rows: list[dict]) -> dict:
    """One product from its listings: the first in `_listing_order` (most reviewed) gives its
    fields, ratings and category columns; a field it lacks comes from the next listing having
    it; prices come as a pair from the first listing with any price."""
    ordered = sorted(rows, key=_listing_order)
    merged = dict(ordered[0])
    for column in ("name", "image", "link", "ratings"):
        if merged[column] in (None, ""):
            merged[column] = next(
                (r[column] for r in ordered if r[column] not in (None, "")), merged[column]
            )
    if merged["discount_price"] is None:
        priced = next((r for r in ordered if r["discount_price"] is not None), None)
        if priced is not None:
            for column in ("discount_price", "actual_price", "discount_ratio"):
                merged[column] = priced[column]
    return merged


def near_duplicate_key(row: dict) -> tuple | None:
    """Listings with the same words in the name, the same prices and the same picture are one
    product under two ids. None: not enough evidence to say (no picture or no price)."""
    if not row["image"] or row["discount_price"] is None:
        return None
    words = " ".join(NAME_WORDS.findall(row["name"].casefold()))
    return words, row["discount_price"], row["actual_price"], row["image"]


@dataclass
class CleaningSummary:
    rows_read: int = 0
    rows_kept: int = 0  # products written
    dropped: Counter = field(default_factory=Counter)  # rows not made into a product, by reason
    duplicates_merged: int = 0  # listings merged into another listing of the same ASIN
    near_duplicates_merged: int = 0  # products merged into another product (now aliases)
    report: dict = field(default_factory=dict)

    def __str__(self) -> str:
        reasons = ", ".join(f"{reason}={count}" for reason, count in sorted(self.dropped.items()))
        overall = self.report.get("overall", {})
        rates = ", ".join(
            f"{column} {v['rate']:.1%}"
            for column, v in overall.get("parse_rates", {}).items()
            if v["rate"] is not None
        )
        repairs = ", ".join(f"{k}={v}" for k, v in overall.get("repairs", {}).items())
        lines = [
            f"rows read: {self.rows_read}, products: {self.rows_kept}, "
            f"dropped: {sum(self.dropped.values())} ({reasons or 'none'})",
            f"listings merged (same ASIN): {self.duplicates_merged}, "
            f"near-duplicates merged into aliases: {self.near_duplicates_merged}, "
            f"products in several categories: {overall.get('products_in_several_categories', 0)}",
            f"listings of one product (shown once): {overall.get('same_product_groups', 0)} groups"
            f" of {overall.get('products_in_same_product_groups', 0)} products; implausible "
            f"discounts (kept out of best value): {overall.get('implausible_discounts', 0)}",
            f"parsed: {rates or 'nothing to parse'}; text repairs: {repairs or 'none'}",
        ]
        lines += [f"warning: {w}" for w in self.report.get("warnings", [])]
        return "\n".join(lines)


def output_paths(output: Path) -> dict[str, Path]:
    """The catalog and its companion files (named as the importer reads them)."""
    return {"catalog": output} | companion_paths(output)


def clean_catalog(inputs: Iterable[Path], output: Path, progress: bool = False) -> CleaningSummary:
    """Clean `inputs` into `output` (and its categories, aliases and quality files)."""
    summary = CleaningSummary()
    listings: dict[str, list[dict]] = defaultdict(list)
    per_file: dict[str, FileQuality] = {}
    warnings: list[str] = []
    for file in input_files(inputs):
        quality = per_file.setdefault(str(file), FileQuality())
        for raw in tqdm(read_file(file, quality), disable=not progress, unit="row", desc=file.name):
            quality.rows_read += 1
            if None in raw:  # csv puts surplus fields under the None key
                quality.dropped["malformed"] += 1
                continue
            row, reason = clean_row(raw, quality)
            if row is None:
                quality.dropped[reason] += 1
                continue
            quality.rows_cleaned += 1
            listings[row["id"]].append(row)
        if quality.missing_columns:
            warnings.append(f"{file}: no column {', '.join(quality.missing_columns)} (left blank)")

    products, categories = {}, {}
    for product_id, rows in listings.items():
        products[product_id] = rows[0] if len(rows) == 1 else merge_listings(rows)
        categories[product_id] = {(r["main_category"], r["sub_category"]) for r in rows}
        summary.duplicates_merged += len(rows) - 1
    aliases = _merge_near_duplicates(products, categories)
    summary.near_duplicates_merged = len(aliases)

    overall = FileQuality()
    for quality in per_file.values():
        overall.add(quality)
    summary.rows_read, summary.dropped = overall.rows_read, overall.dropped
    summary.rows_kept = len(products)
    summary.report = {
        "files": {name: q.as_dict() for name, q in per_file.items()},
        "overall": overall.as_dict()
        | {
            "products": len(products),
            "duplicates_merged": summary.duplicates_merged,
            "near_duplicates_merged": summary.near_duplicates_merged,
            "products_in_several_categories": sum(len(c) > 1 for c in categories.values()),
        }
        | _listing_quality(products),
        "warnings": warnings,
    }
    _write_outputs(output, products, categories, aliases, summary.report)
    return summary


def _listing_quality(products: dict[str, dict]) -> dict[str, int]:
    """What serving will treat specially: listings of one product (colours, sizes: shown once
    in every list) and discounts too steep to believe (kept out of best value)."""
    rows = list(products.values())
    if not rows:
        return {
            "same_product_groups": 0,
            "products_in_same_product_groups": 0,
            "implausible_discounts": 0,
        }

    def numbers(column: str) -> np.ndarray:  # NaN where missing
        return np.array([np.nan if r[column] is None else float(r[column]) for r in rows])

    selling, listed = numbers("discount_price"), numbers("actual_price")
    groups = product_groups(
        pa.array([r["name"] for r in rows]),
        np.where(np.isnan(selling), listed, selling),
        numbers("ratings"),
        numbers("no_of_ratings"),
    )
    _, sizes = np.unique(groups, return_counts=True)
    doubted = implausible_discounts(
        selling, listed, np.array([r["sub_category"] for r in rows], object)
    )
    return {
        "same_product_groups": int((sizes > 1).sum()),
        "products_in_same_product_groups": int(sizes[sizes > 1].sum()),
        "implausible_discounts": int(doubted.sum()),
    }


def _merge_near_duplicates(products: dict[str, dict], categories: dict[str, set]) -> dict:
    """Merge products that are one listing under several ids (same name words, prices and
    picture) into the first in `_listing_order`; returns {alias id: product id}."""
    groups: dict[tuple, list[str]] = defaultdict(list)
    for product_id, row in products.items():
        key = near_duplicate_key(row)
        if key is not None:
            groups[key].append(product_id)
    aliases = {}
    for ids in groups.values():
        if len(ids) < 2:
            continue
        rows = [products[i] for i in ids]
        merged = merge_listings(rows)
        keep = merged["id"]
        products[keep] = merged
        for other in ids:
            if other != keep:
                aliases[other] = keep
                categories[keep] |= categories.pop(other)
                del products[other]
    return aliases


def _write_outputs(output: Path, products, categories, aliases, report) -> None:
    """All files written aside and moved into place at the end: a failure leaves none."""
    paths = output_paths(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = {kind: path.with_name(path.name + ".partial") for kind, path in paths.items()}
    try:
        with partial["catalog"].open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(PROCESSED_COLUMNS)
            writer.writerows(  # sorted: the same output whatever the order of the input
                [products[product_id][c] for c in PROCESSED_COLUMNS]
                for product_id in sorted(products)
            )
        with partial["categories"].open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["product_id", "main_category", "sub_category"])
            for product_id in sorted(categories):
                writer.writerows((product_id, *pair) for pair in sorted(categories[product_id]))
        with partial["aliases"].open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["alias_id", "product_id"])
            writer.writerows(sorted(aliases.items()))
        partial["quality"].write_text(json.dumps(report, indent=2, ensure_ascii=False))
        for kind, path in paths.items():
            partial[kind].replace(path)
    finally:
        for path in partial.values():
            path.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", type=Path, nargs="+", required=True, help="CSV files or folders")
    parser.add_argument(
        "--output", type=Path, default=Path("data/processed/Amazon-Products-Optimized.csv")
    )
    args = parser.parse_args()
    try:
        summary = clean_catalog(args.input, args.output, progress=True)
    except ValueError as exc:
        raise SystemExit(f"clean_catalog: {exc}") from None
    print(summary)
    print(f"quality report: {output_paths(args.output)['quality']}")


if __name__ == "__main__":
    main()
