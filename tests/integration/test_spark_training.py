"""The Spark training path (Spark in local mode, Java 17) computes the same event models as the
local path from a Parquet export of the same log, and a version trained on it serves."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from database.training import fetch_catalog, fetch_events
from ml.export_events import export_events
from ml.simulate import SimulationConfig
from ml.spark_training import SparkEventModels, spark_session
from ml.train import EVENT_MODELS, local_event_models, train
from services.artifacts import load_version
from tests.conftest import store_simulated_log

EXACT = (
    "sessions_session_indptr",
    "sessions_session_items",
    "sessions_item_indptr",
    "sessions_item_sessions",
    "sessions_item_positions",
    "sessions_log_clicks",
    "sessions_week_log_clicks",
    "coclick_indptr",
    "coclick_indices",
    "coclick_scores",
)


def assert_same_neighbours(local: dict, spark: dict, prefix: str, rtol: float) -> None:
    """Same lists, scores within `rtol`; where two scores are that close their order (and, at the
    k-th place, which of them made the list) may differ."""
    indptr = local[f"{prefix}_indptr"]
    np.testing.assert_array_equal(indptr, spark[f"{prefix}_indptr"])
    for row in range(len(indptr) - 1):
        span = slice(indptr[row], indptr[row + 1])
        ours = dict(
            zip(local[f"{prefix}_indices"][span], local[f"{prefix}_scores"][span], strict=True)
        )
        theirs = dict(
            zip(spark[f"{prefix}_indices"][span], spark[f"{prefix}_scores"][span], strict=True)
        )
        np.testing.assert_allclose(
            local[f"{prefix}_scores"][span], spark[f"{prefix}_scores"][span], rtol=rtol
        )
        for item in ours.keys() & theirs.keys():
            assert ours[item] == pytest.approx(theirs[item], rel=rtol)
        last = min(ours.values(), default=0.0)
        for item in ours.keys() ^ theirs.keys():  # only near ties at the end of the list
            score = ours.get(item, theirs.get(item))
            assert score == pytest.approx(last, rel=rtol), (prefix, row, item)


@pytest.fixture(scope="module")
def spark():
    session = spark_session("1g")
    yield session
    session.stop()


async def test_spark_event_models_equal_the_local_ones(
    database_url, conn, settings, tmp_path, spark
):
    await store_simulated_log(
        database_url, conn, SimulationConfig(users=300, events=30_000, days=30, seed=5)
    )
    now = datetime.now(UTC)
    since = now - timedelta(days=settings.training_window_days)
    exported = tmp_path / "events.parquet"
    assert await export_events(conn=conn, since=since, path=exported) > 0
    product_ids = (await fetch_catalog(conn=conn))["id"].to_numpy(dtype="U10")
    events = await fetch_events(conn=conn, since=since)
    clicks = events[events["event_type"] == "product_click"]

    local, _, local_counts = local_event_models(product_ids, clicks, settings)(now, EVENT_MODELS)
    engine = SparkEventModels(spark, spark.read.parquet(str(exported)), product_ids, settings)
    remote, _, remote_counts = engine(now, EVENT_MODELS)

    assert local_counts == remote_counts
    assert local_counts["co_click_rules"] > 50 and local_counts["sessions"] > 500
    assert set(local) == set(remote)
    for name in EXACT:
        np.testing.assert_array_equal(local[name], remote[name], err_msg=name)
    assert local["cf_indices"].size > 1000
    assert_same_neighbours(local, remote, "cf", rtol=1e-5)
    assert_same_neighbours(local, remote, "ease", rtol=1e-5)
    # A cut-off in the past (as the ranker's training uses) sees only the clicks before it.
    cutoff = now - timedelta(days=10)
    before, _, _ = local_event_models(product_ids, clicks, settings)(cutoff, ("sessions",))
    before_remote, _, _ = engine(cutoff, ("sessions",))
    for name in EXACT[:7]:
        np.testing.assert_array_equal(before[name], before_remote[name], err_msg=name)
    assert before["sessions_session_items"].size < local["sessions_session_items"].size


@pytest.mark.usefixtures("seeded_artifacts")
async def test_training_on_spark_publishes_the_local_paths_version(
    database_url, conn, settings, tmp_path
):
    await store_simulated_log(
        database_url, conn, SimulationConfig(users=150, events=12_000, days=25, seed=9)
    )
    now = datetime.now(UTC)
    exported = tmp_path / "events.parquet"
    await export_events(conn=conn, since=now - timedelta(days=60), path=exported)
    local = await train(conn=conn, settings=settings, now=now)
    on_spark = await train(
        conn=conn, settings=settings, now=now, engine="spark", events_path=str(exported)
    )
    assert on_spark.folder != local.folder
    _, ours = load_version(local.folder)
    _, theirs = load_version(on_spark.folder)
    assert set(ours) == set(theirs)
    for name in EXACT:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)
    assert_same_neighbours(ours, theirs, "cf", rtol=1e-5)
    # The ranker learnt from the same training table.
    assert local.counts["ranker_rows"] == on_spark.counts["ranker_rows"] > 0
    assert on_spark.counts["home_prepared_users"] == local.counts["home_prepared_users"] > 0
