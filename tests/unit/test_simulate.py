"""The behaviour simulator on the small generated catalog: deterministic, and with the structure
the models are meant to find (complementary products, drifting popularity, new users)."""

from datetime import UTC, datetime

import pandas as pd
import pytest

from config.settings import Settings
from ml.simulate import SimulationConfig, simulate
from services.synonyms import Synonyms

END = datetime(2026, 11, 1, tzinfo=UTC)
CONFIG = SimulationConfig(users=400, events=20_000, days=30, seed=3)


@pytest.fixture(scope="module")
def catalog(catalog_csv) -> pd.DataFrame:
    return pd.read_csv(catalog_csv, dtype={"id": str})


@pytest.fixture(scope="module")
def events(catalog) -> pd.DataFrame:
    return simulate(catalog, CONFIG, Synonyms.load(Settings().synonyms_path), end=END)


def test_same_seed_same_log_other_seed_other_log(catalog, events):
    again = simulate(catalog, CONFIG, Synonyms.load(Settings().synonyms_path), end=END)
    pd.testing.assert_frame_equal(events, again)
    other = simulate(catalog, SimulationConfig(users=400, events=20_000, days=30, seed=4), end=END)
    assert not events["product_id"].equals(other["product_id"])


def test_volume_window_and_event_shapes(catalog, events):
    assert 17_000 < len(events) < 23_000
    assert events["timestamp"].min() >= pd.Timestamp(END) - pd.Timedelta(days=30)
    assert events["timestamp"].max() <= pd.Timestamp(END)
    clicks = events[events["event_type"] == "product_click"]
    searches = events[events["event_type"] == "search_query"]
    assert clicks["product_id"].isin(catalog["id"]).all() and clicks["query"].isna().all()
    assert searches["query"].str.len().gt(0).all() and searches["product_id"].isna().all()
    assert 0.08 < len(searches) / len(events) < 0.25
    assert events["event_id"].is_unique


def test_complementary_products_are_clicked_together(catalog, events):
    sub_of = catalog.set_index("id")["sub_category"]
    clicks = events[events["event_type"] == "product_click"].assign(
        sub=lambda f: f["product_id"].map(sub_of)
    )
    following = clicks.shift(-1)
    same_session = (following["user_id"] == clicks["user_id"]) & (
        (following["timestamp"] - clicks["timestamp"]) < pd.Timedelta(minutes=30)
    )
    transitions = clicks[same_session & (clicks["sub"] == "Smartphones")]
    next_subs = following.loc[transitions.index, "sub"].value_counts()
    after_a_phone = next_subs.get("Mobile Accessories", 0) / next_subs.sum()
    anywhere = (clicks["sub"] == "Mobile Accessories").mean()
    # A complement follows a phone in about a tenth of moves: far above its share of all clicks.
    assert after_a_phone > 3 * anywhere, (after_a_phone, anywhere)


def test_new_users_only_appear_in_the_last_two_weeks(events):
    first_seen = events.groupby("user_id")["timestamp"].min()
    late = first_seen > pd.Timestamp(END) - pd.Timedelta(days=14)
    assert 0.05 < late.mean() < 0.5  # the new-user share plus old users who came back late


def test_popularity_drifts(catalog, events):
    clicks = events[events["event_type"] == "product_click"]
    halves = clicks["timestamp"] < pd.Timestamp(END) - pd.Timedelta(days=15)
    top_early = set(clicks[halves]["product_id"].value_counts().index[:30])
    top_late = set(clicks[~halves]["product_id"].value_counts().index[:30])
    assert len(top_early & top_late) < 25  # the leaders change over time
