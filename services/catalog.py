"""The catalog held in memory for serving: product fields by position, category indexes."""

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from services.popularity import popularity_prior

TOP_PER_CATEGORY = 200
PRODUCT_CACHE_SIZE = 20_000  # product dicts kept per catalog (about 1 KB each)


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
    _products: ProductFields = field(init=False, repr=False)  # the response's product fields
    _product_cache: dict[int, dict] = field(init=False, repr=False)
    _listed_sets: dict[str, frozenset[int]] = field(init=False, repr=False)

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

    def matching(self, positions: np.ndarray, category: str | None, min_price, max_price):
        """Which of `positions` pass the filters (`matches` over an array)."""
        keep = np.ones(len(positions), bool)
        if category is not None:
            in_category = (self.main_category[positions] == category) | (
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

    def matches(self, position: int, category: str | None, min_price, max_price) -> bool:
        if (
            category is not None
            and category not in (self.main_category[position], self.sub_category[position])
            and position not in self._listed_sets.get(category, ())
        ):
            return False
        price = self.price[position]
        if min_price is not None and not (price >= min_price):
            return False
        return max_price is None or price <= max_price
