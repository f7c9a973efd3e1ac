"""The catalog held in memory for serving: product fields by position, category indexes."""

import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from rapidfuzz import process

from services.popularity import popularity_prior
from services.query_words import stems

TOP_PER_CATEGORY = 200
PRODUCT_CACHE_SIZE = 20_000  # product dicts kept per catalog (about 1 KB each)
NAMED_SUB_CATEGORIES_CACHED = 20_000


class ProductFields:
    """The response's product fields of any positions as plain Python values, read straight
    from the Arrow buffers: a string is a slice of its column's data (a repeated one, like a
    category, one shared str), a number an element of a NumPy view. Arrow's own
    `take(...).to_pylist()` costs ~200 us a call whatever its size (at 550k products most feeds
    meet a product not in the cache); this costs a few us a product and copies no column."""

    def __init__(self, table: pa.Table):
        self.names = table.column_names
        self._columns = [self._column(_one_array(column)) for column in table.columns]

    @staticmethod
    def _column(column: pa.Array) -> tuple[str, np.ndarray, object, np.ndarray | None]:
        """(kind, array, extra, valid): valid is None when nothing is missing."""
        valid = np.asarray(column.is_valid()) if column.null_count else None
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            # Judged on a sample: counting a long text column's distinct values takes ~0.3 s.
            sample = column.take(np.linspace(0, len(column) - 1, min(len(column), 4096), dtype=int))
            if pc.count_distinct(sample).as_py() * REPEATED_SHARE <= len(sample):
                codes, names, _ = _codes(pa.chunked_array([column]))  # -1 (missing): the None
                return "coded", codes, np.append(names, None), None
            # Offsets as they are (int32 for string, int64 for large_string): no copy of the text.
            width = np.int64 if pa.types.is_large_string(column.type) else np.int32
            _, offsets, data = column.buffers()
            offsets = np.frombuffer(offsets, width)[column.offset :][: len(column) + 1]
            return "text", offsets, memoryview(data if data is not None else b""), valid
        # Filled before the NumPy view: an integer column with nulls would come out as floats.
        filled = pc.fill_null(column, 0) if column.null_count else column
        return "number", filled.to_numpy(zero_copy_only=False), None, valid

    def rows(self, positions: list[int]) -> list[dict]:
        at = np.asarray(positions, np.int64)
        values = []
        for kind, array, extra, valid in self._columns:
            if kind == "text":  # the bytes between two offsets
                column = [
                    str(extra[start:end], "utf-8")
                    for start, end in zip(array[at].tolist(), array[at + 1].tolist(), strict=True)
                ]
            elif kind == "coded":
                column = extra[array[at]].tolist()
            else:
                column = array[at].tolist()
            if valid is not None:  # missing values are rare: replaced one by one
                for row in np.flatnonzero(~valid[at]).tolist():
                    column[row] = None
            values.append(column)
        return [dict(zip(self.names, row, strict=True)) for row in zip(*values, strict=True)]


def _one_array(column: pa.ChunkedArray) -> pa.Array:
    """The column as one array: its only chunk as it is. ChunkedArray.combine_chunks copies even
    a single chunk: at 551,783 products that was ~180 MB of text per worker."""
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


# A string column is read as codes of its distinct values when each value repeats this often
# on average (categories: a few hundred values over the catalog).
REPEATED_SHARE = 8


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer code of each value (-1: missing), the distinct values, and each value as the
    distinct value's one str object (None when missing)."""
    encoded = pc.dictionary_encode(_one_array(column))
    names = encoded.dictionary.to_numpy(zero_copy_only=False).astype(object)
    codes = encoded.indices.fill_null(-1).to_numpy().astype(np.int64)
    return codes, names, np.append(names, None)[codes]


@dataclass
class Catalog:
    frame: pd.DataFrame  # one row per product, ordered by id
    popularity: np.ndarray  # catalog prior, 0..1
    # (product id, main category, sub-category) listings beyond each product's own columns: the
    # real data lists one product under several categories, and filters must see all of them.
    listings: list[tuple[str, str, str]] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)  # merged listing id -> product id
    position_of: dict[str, int] = field(init=False)  # product ids and aliases
    listed_under: dict[str, np.ndarray] = field(init=False)  # category -> positions (listings)
    ids: np.ndarray = field(init=False)  # product id by position
    main_category: np.ndarray = field(init=False)
    sub_category: np.ndarray = field(init=False)
    price: np.ndarray = field(init=False)
    rating: np.ndarray = field(init=False)
    log_rating_count: np.ndarray = field(init=False)
    discount: np.ndarray = field(init=False)
    price_tier: np.ndarray = field(init=False)
    brand: np.ndarray = field(init=False)
    # Integer codes of main_category, sub_category and brand (for per-user shares as arrays).
    main_category_code: np.ndarray = field(init=False)
    sub_category_code: np.ndarray = field(init=False)
    main_category_names: np.ndarray = field(init=False)  # the category of each code
    sub_category_names: np.ndarray = field(init=False)
    main_category_code_of: dict[str, int] = field(init=False)  # name -> code
    sub_category_code_of: dict[str, int] = field(init=False)
    brand_code: np.ndarray = field(init=False)
    top_by_category: dict[str, np.ndarray] = field(init=False)
    # Listings of one product (colours, sizes, the same item under several ids) share a group:
    # lists show each group once.
    product_group: np.ndarray = field(init=False)
    # Casefolded main or sub-category name -> the catalog's names it stands for.
    category_names_of: dict[str, tuple[str, ...]] = field(init=False)
    _products: ProductFields = field(init=False, repr=False)  # the response's product fields
    _product_cache: dict[int, dict] = field(init=False, repr=False)
    _listed_sets: dict[str, frozenset[int]] = field(init=False, repr=False)
    # A search's phrases -> the codes of the sub-categories they name (searches come back).
    _named_cache: dict[tuple, list[int]] = field(init=False, repr=False)

    def __post_init__(self):
        # Arrow columns: the frame's own buffers when it was read with Arrow strings (serving),
        # converted once otherwise. No Python object per value: at 550k products those were
        # most of a worker's memory.
        table = pa.Table.from_pandas(self.frame, preserve_index=False).combine_chunks()
        arrow_backed = {
            name: pd.arrays.ArrowExtensionArray(table[name])
            for name, dtype in self.frame.dtypes.items()
            if isinstance(dtype, pd.ArrowDtype)
        }
        if arrow_backed:  # one chunk per column (take() is fast), and not a second copy
            self.frame = self.frame.assign(**arrow_backed)
        self.ids = table["id"].to_numpy(zero_copy_only=False)
        self.position_of = dict(zip(self.ids.tolist(), range(len(self.ids)), strict=True))
        for alias, product_id in self.aliases.items():
            if product_id in self.position_of and alias not in self.position_of:
                self.position_of[alias] = self.position_of[product_id]
        listed = defaultdict(set)
        listed_main = []  # (position, main category) pairs of the extra listings
        for product_id, main, sub in self.listings:
            position = self.position_of.get(product_id)
            if position is not None:
                listed[main].add(position)
                listed[sub].add(position)
                listed_main.append((position, main))
        self.listed_under = {c: np.array(sorted(p), np.int64) for c, p in listed.items()}
        self._listed_sets = {c: frozenset(p) for c, p in listed.items()}
        # Per product, its category's one shared str (an object array of the distinct values).
        self.main_category_code, self.main_category_names, self.main_category = _codes(
            table["main_category"]
        )
        self.sub_category_code, self.sub_category_names, self.sub_category = _codes(
            table["sub_category"]
        )
        self.main_category_code_of = {n: c for c, n in enumerate(self.main_category_names)}
        self.sub_category_code_of = {n: c for c, n in enumerate(self.sub_category_names)}
        names_of = defaultdict(set)
        for name in [*self.main_category_names, *self.sub_category_names, *listed]:
            names_of[name.casefold()].add(name)
        self.category_names_of = {k: tuple(sorted(v)) for k, v in names_of.items()}
        # The price a shopper pays: the discount price when there is one.
        self.price = self.frame["discount_price"].fillna(self.frame["actual_price"]).to_numpy()
        # Item features of the home ranker.
        self.rating = np.nan_to_num(self.frame["ratings"].to_numpy(dtype=float), nan=0.0)
        self.log_rating_count = np.log1p(
            np.nan_to_num(self.frame["no_of_ratings"].to_numpy(dtype=float), nan=0.0)
        )
        self.discount = np.nan_to_num(self.frame["discount_ratio"].to_numpy(dtype=float), nan=0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_price = np.log(np.where(self.price > 0, self.price, np.nan).astype(float))
        # Price tier: log price against the sub-category's median (a cheap phone and a cheap
        # case are both "cheap"); nan without a price.
        shelf = np.where(self.sub_category_code >= 0, self.sub_category_code, np.nan)
        median = pd.Series(log_price).groupby(shelf).transform("median")
        self.price_tier = log_price - median.to_numpy()
        self.product_group = product_groups(
            table["name"], self.price, self.frame["ratings"], self.frame["no_of_ratings"]
        )
        # The first word of the name: the brand on most listings ("boAt Airdopes 141 ...").
        first_word = pc.struct_field(pc.extract_regex(table["name"], r"^\s*(?P<word>\S*)"), [0])
        self.brand_code, _, self.brand = _codes(pc.fill_null(pc.utf8_lower(first_word), ""))
        # Stored as float32 (real): 3.6 arrives as 3.5999999046; six decimals give it back.
        columns = {
            name: pc.round(column, 6) if pa.types.is_floating(column.type) else column
            for name, column in zip(table.column_names, table.columns, strict=True)
        }
        columns["no_of_ratings"] = pc.cast(columns["no_of_ratings"], pa.int64())
        self._products = ProductFields(pa.table(columns))
        self._product_cache = {}
        self._named_cache = {}
        # Most popular first per main category, a product in each category it is listed under.
        positions = np.r_[np.arange(len(self.frame)), [p for p, _ in listed_main]].astype(np.int64)
        groups = np.r_[self.main_category, np.array([m for _, m in listed_main], dtype=object)]
        order = np.lexsort((positions, -self.popularity[positions]))
        self.top_by_category = {
            category: group[:TOP_PER_CATEGORY]
            for category, group in pd.Series(positions[order])
            .groupby(groups[order])
            .agg(lambda s: s.to_numpy())
            .items()
        }

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        listings: list[tuple[str, str, str]] | None = None,
        aliases: dict[str, str] | None = None,
    ) -> "Catalog":
        """The catalog with its popularity prior computed from the ratings."""
        return cls(
            frame,
            popularity_prior(frame["ratings"].to_numpy(), frame["no_of_ratings"].to_numpy()),
            listings or [],
            aliases or {},
        )

    def __len__(self) -> int:
        return len(self.frame)

    def product(self, position: int) -> dict:
        return self.products([position])[0]

    def products(self, positions: list[int]) -> list[dict]:
        """The product fields of each position, as plain Python values (None when missing).
        The dicts are shared (cached): callers copy before changing one."""
        cache = self._product_cache
        missing = [p for p in positions if p not in cache]
        if missing:
            # Reading costs ~5 us a product, a hit ~1 us; the same products come back in many feeds.
            if len(cache) + len(missing) > PRODUCT_CACHE_SIZE:
                cache.clear()
                missing = list(dict.fromkeys(positions))
            cache.update(zip(missing, self._products.rows(missing), strict=True))
        return [cache[p] for p in positions]

    def matching(
        self, positions: np.ndarray, categories: tuple[str, ...] | None, min_price, max_price
    ):
        """Which of `positions` pass the filters (`matches` over an array); `categories`: the
        catalog's names of one category (`resolve_category`), any of which passes."""
        keep = np.ones(len(positions), bool)
        if categories is not None:
            in_category = np.zeros(len(positions), bool)
            for category in categories:
                in_category |= (self.main_category[positions] == category) | (
                    self.sub_category[positions] == category
                )
                if category in self.listed_under:
                    in_category |= np.isin(positions, self.listed_under[category])
            keep &= in_category
        price = self.price[positions]
        with np.errstate(invalid="ignore"):
            if min_price is not None:
                keep &= price >= min_price
            if max_price is not None:
                keep &= price <= max_price
        return keep

    def matches(
        self, position: int, categories: tuple[str, ...] | None, min_price, max_price
    ) -> bool:
        if categories is not None and not any(
            category in (self.main_category[position], self.sub_category[position])
            or position in self._listed_sets.get(category, ())
            for category in categories
        ):
            return False
        price = self.price[position]
        if min_price is not None and not (price >= min_price):
            return False
        return max_price is None or price <= max_price

    def resolve_category(self, text: str) -> tuple[str, ...]:
        """The catalog's names of the main or sub-category `text` names, whatever its case.

        Raises UnknownCategory with the closest names when none matches."""
        names = self.category_names_of.get(text.strip().casefold())
        if names is None:
            raise UnknownCategory(text, self.close_categories(text))
        return names

    def close_categories(self, text: str, limit: int = 5) -> list[str]:
        """Display names of the categories whose names are closest to `text` (typos, parts)."""
        choices = {key: display_name(names[0]) for key, names in self.category_names_of.items()}
        found = process.extract(text.casefold(), list(choices), limit=limit, score_cutoff=60)
        return [choices[key] for key, _, _ in found]

    def distinct(self, candidates: list, exclude_groups: set[int] | None = None) -> list:
        """`candidates` with each product group once (its first listing kept), leaving out the
        groups of `exclude_groups` (e.g. the products already clicked, under any listing)."""
        taken = set(exclude_groups) if exclude_groups else set()
        groups = self.product_group[[c.position for c in candidates]].tolist()
        kept = []
        for candidate, group in zip(candidates, groups, strict=True):
            if group not in taken:
                taken.add(group)
                kept.append(candidate)
        return kept

    def groups_of(self, positions) -> set[int]:
        return {int(g) for g in self.product_group[np.fromiter(positions, np.int64)]}

    @cached_property
    def category_tree(self) -> list[dict]:
        """Main categories with their sub-categories, display names and product counts (a
        product counted once in each category it is listed under), largest first."""
        pairs = pd.DataFrame(
            {
                "position": np.arange(len(self.frame)),
                "main": self.main_category,
                "sub": self.sub_category,
            }
        )
        listed = pd.DataFrame(
            [(self.position_of[p], m, s) for p, m, s in self.listings if p in self.position_of],
            columns=["position", "main", "sub"],
        )
        pairs = pd.concat([pairs, listed]).dropna().drop_duplicates()
        per_main = pairs.groupby("main")["position"].nunique()
        per_sub = pairs.groupby(["main", "sub"])["position"].nunique()
        tree = []
        for main, count in per_main.sort_values(ascending=False, kind="stable").items():
            subs = per_sub[main].sort_values(ascending=False, kind="stable")
            tree.append(
                {
                    "name": main,
                    "display_name": display_name(main),
                    "products": int(count),
                    "sub_categories": [
                        {"name": sub, "display_name": display_name(sub), "products": int(n)}
                        for sub, n in subs.items()
                    ],
                }
            )
        return tree

    @cached_property
    def sub_category_of_stems(self) -> dict[tuple[str, ...], str]:
        return {stems(n.lower().split()): n for n in self.sub_category_names if n}

    def in_named_sub_categories(
        self, positions: np.ndarray, phrases: tuple[str, ...]
    ) -> np.ndarray:
        """Which of `positions` are in a sub-category one of `phrases` names, by stem
        ("refrigerator": Refrigerators)."""
        codes = self._named_sub_category_codes(phrases)
        if not codes or not len(positions):
            return np.zeros(len(positions), bool)
        return np.isin(self.sub_category_code[positions], codes)

    def _named_sub_category_codes(self, phrases: tuple[str, ...]) -> list[int]:
        codes = self._named_cache.get(phrases)
        if codes is None:
            found = (self.sub_category_of_stems.get(stems(p.lower().split())) for p in phrases)
            codes = [self.sub_category_code_of[n] for n in {name for name in found if name}]
            if len(self._named_cache) >= NAMED_SUB_CATEGORIES_CACHED:
                self._named_cache.clear()
            self._named_cache[phrases] = codes
        return codes

    def short_name(self, position: int) -> str:
        """The product's name cut to a few words, as reasons and labels show it."""
        return short_name(self.product(position)["name"])


# Tukey's "far out" fence: a markup beyond Q3 + 3 x IQR of its sub-category's is implausible.
FAR_OUT = 3.0
# Sub-categories with fewer priced products than this are judged against the whole catalog.
FENCE_MIN_PRODUCTS = 20
# And only a list price "many times" the selling price is doubted (two thirds off or more).
DOUBTED_MARKUP = 3.0


def implausible_discounts(
    discount_price: np.ndarray, actual_price: np.ndarray, sub_category: np.ndarray
) -> np.ndarray:
    """Which products claim a list price implausibly high for their selling price, judged by
    their own sub-category: log(list / selling price) above Tukey's far-out fence of the
    sub-category's (an HDMI cable at 399 "from 18,899"). Such a discount is not a deal."""
    with np.errstate(divide="ignore", invalid="ignore"):
        markup = np.log(np.asarray(actual_price, float) / np.asarray(discount_price, float))
    frame = pd.DataFrame({"markup": markup, "group": sub_category}).replace(
        [np.inf, -np.inf], np.nan
    )
    priced = frame.dropna()
    if priced.empty:
        return np.zeros(len(frame), bool)
    quartiles = priced.groupby("group")["markup"].quantile([0.25, 0.75]).unstack()
    counts = priced.groupby("group").size()
    overall = priced["markup"].quantile([0.25, 0.75]).to_numpy()
    fence = pd.Series(overall[1] + FAR_OUT * (overall[1] - overall[0]), index=quartiles.index)
    enough = counts[quartiles.index] >= FENCE_MIN_PRODUCTS
    own = quartiles[0.75] + FAR_OUT * (quartiles[0.75] - quartiles[0.25])
    fence[enough] = own[enough]
    limit = frame["group"].map(fence).fillna(fence.max()).to_numpy()
    markup = np.nan_to_num(frame["markup"].to_numpy(), nan=0.0)
    return (markup > limit) & (markup >= np.log(DOUBTED_MARKUP))


class UnknownCategory(ValueError):
    def __init__(self, text: str, close: list[str]):
        super().__init__(f"unknown category {text!r}")
        self.text = text
        self.close = close


# Listings of the same product line: the same leading words of the name at the same price
# (colours and sizes of one item), or the same name whatever the price, or the same brand and
# model words with the same rating from the same number of ratings (the shop pools the
# reviews of an item's variants: "boAt Bassheads 100 ... (Black)" and "... (White)").
GROUP_NAME_WORDS = 8
MODEL_WORDS = 3
POOLED_RATINGS = 10  # fewer ratings than this coincide too easily


def product_groups(
    names: pa.ChunkedArray | pa.Array, price: np.ndarray, ratings=None, rating_counts=None
) -> np.ndarray:
    """A group number per product: listings of one product share it (see GROUP_NAME_WORDS)."""
    lowered = pc.utf8_lower(pc.cast(pc.fill_null(names, ""), pa.string()))
    # Splitting at spaces and stripping punctuation from the head only: a regular expression
    # over every whole name costs seconds at 550k products.
    words = pc.split_pattern(lowered, " ", max_splits=GROUP_NAME_WORDS)
    head = pc.binary_join(pc.list_slice(words, 0, GROUP_NAME_WORDS), " ")
    head = pc.replace_substring_regex(head, r"[^\w ]+", "")
    trimmed = pc.utf8_trim_whitespace(lowered)
    by_name = _codes(pa.chunked_array([trimmed]))[0]
    head = _codes(pa.chunked_array([head]))[0]
    price_code = pd.factorize(price, use_na_sentinel=False)[0]
    by_line = np.unique(head * (price_code.max(initial=0) + 1) + price_code, return_inverse=True)[1]
    partitions = [by_name, by_line]
    if ratings is not None and rating_counts is not None:
        model = _codes(
            pa.chunked_array([pc.binary_join(pc.list_slice(words, 0, MODEL_WORDS), " ")])
        )[0]
        counts = np.nan_to_num(np.asarray(rating_counts, float), nan=0.0)
        rating_code = pd.factorize(np.asarray(ratings, float), use_na_sentinel=False)[0]
        count_code = pd.factorize(counts)[0]
        key = (model * (rating_code.max(initial=0) + 1) + rating_code) * (
            count_code.max(initial=0) + 1
        ) + count_code
        pooled = np.unique(key, return_inverse=True)[1]
        lone = np.flatnonzero(counts < POOLED_RATINGS)  # no pooled reviews to go by
        pooled[lone] = pooled.max(initial=0) + 1 + np.arange(len(lone))
        partitions.append(pooled)
    # A product without a name is nobody's other listing.
    unnamed = np.flatnonzero(np.asarray(pc.equal(trimmed, "")))
    for codes in partitions:
        codes[unnamed] = codes.max(initial=0) + 1 + np.arange(len(unnamed))
    # Union of the two partitions: each product takes the smallest label of either group,
    # repeated until no label moves (a chain of listings takes a few rounds).
    labels = np.arange(len(price), dtype=np.int64)
    while True:
        before = labels.copy()
        for codes in partitions:
            # The smallest label of each group: the first of each group after sorting by label.
            order = np.lexsort((labels, codes))
            first = np.r_[True, codes[order][1:] != codes[order][:-1]]
            smallest = np.empty(codes.max(initial=0) + 1, np.int64)
            smallest[codes[order][first]] = labels[order][first]
            labels = np.minimum(labels, smallest[codes])
        if np.array_equal(before, labels):
            return labels


SHORT_NAME_CHARS = 48


def short_name(name: str) -> str:
    """A name cut at a word boundary near SHORT_NAME_CHARS characters, with an ellipsis."""
    name = " ".join(name.split())
    if len(name) <= SHORT_NAME_CHARS:
        return name
    cut = name[:SHORT_NAME_CHARS].rsplit(" ", 1)[0].rstrip(" ,;:-(/|")
    return f"{cut}…"


_SMALL_WORDS = {"and", "or", "of", "for", "the", "in", "on", "with", "a", "an", "&"}


def display_name(category: str) -> str:
    """A category as shoppers read it: the catalog's lower-case main categories capitalised
    ("tv, audio & cameras" -> "TV, Audio & Cameras"); names that have capitals stay as they are."""
    if category != category.lower():
        return category
    words = []
    for i, word in enumerate(category.split(" ")):
        bare = re.sub(r"\W", "", word)
        if i > 0 and word in _SMALL_WORDS:
            words.append(word)
        elif 0 < len(bare) <= 2 and bare.isalpha():  # tv, ac: abbreviations
            words.append(word.upper())
        else:
            words.append(word[:1].upper() + word[1:])
    return " ".join(words)
