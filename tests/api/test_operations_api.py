"""Operations: jobs run once across app instances, retraining in a child process swapped in
without restart, a failing training leaves the old version serving, /metrics, /admin auth,
retention, request ids and JSON logs."""

import asyncio
import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient

from config.logging import json_formatter
from config.settings import Settings
from main import create_app
from services.artifacts import new_version_name, publish

API_KEY = "test-admin-key"
ADMIN = {"X-API-Key": API_KEY}
pytestmark = pytest.mark.usefixtures("seeded_artifacts")


@pytest.fixture
def settings(database_url, tmp_path) -> Settings:
    return Settings(
        database_url=database_url,
        artifacts_dir=tmp_path / "artifacts",
        admin_api_key=API_KEY,
        model_reload_seconds=0.2,
    )


async def _wait_for(predicate, seconds: float = 180.0):
    async with asyncio.timeout(seconds):
        while not (value := await predicate()):  # noqa: ASYNC110 (polls HTTP endpoints)
            await asyncio.sleep(0.2)
    return value


async def _finished_run(client, job: str, after_id: int = 0):
    async def finished():
        run = (await client.get("/admin/status", headers=ADMIN)).json()["jobs"][job]["last_run"]
        done = run and run["id"] > after_id and run["outcome"] != "running"
        return run if done else None

    return await _wait_for(finished)


async def test_admin_endpoints_refuse_requests_without_the_key(client):
    for method, path in (("GET", "/admin/status"), ("POST", "/admin/jobs/trending")):
        for headers in ({}, {"X-API-Key": "wrong"}):
            response = await client.request(method, path, headers=headers)
            assert response.status_code == 401, (path, headers)
            assert response.headers["content-type"] == "application/problem+json"
    assert (await client.post("/admin/jobs/everything", headers=ADMIN)).status_code == 422


async def test_admin_is_disabled_without_a_configured_key(database_url, tmp_path):
    app = create_app(Settings(database_url=database_url, artifacts_dir=tmp_path / "a"))
    async with LifespanManager(app, startup_timeout=120):
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.get("/admin/status", headers={"X-API-Key": ""})
    assert response.status_code == 403
    assert "ADMIN_API_KEY" in response.json()["detail"]


async def test_two_app_instances_run_a_scheduled_job_once(app, settings, conn):
    other = create_app(settings)
    async with LifespanManager(other, startup_timeout=120):
        for instance in (app, other):  # both schedule it, at five past every hour
            job = instance.state.scheduler.get_job("trending")
            assert job.next_run_time.minute == 5
        results = await asyncio.gather(
            app.state.jobs.run("trending", "schedule"),
            other.state.jobs.run("trending", "schedule"),
        )
        assert sorted(r.ran for r in results) == [False, True]
        # A late worker firing for the same slot finds it done.
        late = await other.state.jobs.run("trending", "schedule")
        assert not late.ran and late.detail == "already ran in this period"
    runs = await conn.fetch("SELECT outcome, trigger FROM job_runs WHERE job = 'trending'")
    assert [tuple(r) for r in runs] == [("succeeded", "schedule")]


async def test_retrain_publishes_a_version_the_running_app_serves(client, app):
    before = (await client.get("/ready")).json()["models"]["content"]
    assert before is not None
    response = await client.post("/admin/jobs/retrain", headers=ADMIN)
    assert response.status_code == 202
    run = await _finished_run(client, "retrain")
    assert run["outcome"] == "succeeded", run["detail"]
    assert run["trigger"] == "admin" and run["detail"].startswith("published ")

    async def new_version():
        version = (await client.get("/ready")).json()["models"]["content"]
        return version if version != before else None

    after = await _wait_for(new_version)
    assert run["detail"].startswith(f"published {after}")

    async def heartbeat_shows_it():
        status = (await client.get("/admin/status", headers=ADMIN)).json()
        return status if [w["model_version"] for w in status["workers"]] == [after] else None

    status = await _wait_for(heartbeat_shows_it, seconds=10)
    assert status["model_version"] == after and status["artifacts"]["current"] == after
    search = (await client.get("/recommendations/search", params={"q": "earbuds"})).json()
    assert search["model_version"] == after and search["items"]


async def test_failing_training_leaves_the_old_version_serving(client, app, tmp_path):
    before = (await client.get("/ready")).json()["models"]["content"]
    broken = tmp_path / "synonyms.txt"
    broken.write_text("tv => => television\n")
    app.state.settings.synonyms_path = broken  # what the child process will be given
    assert (await client.post("/admin/jobs/retrain", headers=ADMIN)).status_code == 202
    run = await _finished_run(client, "retrain")
    assert run["outcome"] == "failed"
    assert "synonyms line 1" in run["detail"]
    await asyncio.sleep(0.5)  # a few watcher rounds
    assert (await client.get("/ready")).json()["models"]["content"] == before
    status = (await client.get("/admin/status", headers=ADMIN)).json()
    assert status["artifacts"]["current"] == before and status["model_version"] == before
    metrics = (await client.get("/metrics")).text
    assert 'recsys_job_runs_total{job="retrain",outcome="failed"}' in metrics


def _trainings_of(artifacts_dir) -> list[int]:
    """Running `ml.train` processes writing into `artifacts_dir` (from /proc)."""
    found = []
    for process in Path("/proc").glob("[0-9]*"):
        try:
            command = (process / "cmdline").read_bytes()
            environment = (process / "environ").read_bytes().split(b"\0")
        except OSError:  # ended meanwhile
            continue
        if b"ml.train" in command and f"ARTIFACTS_DIR={artifacts_dir}".encode() in environment:
            found.append(int(process.name))
    return found


async def test_training_past_its_time_limit_is_killed_and_recorded(client, app):
    before = (await client.get("/ready")).json()["models"]["content"]
    app.state.settings.retrain_timeout_minutes = 0.02  # 1.2 s: the training cannot finish
    assert (await client.post("/admin/jobs/retrain", headers=ADMIN)).status_code == 202
    run = await _finished_run(client, "retrain")
    assert run["outcome"] == "failed"
    assert "ran past its limit of 0.02 min" in run["detail"] and "killed" in run["detail"]
    assert _trainings_of(app.state.settings.artifacts_dir) == []  # nothing left behind
    assert (await client.get("/ready")).json()["models"]["content"] == before


def _broken_copy(version: Path) -> Path:
    """A newer version folder with one array's last bytes flipped: same size, still loads as
    an array, only the checksum tells."""
    copy = version.parent / new_version_name()
    shutil.copytree(version, copy)
    array = copy / "product_ids.npy"
    data = bytearray(array.read_bytes())
    data[-8:] = bytes(b ^ 0xFF for b in data[-8:])
    array.write_bytes(bytes(data))
    return copy


async def test_a_corrupt_new_version_is_refused_and_the_old_keeps_serving(
    client, app, seeded_artifacts
):
    before = (await client.get("/ready")).json()["models"]["content"]
    failures = _sample((await client.get("/metrics")).text, "recsys_model_load_failures_total")
    broken = _broken_copy(seeded_artifacts)
    publish(seeded_artifacts.parent, broken)
    await asyncio.sleep(1.0)  # a few watcher rounds
    assert (await client.get("/ready")).json()["models"]["content"] == before
    status = (await client.get("/admin/status", headers=ADMIN)).json()
    assert status["model_version"] == before and status["artifacts"]["current"] == broken.name
    assert "checksum mismatch" in status["artifacts"]["load_error"]
    metrics = (await client.get("/metrics")).text
    assert _sample(metrics, "recsys_model_load_failures_total") == failures + 1  # not retried
    home = await client.get("/recommendations/home", params={"user_id": "u1"})
    assert home.status_code == 200 and home.json()["items"]


async def test_start_up_with_a_corrupt_current_version_serves_the_earlier_one(
    settings, seeded_artifacts
):
    broken = _broken_copy(seeded_artifacts)
    publish(settings.artifacts_dir, broken)
    app = create_app(settings)
    async with (
        LifespanManager(app, startup_timeout=120),
        AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as http,
    ):
        ready = await http.get("/ready")
        status = (await http.get("/admin/status", headers=ADMIN)).json()
    assert ready.status_code == 200 and ready.json()["models"]["content"] == seeded_artifacts.name
    assert "checksum mismatch" in status["artifacts"]["load_error"]


def _sample(text: str, series: str) -> float:
    """A sample's value in Prometheus text format (0 when absent)."""
    found = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def test_metrics_expose_the_named_series(client):
    ingested = 'recsys_events_ingested_total{event_type="search_query"}'
    before = _sample((await client.get("/metrics")).text, ingested)
    event = {"user_id": "metered", "event_type": "search_query", "query": "kettle"}
    assert (await client.post("/interactions", json=event)).status_code == 201
    assert (await client.get("/recommendations/home", params={"user_id": "metered"})).is_success
    assert (await client.get("/recommendations/product/NOTAPRODUC")).status_code == 404
    assert (await client.post("/admin/jobs/trending", headers=ADMIN)).status_code == 202
    await _finished_run(client, "trending")
    response = await client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    for series in (
        'http_request_duration_seconds_bucket{le="0.025",method="GET",'
        'route="/recommendations/home"}',
        'http_requests_total{method="GET",route="/recommendations/product/{product_id}",'
        'status="404"}',
        "recsys_model_info{version=",
        "recsys_model_age_seconds ",
        "recsys_model_created_timestamp_seconds ",
        'recsys_job_duration_seconds_count{job="trending"}',
        'recsys_job_runs_total{job="trending",outcome="succeeded"}',
    ):
        assert series in text, series
    assert _sample(text, ingested) == before + 1


async def test_retention_removes_old_rows_everywhere_and_keeps_recent_ones(client, conn, app):
    old = (datetime.now(UTC) - timedelta(days=app.state.settings.retention_days + 5)).isoformat()
    events = [
        {"user_id": "veteran", "event_type": "search_query", "query": "old", "timestamp": old},
        {"user_id": "veteran", "event_type": "search_query", "query": "new"},
        {"user_id": "newcomer", "event_type": "search_query", "query": "new"},
    ]
    assert (await client.post("/interactions/batch", json={"events": events})).status_code == 201
    stamps = "SELECT user_id, history_stamp FROM user_interaction_tables"
    before = dict(await conn.fetch(stamps))
    result = await app.state.jobs.run("retention", "admin")
    assert result.outcome == "succeeded", result.detail
    assert "1 from the log, 1 from 1 user tables" in result.detail
    assert await conn.fetchval(
        'SELECT array_agg(query) FROM user_events."veteran_interactions"'
    ) == ["new"]
    assert await conn.fetchval("SELECT count(*) FROM interaction_events") == 2
    # The trimmed user's history changed, so did its stamp; the other user's did not.
    after = dict(await conn.fetch(stamps))
    assert after["veteran"] != before["veteran"]
    assert after["newcomer"] == before["newcomer"]


async def test_request_id_is_echoed_and_logged_as_json(client, caplog):
    response = await client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    generated = (await client.get("/health", headers={"X-Request-ID": "bad id\n"})).headers
    assert len(generated["x-request-id"]) == 32
    access = [r for r in caplog.records if r.name == "access"]
    lines = [json.loads(json_formatter().format(record)) for record in access]
    assert {"request_id": "abc-123", "status": 200, "route": "/health"}.items() <= lines[0].items()
    assert lines[1]["request_id"] == generated["x-request-id"]
    assert set(lines[0]) == {
        "time", "level", "logger", "message", "request_id",
        "method", "path", "route", "status", "duration_ms",
    }  # fmt: skip


async def test_logs_never_carry_the_admin_key(client, caplog):
    await client.get("/admin/status", headers=ADMIN)
    await client.get("/admin/status", headers={"X-API-Key": "wrong-key"})
    formatted = "\n".join(json_formatter().format(r) for r in caplog.records)
    assert "access" in formatted
    assert API_KEY not in formatted and "wrong-key" not in formatted


async def test_a_version_trained_on_a_larger_catalog_brings_the_catalog_with_it(
    client, app, conn, settings
):
    from main import refresh_models
    from ml.train import train

    before = len(app.state.catalog)
    await conn.execute(
        "INSERT INTO products SELECT 'ZZNEW00001', name || ' Mark II', main_category,"
        " sub_category, image, link, ratings, no_of_ratings, discount_price, actual_price,"
        " discount_ratio FROM products ORDER BY id LIMIT 1"
    )
    result = await train(conn=conn, settings=settings)
    assert await refresh_models(app)
    assert len(app.state.catalog) == before + 1 and "ZZNEW00001" in app.state.catalog.position_of
    assert app.state.models.bundle.version == result.folder.name
    assert app.state.models.last_error is None
    similar = await client.get("/recommendations/product/ZZNEW00001")
    assert similar.status_code == 200 and similar.json()["model_version"] == result.folder.name
