"""Simulated logs written to the database (global log and per-user tables), then the offline
evaluation on them, end to end at a tiny scale."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from database.interactions import recent_user_events
from database.training import fetch_catalog, fetch_events
from ml.evaluate import evaluate, write_report
from ml.simulate import SimulationConfig
from ml.train_search_fusion import WEIGHTS
from tests.conftest import store_simulated_log

pytestmark = pytest.mark.usefixtures("seeded_artifacts")


async def test_simulated_log_lands_everywhere_and_evaluates(database_url, conn, settings, tmp_path):
    config = SimulationConfig(users=150, events=12_000, days=30, seed=5)
    events, created = await store_simulated_log(database_url, conn, config)
    catalog = await fetch_catalog(conn=conn)
    assert created == events["user_id"].nunique()
    assert await conn.fetchval("SELECT count(*) FROM interaction_events") == len(events)
    user, rows = next(iter(events.groupby("user_id")))
    since = datetime.now(UTC) - timedelta(days=31)
    stored = await recent_user_events(conn=conn, user_id=user, since=since)
    expected = rows.sort_values("timestamp", ascending=False)
    assert [r["product_id"] for r in stored] == expected["product_id"].tolist()
    assert [r["query"] for r in stored] == expected["query"].tolist()

    logged = await fetch_events(conn=conn, since=since)
    report = evaluate(
        catalog_frame=catalog, events=logged, settings=settings, test_days=5, max_users=100
    )
    home = report["home"]
    assert {
        "popularity",
        "EASE (baseline)",
        "content",
        "co_click",
        "item_cf",
        "session_knn",
        "weighted (0.5, 0.4, 0.1)",
    } <= set(home)
    for metrics in [*home.values(), *report["similar"].values(), *report["search"].values()]:
        assert 0 <= metrics["hr@10"] <= 1 and 0 <= metrics["ndcg@10"] <= metrics["hr@10"]
        assert metrics["mrr"] <= metrics["hr@10"]
    assert home["popularity"]["cases"] > 20
    # The default feed (the learned ranker) must beat a bestseller list and each of its sources.
    learned = home["learned ranker (0.5, 0.4, 0.1)"]
    singles = ("popularity", "content", "co_click", "item_cf", "session_knn")
    for name in singles:
        assert learned["ndcg@10"] > home[name]["ndcg@10"] * 1.1, name
    assert report["search"]["lexical + semantic (RRF)"]["cases"] > 10
    # The semantic weight is learned on the training part's searches; the report has the rows
    # to compare the served fusion with.
    assert report["search_semantic_weight"] in WEIGHTS
    assert {"lexical + semantic (RRF, equal weights)", "lexical only"} <= set(report["search"])
    write_report(report, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "evaluation.json").read_text())["home"] == home
    assert "| weighted (0.5, 0.4, 0.1) |" in (tmp_path / "out" / "evaluation.md").read_text()
    assert (tmp_path / "out" / "evaluation.png").read_bytes()[:4] == b"\x89PNG"
