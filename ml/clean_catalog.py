"""Clean raw Amazon products CSVs into the processed catalog the service imports.

    python -m ml.clean_catalog --input data/raw/Amazon-Products-Raw.csv \
        --output data/processed/Amazon-Products-Optimized.csv

--input takes files or folders of CSVs (the real sample ships one file per category).
"""

import argparse
import base64
import csv
import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from database.products import PRODUCT_COLUMNS, RAW_COLUMNS

PROCESSED_COLUMNS = PRODUCT_COLUMNS
REQUIRED_RAW_COLUMNS = set(RAW_COLUMNS)
# Amazon's own 10-character product id (ASIN) sits in the link: /dp/B09TVVGXWS or /gp/product/...
ASIN_IN_LINK = re.compile(r"/(?:dp|gp/product|gp/aw/d)/([A-Z0-9]{10})(?:[/?]|$)")
NUMBER_IN_TEXT = re.compile(r"^\d+(?:\.\d+)?$")
TRUNCATION_MARK = re.compile(r"(?:\s*(?:\.{3,}|…))+\s*$")


def clean_text(value: str | None) -> str:
    """NFKC-normalise and collapse whitespace; keeps non-ASCII letters (Hindi names are real)."""
    if not value:
        return ""
    return " ".join(unicodedata.normalize("NFKC", value).split())


def clean_name(value: str | None) -> str:
    """Clean a product name and drop the '...' the scraper left on truncated names."""
    return TRUNCATION_MARK.sub("", clean_text(value))


def parse_price(value: str | None) -> float | None:
    """'₹32,999' -> 32999.0; empty, zero or junk -> None."""
    text = clean_text(value).replace("₹", "").replace(",", "").strip()
    if not NUMBER_IN_TEXT.match(text):
        return None
    price = float(text)
    return price if price > 0 else None


def parse_rating(value: str | None) -> float | None:
    """'4.2' -> 4.2; 'Get', 'FREE', empty or outside 0..5 -> None."""
    text = clean_text(value)
    if not NUMBER_IN_TEXT.match(text):
        return None
    rating = float(text)
    return rating if 0 <= rating <= 5 else None


def parse_rating_count(value: str | None) -> int | None:
    """'2,255' -> 2255, '24.0' -> 24; 'FREE Delivery by Amazon' -> None."""
    text = clean_text(value).replace(",", "")
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


@dataclass
class CleaningSummary:
    rows_read: int = 0
    rows_kept: int = 0
    dropped: Counter = field(default_factory=Counter)

    def __str__(self) -> str:
        reasons = ", ".join(f"{reason}={count}" for reason, count in sorted(self.dropped.items()))
        return (
            f"rows read: {self.rows_read}, kept: {self.rows_kept}, "
            f"dropped: {sum(self.dropped.values())} ({reasons or 'none'})"
        )


def clean_row(raw: dict[str, str | None]) -> tuple[dict | None, str | None]:
    """Clean one raw row. Returns (processed row, None) or (None, drop reason)."""
    name = clean_name(raw.get("name"))
    if not name:
        return None, "missing_name"
    main_category = clean_text(raw.get("main_category"))
    sub_category = clean_text(raw.get("sub_category"))
    if not main_category or not sub_category:
        return None, "missing_category"
    link = clean_text(raw.get("link"))
    product_id = product_id_from_link(link)
    if product_id is None:
        return None, "missing_link"
    discount_price = parse_price(raw.get("discount_price"))
    actual_price = parse_price(raw.get("actual_price"))
    if actual_price is None and discount_price is not None:
        # A listing shows one price when there is no discount.
        actual_price = discount_price
    return {
        "id": product_id,
        "name": name,
        "main_category": main_category,
        "sub_category": sub_category,
        "image": clean_text(raw.get("image")),
        "link": link,
        "ratings": parse_rating(raw.get("ratings")),
        "no_of_ratings": parse_rating_count(raw.get("no_of_ratings")),
        "discount_price": discount_price,
        "actual_price": actual_price,
        "discount_ratio": compute_discount_ratio(discount_price, actual_price),
    }, None


def iter_raw_rows(inputs: Iterable[Path]) -> Iterable[dict[str, str | None]]:
    """Rows of every CSV in `inputs` (files, or folders read in name order)."""
    for path in inputs:
        files = sorted(path.glob("*.csv")) if path.is_dir() else [path]
        for file in files:
            with file.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
                reader = csv.DictReader(handle)
                missing = REQUIRED_RAW_COLUMNS - set(reader.fieldnames or [])
                if missing:
                    raise ValueError(f"{file}: missing columns {sorted(missing)}")
                yield from reader


def clean_catalog(inputs: Iterable[Path], output: Path, progress: bool = False) -> CleaningSummary:
    """Clean `inputs` into `output`, keeping the first listing of each product id."""
    summary = CleaningSummary()
    seen_ids: set[str] = set()
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_suffix(".partial")
    with partial.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=PROCESSED_COLUMNS)
        writer.writeheader()
        for raw in tqdm(iter_raw_rows(inputs), disable=not progress, unit="row"):
            summary.rows_read += 1
            if None in raw:  # csv puts surplus fields under the None key
                summary.dropped["malformed"] += 1
                continue
            row, reason = clean_row(raw)
            if row is None:
                summary.dropped[reason] += 1
                continue
            if row["id"] in seen_ids:
                summary.dropped["duplicate"] += 1
                continue
            seen_ids.add(row["id"])
            writer.writerow(row)
            summary.rows_kept += 1
    partial.replace(output)  # readers never see a half-written catalog
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", type=Path, nargs="+", required=True, help="CSV files or folders")
    parser.add_argument(
        "--output", type=Path, default=Path("data/processed/Amazon-Products-Optimized.csv")
    )
    args = parser.parse_args()
    summary = clean_catalog(args.input, args.output, progress=True)
    print(summary)


if __name__ == "__main__":
    main()
