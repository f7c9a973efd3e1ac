"""Generate a raw Amazon-India-style products CSV of any size, messy the way the real file is.

    python -m ml.generate_catalog --rows 550000 --out data/raw/Amazon-Products-Raw.csv

Rows carry ₹ prices with Indian digit grouping, empty or junk numeric fields ("Get", "FREE",
"FREE Delivery by Amazon"), names truncated with "...", stray whitespace, non-ASCII text and the
same product repeated under another sub-category. Deterministic for a given --seed.
"""

import argparse
import csv
import random
import string
from collections import deque
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from database.products import RAW_COLUMNS
from ml.catalog_taxonomy import TAXONOMY

SERIES = ["Pro", "Lite", "Max", "Neo", "Air", "Plus", "Ultra", "Prime", "Edge", "Nova", "Classic"]
COLOURS = ["Black", "Blue", "Red", "White", "Grey", "Green", "Rose Gold", "Navy", "Beige", "Pink"]
NON_ASCII_SUFFIXES = ["– Café Edition", "(हिंदी पैक)", "— Naïve Series", "Größe M", "™"]
JUNK_RATINGS = ["Get", "FREE"]
JUNK_RATING_COUNTS = ["FREE Delivery by Amazon", "Only 2 left in stock.", "Only 1 left in stock."]
# Typical price (₹) per main category; individual products vary log-normally around it.
PRICE_LEVEL = {
    "appliances": 25000,
    "tv, audio & cameras": 4000,
    "mobiles & electronics": 12000,
    "home & kitchen": 900,
    "men's clothing": 800,
    "women's clothing": 900,
    "men's shoes": 1800,
    "women's shoes": 1200,
    "sports & fitness": 1200,
    "beauty & health": 450,
    "grocery & gourmet foods": 350,
    "bags & luggage": 1800,
    "accessories": 1500,
    "toys & baby products": 700,
    "kids' fashion": 600,
    "car & motorbike": 900,
    "pet supplies": 600,
    "industrial supplies": 700,
    "music": 5000,
    "garden & outdoors": 500,
}
MAX_NAME_LENGTH = 75  # the real data truncates long names with "..."


def indian_rupees(amount: float) -> str:
    """Format like the real file: ₹9,99,999 (last three digits, then groups of two)."""
    digits = str(int(round(amount)))
    head, tail = digits[:-3], digits[-3:]
    groups = []
    while len(head) > 2:
        groups.insert(0, head[-2:])
        head = head[:-2]
    if head:
        groups.insert(0, head)
    return "₹" + ",".join([*groups, tail]) if groups else "₹" + tail


def _asin(rng: random.Random) -> str:
    return "B0" + "".join(rng.choices(string.ascii_uppercase + string.digits, k=8))


def _product_name(rng: random.Random, brand: str, attrs: list[str], product_type: str) -> str:
    first, second = rng.sample(attrs, 2)
    name = f"{brand} {rng.choice(SERIES)} {rng.randint(1, 99)} {first} {product_type} {second}"
    if rng.random() < 0.6:
        name += f", {rng.choice(COLOURS)}"
    if rng.random() < 0.4:
        name += f" ({rng.choice(['Pack of 1', 'Pack of 2', 'Large', 'Medium', 'Free Size'])})"
    if rng.random() < 0.02:
        name += " " + rng.choice(NON_ASCII_SUFFIXES)
    if len(name) > MAX_NAME_LENGTH:
        name = name[: MAX_NAME_LENGTH - 3].rstrip() + "..."
    return name


def _messy(rng: random.Random, text: str) -> str:
    """Sprinkle the stray whitespace real scraped data has."""
    roll = rng.random()
    if roll < 0.02:
        return f"  {text} "
    if roll < 0.04:
        return text.replace(" ", "  ", 1)
    return text


def generate_rows(rows: int, seed: int = 7) -> Iterator[list[str]]:
    """Yield `rows` raw CSV rows (without header)."""
    rng = random.Random(seed)
    leaves = [
        (main, sub, types, brands, attrs)
        for main, (brands, attrs, subs) in TAXONOMY.items()
        for sub, types in subs.items()
    ]
    # Some sub-categories are much bigger than others, as in the real catalog.
    leaf_weights = [rng.paretovariate(1.5) for _ in leaves]
    recent: deque[list[str]] = deque(maxlen=500)
    for position in range(rows):
        if recent and rng.random() < 0.04:
            # The same product listed again, often under another sub-category of its category.
            repeated = list(rng.choice(recent))
            siblings = [leaf[1] for leaf in leaves if leaf[0] == repeated[1].strip()]
            repeated[2] = rng.choice(siblings) if siblings else repeated[2]
            yield repeated
            continue
        main, sub, types, brands, attrs = rng.choices(leaves, weights=leaf_weights)[0]
        product_type = rng.choice(types)
        brand = rng.choice(brands)
        name = _product_name(rng, brand, attrs, product_type)
        asin = _asin(rng)
        slug = "-".join(name.replace(",", "").split()[:5])
        link = (
            f"https://www.amazon.in/{slug}/dp/{asin}/ref=sr_1_{position % 48 + 1}"
            f"?qid={1679100000 + position}&s=all&sr=1-{position % 48 + 1}"
        )
        image = (
            f"https://m.media-amazon.com/images/I/{asin[2:]}{rng.randint(10, 99)}L._AC_UL320_.jpg"
        )

        actual = max(49.0, PRICE_LEVEL[main] * rng.lognormvariate(0, 0.6))
        discount = actual * (1 - rng.choice([0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]))
        actual_text, discount_text = indian_rupees(actual), indian_rupees(discount)
        price_roll = rng.random()
        if price_roll < 0.04:
            actual_text = discount_text = ""
        elif price_roll < 0.07:
            discount_text = ""

        rating_text = f"{min(5.0, max(1.0, rng.gauss(4.0, 0.45))):.1f}"
        count_text = f"{int(rng.lognormvariate(5, 2)):,}"
        rating_roll = rng.random()
        if rating_roll < 0.04:
            rating_text = count_text = ""
        elif rating_roll < 0.05:
            rating_text = rng.choice(JUNK_RATINGS)
        elif rating_roll < 0.06:
            count_text = rng.choice(JUNK_RATING_COUNTS)

        row = [
            _messy(rng, name),
            main,
            _messy(rng, sub),
            image,
            link,
            rating_text,
            count_text,
            discount_text,
            actual_text,
        ]
        recent.append(row)
        yield row


def write_catalog(path: Path, rows: int, seed: int = 7, progress: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(RAW_COLUMNS)
        for row in tqdm(generate_rows(rows, seed), total=rows, disable=not progress, unit="row"):
            writer.writerow(row)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=5000, help="rows to write (default 5000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("data/raw/Amazon-Products-Raw.csv"))
    args = parser.parse_args()
    write_catalog(args.out, args.rows, args.seed, progress=True)
    print(f"wrote {args.rows} rows to {args.out}")


if __name__ == "__main__":
    main()
