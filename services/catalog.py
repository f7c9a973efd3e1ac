"""The catalog held in memory for serving: product fields by position, category indexes."""

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from services.popularity import popularity_prior

TOP_PER_CATEGORY = 200


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
    brand_code: np.ndarray = field(init=False)
    top_by_category: dict[str, np.ndarray] = field(init=False)
    _columns: dict[str, list] = field(init=False, repr=False)
    _listed_sets: dict[str, frozenset[int]] = field(init=False, repr=False)

    def __post_init__(self):
        self.position_of = {pid: pos for pos, pid in enumerate(self.frame["id"])}
        self.ids = self.frame["id"].to_numpy(dtype=object)
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
        self.main_category = self.frame["main_category"].to_numpy(dtype=object)
        self.sub_category = self.frame["sub_category"].to_numpy(dtype=object)
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
        median = pd.Series(log_price).groupby(self.sub_category).transform("median").to_numpy()
        self.price_tier = log_price - median
        # The first word of the name: the brand on most listings ("boAt Airdopes 141 ...").
        self.brand = (
            self.frame["name"].str.split(n=1).str[0].str.lower().fillna("").to_numpy(dtype=object)
        )
        self.main_category_code, self.main_category_names = pd.factorize(self.main_category)
        self.sub_category_code, self.sub_category_names = pd.factorize(self.sub_category)
        self.brand_code = pd.factorize(self.brand)[0]
        # Plain Python values per column: a response reads 20 rows, and pandas' row access
        # (iloc -> Series) cost more than building the rest of the response.
        # Stored as float32 (real): 3.6 arrives as 3.5999999046; six decimals give it back.
        self._columns = {
            column: [
                (None if np.isnan(v) else round(v, 6)) if isinstance(v, float) else v
                for v in values
            ]
            for column, values in self.frame.to_dict("list").items()
        }
        self._columns["no_of_ratings"] = [
            None if v is None else int(v) for v in self._columns["no_of_ratings"]
        ]
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
        return {column: values[position] for column, values in self._columns.items()}

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
