"""Training ranks the active users' home feeds; a request whose events are the ones training saw
serves that ranking, and it must be exactly what the request would have computed."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from database.interactions import recent_user_events
from main import load_catalog, refresh_models
from ml.simulate import SimulationConfig
from ml.train import train
from ml.train_search_fusion import WEIGHTS
from services import metrics
from services.feeds import Filters, home_feed
from services.models import load_bundle
from services.ranking import RANKER_FILE, compiled_ranker_file
from tests.conftest import store_simulated_log

pytestmark = pytest.mark.usefixtures("seeded_artifacts")


async def test_prepared_home_rankings_equal_computed_ones(
    database_url, conn, settings, app, client
):
    config = SimulationConfig(users=120, events=9_000, days=20, seed=7)
    events, _ = await store_simulated_log(database_url, conn, config)
    result = await train(conn=conn, settings=settings)

    catalog = await load_catalog(conn)
    bundle = load_bundle(result.folder, len(catalog), catalog.position_of)
    assert bundle.ranker is not None and bundle.ranker_trending is not None
    # Training compiled the ranker for this machine type; the version holds it (checksummed).
    compiled = compiled_ranker_file(result.folder / RANKER_FILE)
    assert compiled.name in json.loads((result.folder / "manifest.json").read_text())["files"]
    assert bundle.ranker.compiled is not None
    assert bundle.semantic_weight in WEIGHTS  # learned from the log's searches
    prepared_users = bundle.arrays["home_user_ids"].tolist()
    assert len(prepared_users) == events["user_id"].nunique()
    # Training read each user's history stamp with the events: the registry's, as nothing was
    # written since.
    registry = dict(await conn.fetch("SELECT user_id, history_stamp FROM user_interaction_tables"))
    assert bundle.arrays["home_stamps"].tolist() == [registry[u] for u in prepared_users]
    assert min(registry.values()) >= 1  # the simulation's writes changed them
    # Once an event of the ranked history leaves the window, the stamp alone is not enough.
    someone, now = prepared_users[0], datetime.now(UTC)
    window, visit = now - timedelta(days=30), now - timedelta(minutes=30)
    assert bundle.prepared_home_stamp(someone, window, visit) == registry[someone]
    assert bundle.prepared_home_stamp(someone, now + timedelta(days=1), visit) is None
    # A visit in progress (an event of the history within it): its events must be read.
    assert bundle.prepared_home_stamp(someone, window, now - timedelta(days=60)) is None
    # The same version without the prepared rankings: every request computes its own.
    computing = load_bundle(result.folder, len(catalog), catalog.position_of)
    computing.arrays = {k: v for k, v in computing.arrays.items() if not k.startswith("home_")}
    computing.home_users = {}

    now = datetime.now(UTC)
    served = 0
    for user_id in prepared_users[:60]:
        history = [
            dict(e)
            for e in await recent_user_events(
                conn=conn, user_id=user_id, since=now - timedelta(days=settings.history_days)
            )
        ]
        assert bundle.prepared_home(user_id, history) is not None
        feeds = [
            home_feed(
                catalog=catalog,
                bundle=b,
                trending=None,
                events=history,
                user_id=user_id,
                weights={"content": 0.5, "collaborative": 0.4, "diverse": 0.1},
                boost_weight=0.1,
                n=20,
                filters=Filters(),
                exclude_seen=True,
                now=now,
            )
            for b in (bundle, computing)
        ]
        # The page (reasons are given to what a page of n can show) and the order below it.
        assert [c.position for c in feeds[0].items] == [c.position for c in feeds[1].items]
        page = [[(c.position, c.score, c.reasons) for c in f.items[:20]] for f in feeds]
        assert page[0] == page[1], user_id
        assert feeds[0].strategy == "personal_ranked"
        served += 1
        # One more event, or one fewer: training did not see this history.
        assert bundle.prepared_home(user_id, history[1:]) is None
    assert served == 60
    assert bundle.prepared_home("never_seen_user", []) is None

    # Over HTTP: a prepared user's click shows in the very next feed.
    await refresh_models(app)
    user_id = prepared_users[0]

    async def home() -> dict:
        return (await client.get("/recommendations/home", params={"user_id": user_id})).json()

    async def click(product_id: str) -> None:
        stored = await client.post(
            "/interactions",
            json={"user_id": user_id, "event_type": "product_click", "product_id": product_id},
        )
        assert stored.status_code == 201

    prepared = metrics.HOME_RANKINGS.labels("prepared")
    skipped, read = (metrics.HISTORY_READS.labels(r) for r in ("skipped", "read"))
    served_prepared, reads_skipped = prepared._value.get(), skipped._value.get()
    before = await home()
    assert before["strategy"] == "personal_ranked"
    assert prepared._value.get() == served_prepared + 1
    # Served without reading the user's table (the stamp is training's), and the same page as
    # with the events read.
    assert skipped._value.get() == reads_skipped + 1
    app.state.settings.serve_prepared_home = False
    try:
        assert (await home())["items"] == before["items"]
    finally:
        app.state.settings.serve_prepared_home = True
    clicked = before["items"][0]["id"]
    await click(clicked)
    reads = read._value.get()
    after = await home()
    assert read._value.get() == reads + 1  # the click changed the stamp: the table is read
    assert prepared._value.get() == served_prepared + 1  # computed: a new event
    assert clicked not in [item["id"] for item in after["items"]]
    assert [i["id"] for i in after["items"]] != [i["id"] for i in before["items"]]

    # The ranking computed for the new history is stored for every worker: the same history
    # again (a refresh) reads it back instead of the user's table and serves the same page; the
    # next click ranks anew.
    shared, computed = (metrics.HOME_RANKINGS.labels(s) for s in ("shared", "computed"))
    served_shared, served_computed = shared._value.get(), computed._value.get()
    await app.state.ranking_store.drained()
    reads, reads_skipped = read._value.get(), skipped._value.get()
    again = await home()
    assert shared._value.get() == served_shared + 1
    assert computed._value.get() == served_computed
    assert (read._value.get(), skipped._value.get()) == (reads, reads_skipped + 1)
    assert again["items"] == after["items"]
    # A stored ranking this worker cannot read (another form, a product it lacks): computed
    # again from the events, the same page.
    async with app.state.pool.acquire() as conn:
        await conn.execute("UPDATE computed_home_rankings SET ranking = 'not a ranking'")
    assert (await home())["items"] == after["items"]
    assert computed._value.get() == served_computed + 1
    second = after["items"][0]["id"]
    await click(second)
    latest = await home()
    assert computed._value.get() == served_computed + 2
    assert shared._value.get() == served_shared + 1
    assert second not in [item["id"] for item in latest["items"]]
