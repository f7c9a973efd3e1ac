"""Behaviour simulator: realistic interaction logs, written straight into the database with COPY.

    python -m ml.simulate --users 100000 --events 5000000 --days 60 --seed 7

Shoppers have latent preferences: a few favourite main categories, a favourite brand in each, and
a price level. They shop in sessions (more in the evening) that mostly stay in one sub-category:
a search first (sub-category words, words of product names, synonyms from the synonyms file, the
odd typo), then clicks, sometimes on to a complementary sub-category (phone -> case and charger ->
...), so co-click rules have real structure to find. Product popularity is Zipf-like and drifts:
some products rise and fade around a peak day, so trending matters. A share of the users are new,
active only in the last two weeks. Deterministic for a given --seed and catalog.

Events go to the global log and to each user's own table, as the API would have stored them.
"""

import argparse
import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from tqdm import tqdm

from config.settings import get_settings
from database.migrations import apply_migrations
from database.pool import create_pool
from database.server import database_url
from database.simulation import copy_events_to_log, write_user_tables
from database.training import fetch_catalog
from services.search import STOP_WORDS
from services.synonyms import Synonyms, words

# Sub-categories shoppers go on to after a click in the key (complementary products).
COMPLEMENTS = {
    "Smartphones": ["Mobile Accessories", "Smart Watches", "Headphones"],
    "Mobile Accessories": ["Smartphones"],
    "Laptops": ["Computer Accessories", "Backpacks"],
    "Tablets": ["Computer Accessories", "Mobile Accessories"],
    "Gaming": ["Computer Accessories", "Headphones"],
    "Televisions": ["Home Audio and Theater", "Speakers"],
    "Cameras": ["Camera Accessories"],
    "Camera Accessories": ["Cameras"],
    "Sports Shoes": ["Sportswear", "Running"],
    "Womens Sports Shoes": ["Sportswear", "Yoga"],
    "Running": ["Sports Shoes", "Fitness Accessories"],
    "Cricket": ["Sportswear"],
    "Strength Training": ["Diet and Nutrition", "Fitness Accessories"],
    "Shirts": ["Jeans", "Formal Shoes"],
    "Jeans": ["T-shirts and Polos", "Casual Shoes"],
    "Ethnic Wear": ["Fashion and Silver Jewellery", "Fashion Sandals"],
    "Western Wear": ["Handbags and Clutches", "Ballerinas"],
    "Kitchen and Dining": ["Kitchen Storage and Containers"],
    "Coffee Tea and Beverages": ["Snack Foods", "Chocolates and Sweets"],
    "Diapers": ["Baby Bath Skin and Grooming", "Nursing and Feeding"],
    "Dog supplies": ["Cat Supplies"],
    "Suitcases and Trolley Bags": ["Travel Duffles", "Backpacks"],
    "Car Accessories": ["Car Electronics", "Car and Bike Care"],
    "Bedroom Linen": ["Home Furnishing"],
}
# Share of sessions per hour of day (UTC+5:30 shoppers: evenings busiest).
HOURLY = np.array([2, 1, 1, 1, 1, 1, 2, 3, 4, 5, 6, 6, 6, 6, 6, 6, 7, 8, 9, 9, 8, 6, 4, 3], float)
USER_TABLE_CONNECTIONS = 2  # creating 100k tables is PostgreSQL CPU: one connection per core
EVENT_COLUMNS = ["user_id", "event_type", "product_id", "query", "timestamp", "event_id"]


@dataclass
class SimulationConfig:
    users: int = 100_000
    events: int = 5_000_000
    days: int = 60
    seed: int = 7
    new_user_share: float = 0.15
    rising_share: float = 0.02  # products whose popularity rises and fades
    trend_share: float = 0.3  # clicks going to a currently rising product of the sub-category
    complement_rate: float = 0.3  # a click moving on to a complementary sub-category
    search_rate: float = 0.45  # sessions that start with a search


def simulate(
    catalog: pd.DataFrame,
    config: SimulationConfig,
    synonyms: Synonyms | None = None,
    end: datetime | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Events (EVENT_COLUMNS, timestamps as UTC datetimes), ordered by user and time."""
    rng = np.random.default_rng(config.seed)
    end_epoch = (end or datetime.now(UTC)).timestamp()
    start_epoch = end_epoch - config.days * 86400
    world = _World(catalog, rng, config)
    with tqdm(total=5, desc="simulate", disable=not progress) as bar:
        shoppers = _shoppers(world, rng, config)
        bar.update()
        sessions = _sessions(world, shoppers, rng, config)
        bar.update()
        steps = _steps(world, sessions, rng, config)
        bar.update()
        products = _pick_products(world, shoppers, sessions, steps, rng, config)
        bar.update()
        queries = _queries(world, steps, rng, synonyms)
        bar.update()
    epoch = start_epoch + steps["day"] * 86400 + steps["offset"]
    is_search = steps["search"]
    order = np.lexsort((epoch, steps["user"]))
    user_ids = np.char.add("sim_", steps["user"].astype(str))
    frame = pd.DataFrame(
        {
            "user_id": user_ids[order],
            "event_type": np.where(is_search, "search_query", "product_click")[order],
            "product_id": np.where(is_search, None, world.ids[products])[order],
            "query": np.where(is_search, queries, None)[order],
            "timestamp": pd.to_datetime(epoch[order], unit="s", utc=True),
            "event_id": [f"sim{config.seed}-{i}" for i in range(len(order))],
        }
    )
    for column in ("product_id", "query"):  # missing text as None, as the database returns it
        frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    return frame[frame["timestamp"] <= pd.Timestamp(end_epoch, unit="s", tz="UTC")]


class _World:
    """The catalog as arrays: sub-categories, their mains and members, prices, brands,
    base popularity and the rising products."""

    def __init__(self, catalog: pd.DataFrame, rng: np.random.Generator, config):
        self.ids = catalog["id"].to_numpy(dtype=object)
        self.sub_names, self.sub_of = np.unique(
            catalog["sub_category"].to_numpy(str), return_inverse=True
        )
        self.main_names, main_of = np.unique(
            catalog["main_category"].to_numpy(str), return_inverse=True
        )
        self.main_of_sub = np.zeros(len(self.sub_names), np.int64)
        self.main_of_sub[self.sub_of] = main_of
        self.subs_of_main = [
            np.flatnonzero(self.main_of_sub == m) for m in range(len(self.main_names))
        ]
        self.members = [np.flatnonzero(self.sub_of == s) for s in range(len(self.sub_names))]
        price = catalog["discount_price"].fillna(catalog["actual_price"]).to_numpy(float)
        self.log_price = np.log(np.where(np.isfinite(price) & (price > 0), price, 500.0))
        self.sub_log_price = np.array([np.median(self.log_price[m]) for m in self.members])
        brands = catalog["name"].str.split(n=1).str[0].fillna("").to_numpy(str)
        self.brand_names, self.brand_of = np.unique(brands, return_inverse=True)
        # Zipf-like popularity within each sub-category (rank order at random).
        self.weight = np.zeros(len(self.ids))
        for m in self.members:
            ranks = rng.permutation(len(m)) + 1
            self.weight[m] = 1.0 / ranks**1.1
        self.sub_weight = np.array([self.weight[m].sum() for m in self.members]) ** 0.5
        rising = rng.random(len(self.ids)) < config.rising_share
        self.rising = [m[rising[m]] for m in self.members]
        self.peak_day = rng.uniform(0, config.days, len(self.ids))
        self.peak_width = rng.uniform(2, 8, len(self.ids))
        self.names = catalog["name"].fillna("").to_numpy(str)


def _shoppers(world: _World, rng, config) -> dict[str, np.ndarray]:
    n_mains = len(world.main_names)
    prefs = rng.dirichlet(np.full(n_mains, 0.3), config.users)  # a few favourite mains each
    new = rng.random(config.users) < config.new_user_share
    first_day = np.where(new, rng.uniform(max(config.days - 14, 0), config.days, config.users), 0)
    return {
        "pref_cdf": np.cumsum(prefs, axis=1),
        "first_day": first_day,
        "activity": rng.lognormal(0, 1, config.users),
        "price_shift": rng.normal(0, 0.4, config.users),  # log price vs the sub-category median
        "brand": rng.integers(0, len(world.brand_names), (config.users, n_mains)),
    }


def _sessions(world: _World, shoppers, rng, config) -> dict[str, np.ndarray]:
    n = max(config.events // 4, 1)
    activity = shoppers["activity"] * (config.days - shoppers["first_day"]) / config.days
    user = rng.choice(config.users, n, p=activity / activity.sum())
    first = shoppers["first_day"][user]
    day = np.floor(first + rng.random(n) * (config.days - first))
    hour = rng.choice(24, n, p=HOURLY / HOURLY.sum())
    main = (shoppers["pref_cdf"][user] < rng.random(n)[:, None]).sum(axis=1)
    main = np.minimum(main, len(world.main_names) - 1)
    sub = np.empty(n, np.int64)
    for m, subs in enumerate(world.subs_of_main):
        where = np.flatnonzero(main == m)
        weights = world.sub_weight[subs]
        sub[where] = rng.choice(subs, len(where), p=weights / weights.sum())
    length = np.minimum(1 + rng.poisson(3, n), 12)
    return {"user": user, "day": day, "hour": hour, "main": main, "sub": sub, "length": length}


def _steps(world: _World, sessions, rng, config) -> dict[str, np.ndarray]:
    """One row per event: user, day, seconds into the day, sub-category, search or click."""
    length = sessions["length"]
    session = np.repeat(np.arange(len(length)), length)
    position = np.arange(len(session)) - np.repeat(np.cumsum(length) - length, length)
    complements = {
        np.searchsorted(world.sub_names, k): [np.searchsorted(world.sub_names, v) for v in vs]
        for k, vs in COMPLEMENTS.items()
        if k in world.sub_names
        for vs in [[v for v in vs if v in world.sub_names]]
        if vs
    }
    sub = sessions["sub"][session].copy()
    # Walk the session: each click may move on to a complement of the previous click's category.
    move = rng.random(len(session)) < config.complement_rate
    for step in range(1, int(length.max(initial=1))):
        at = np.flatnonzero(position == step)
        sub[at] = sub[at - 1]
        moving = at[move[at]]
        for source, targets in complements.items():
            hit = moving[sub[moving] == source]
            sub[hit] = rng.choice(targets, len(hit))
    search = (position == 0) & (rng.random(len(session)) < config.search_rate)
    search |= (position > 0) & (rng.random(len(session)) < 0.05)  # a refined search mid-session
    gaps = rng.exponential(70, len(session)) + 10  # seconds between events
    start = sessions["hour"][session] * 3600 + rng.uniform(0, 3600, len(session))
    offset = (
        start + np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[np.cumsum(length) - length], length)
    )
    return {
        "session": session,
        "user": sessions["user"][session],
        "day": sessions["day"][session],
        "offset": offset,
        "sub": sub,
        "search": search,
    }


def _pick_products(world: _World, shoppers, sessions, steps, rng, config) -> np.ndarray:
    """A product per event: popular, near the shopper's price level, often the favourite brand,
    and in trend_share of clicks one of the sub-category's currently rising products."""
    chosen = np.zeros(len(steps["sub"]), np.int64)
    user = steps["user"]
    per_click = 4  # candidates drawn by popularity, the best fit for the shopper is clicked
    for s, members in enumerate(world.members):
        where = np.flatnonzero(steps["sub"] == s)
        if len(where) == 0 or len(members) == 0:
            continue
        weights = world.weight[members] / world.weight[members].sum()
        candidates = members[rng.choice(len(members), (len(where), per_click), p=weights)]
        target = world.sub_log_price[s] + shoppers["price_shift"][user[where]]
        fit = -np.abs(world.log_price[candidates] - target[:, None])
        favourite = shoppers["brand"][user[where], world.main_of_sub[s]]
        fit += 0.7 * (world.brand_of[candidates] == favourite[:, None])
        chosen[where] = candidates[np.arange(len(where)), np.argmax(fit, axis=1)]
        rising = world.rising[s]
        trendy = where[rng.random(len(where)) < config.trend_share]
        if len(rising) and len(trendy):
            day = steps["day"][trendy]
            closeness = (day[:, None] - world.peak_day[rising]) / world.peak_width[rising]
            heat = np.exp(-0.5 * closeness**2) + 1e-9
            cdf = np.cumsum(heat, axis=1)
            pick = (cdf < rng.random(len(trendy))[:, None] * cdf[:, -1:]).sum(axis=1)
            chosen[trendy] = rising[np.minimum(pick, len(rising) - 1)]
    return chosen


def _queries(world: _World, steps, rng, synonyms: Synonyms | None) -> np.ndarray:
    """Search text for search events: sub-category words or two words of a popular product's
    name, sometimes swapped for a synonym, sometimes with a typo."""
    queries = np.full(len(steps["sub"]), None, dtype=object)
    where = np.flatnonzero(steps["search"])
    for s in np.unique(steps["sub"][where]):
        events = where[steps["sub"][where] == s]
        members = world.members[s]
        if len(members) == 0:
            continue
        popular = members[np.argsort(-world.weight[members])[:20]]
        phrases = [" ".join(words(world.sub_names[s]))]
        for name in world.names[popular]:
            name_words = [
                w for w in words(name)[1:] if w.isalpha() and len(w) > 2 and w not in STOP_WORDS
            ]
            if len(name_words) >= 2:
                phrases.append(" ".join(name_words[-2:]))
        phrases += [
            alternative
            for phrase in list(phrases)
            for concept in (synonyms.expand(phrase).expansions if synonyms else [])
            for alternative in concept.alternatives
        ]
        picks = rng.integers(0, len(phrases), len(events))
        texts = [phrases[p] for p in picks]
        typo = rng.random(len(events)) < 0.05
        for i in np.flatnonzero(typo):
            text = texts[i]
            if len(text) > 4:
                cut = int(rng.integers(1, len(text) - 1))
                texts[i] = text[:cut] + text[cut + 1 :]
        queries[events] = texts
    return queries


async def _main(config: SimulationConfig, progress: bool) -> None:
    settings = get_settings()
    synonyms = Synonyms.load(settings.synonyms_path) if settings.synonyms_path.exists() else None
    with database_url(settings.database_url, settings.pgdata_dir) as url:
        pool = await create_pool(url, min_size=1, max_size=USER_TABLE_CONNECTIONS + 1)
        try:
            async with pool.acquire() as conn:
                await apply_migrations(conn)
                catalog = await fetch_catalog(conn=conn)
                if catalog.empty:
                    raise SystemExit("the catalog is empty: import products first")
                started = time.perf_counter()
                events = simulate(catalog, config, synonyms, progress=progress)
                generated = time.perf_counter() - started
                started = time.perf_counter()
                await copy_events_to_log(conn=conn, events=events)
                logged = time.perf_counter() - started
            started = time.perf_counter()
            tables = await write_user_tables(
                pool=pool, events=events, concurrency=USER_TABLE_CONNECTIONS, progress=progress
            )
            per_user = time.perf_counter() - started
        finally:
            await pool.close()
    clicks = int((events["event_type"] == "product_click").sum())
    print(
        f"simulated {len(events):,} events ({clicks:,} clicks, {len(events) - clicks:,} searches) "
        f"of {events['user_id'].nunique():,} users over {config.days} days: generated in "
        f"{generated:.1f} s, log COPY {logged:.1f} s, {tables:,} user tables {per_user:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    defaults = SimulationConfig()
    parser.add_argument("--users", type=int, default=defaults.users)
    parser.add_argument("--events", type=int, default=defaults.events)
    parser.add_argument("--days", type=int, default=defaults.days)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--new-user-share", type=float, default=defaults.new_user_share)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    config = SimulationConfig(
        users=args.users,
        events=args.events,
        days=args.days,
        seed=args.seed,
        new_user_share=args.new_user_share,
    )
    asyncio.run(_main(config, progress=not args.no_progress))


if __name__ == "__main__":
    main()
