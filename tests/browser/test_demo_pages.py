"""The storefront demo and the model dashboard in a real browser: Playwright for Python driving
Debian's Chromium (never a downloaded browser) against the service under uvicorn, on a database
with a simulated click log, a trained model version and an evaluation report.

Screenshots go to the test's temporary folder, or to $DEMO_SCREENSHOTS_DIR when set (the README's
pictures: DEMO_SCREENSHOTS_DIR=docs/screenshots make test).
"""

import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from bench.server import start_server
from config.settings import Settings
from database.interactions import recent_user_events
from database.training import fetch_catalog, fetch_events
from ml.evaluate import evaluate, write_report
from ml.simulate import SimulationConfig
from services.artifacts import publish
from tests.conftest import cloned_database, store_simulated_log

CHROMIUM = Path("/usr/bin/chromium")
ADMIN_KEY = "browser-key"
SHOPPER = "browser_shopper"


def chromium() -> Path:
    """Debian's Chromium, installed with apt-get when missing (as root); else the test skips."""
    if not CHROMIUM.exists() and os.geteuid() == 0 and shutil.which("apt-get"):
        install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
        if subprocess.run(install, capture_output=True, timeout=900).returncode != 0:
            subprocess.run(["apt-get", "update"], capture_output=True, timeout=900)
            subprocess.run(install, capture_output=True, timeout=900)
    if not CHROMIUM.exists():
        pytest.skip(
            "Debian's chromium is not installed and could not be installed here "
            "(apt-get install chromium needs root and the Debian archive)"
        )
    return CHROMIUM


@pytest.fixture(scope="module")
async def demo_database(server_url, template_database, tmp_path_factory):
    """A database with a simulated click log, and the evaluation report written from it."""
    reports = tmp_path_factory.mktemp("reports")
    async with cloned_database(server_url, template_database, "rec_browser") as url:
        conn = await asyncpg.connect(url)
        try:
            config = SimulationConfig(users=150, events=12_000, days=30, seed=5)
            events, _ = await store_simulated_log(url, conn, config)
            catalog = await fetch_catalog(conn=conn)
            since = events["timestamp"].min().floor("s").to_pydatetime()
            logged = await fetch_events(conn=conn, since=since)
            settings = Settings(database_url=url, artifacts_dir=tmp_path_factory.mktemp("eval"))
            report = evaluate(
                catalog_frame=catalog, events=logged, settings=settings, test_days=5, max_users=60
            )
            write_report(report, reports)
        finally:
            await conn.close()
        yield url, reports


@pytest.fixture(scope="module")
def demo_server(demo_database, trained_catalog_version, tmp_path_factory):
    url, reports = demo_database
    artifacts = tmp_path_factory.mktemp("browser-artifacts")
    shutil.copytree(trained_catalog_version, artifacts / trained_catalog_version.name)
    publish(artifacts, artifacts / trained_catalog_version.name)
    env = os.environ | {
        "DATABASE_URL": url,
        "ARTIFACTS_DIR": str(artifacts),
        "REPORTS_DIR": str(reports),
        "ADMIN_API_KEY": ADMIN_KEY,
        "SCHEDULER_ENABLED": "false",
    }
    base, process = start_server(env, workers=1)
    try:
        yield base, url
    finally:
        process.terminate()
        process.wait(30)


@pytest.fixture
def screenshots(tmp_path) -> Path:
    folder = Path(os.environ.get("DEMO_SCREENSHOTS_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
async def page(demo_server):
    from playwright.async_api import async_playwright

    base, _ = demo_server
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(chromium()), args=["--no-sandbox"]
        )
        context = await browser.new_context(base_url=base, viewport={"width": 1280, "height": 900})
        # No network beyond the service, as on these machines: product images cannot load.
        await context.route(
            "**/*",
            lambda route: (
                route.continue_() if route.request.url.startswith(base) else route.abort()
            ),
        )
        page = await context.new_page()
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        yield page
        await browser.close()
    assert errors == [], errors  # no script error on any page


async def _card_ids(page, selector: str) -> list[str]:
    return await page.eval_on_selector_all(selector, "cards => cards.map(c => c.dataset.productId)")


async def _events_of(database_url: str, user: str) -> list[asyncpg.Record]:
    """The user's stored events, oldest first."""
    conn = await asyncpg.connect(database_url)
    try:
        since = datetime.now(UTC) - timedelta(hours=1)
        return list(reversed(await recent_user_events(conn=conn, user_id=user, since=since)))
    finally:
        await conn.close()


async def test_storefront_feed_adapts_to_clicks_and_searches(page, demo_server, screenshots):
    _, database_url = demo_server
    await page.goto("/demo/")
    await page.wait_for_selector("#home .card")
    await page.fill("#user-input", SHOPPER)
    await page.click("#user-form button[type=submit]")
    who = "document.getElementById('who').textContent.includes('" + SHOPPER + "')"
    await page.wait_for_function(who)
    await page.wait_for_selector("#home .card")
    assert "new_user" in await page.text_content("#home-strategy")
    before = await _card_ids(page, "#home .card")
    # Cards show price, rating and a placeholder where the image could not load.
    first = page.locator("#home .card").first
    assert "₹" in await first.locator(".price").text_content()
    # An image fails (no network here) some time after its card is shown: wait for all of them.
    placeholders = "document.querySelectorAll('#home .card .placeholder').length"
    await page.wait_for_function(f"{placeholders} === {len(before)}")
    await page.screenshot(path=str(screenshots / "storefront.png"), full_page=True)

    version = await page.get_attribute("#home", "data-version")
    clicked = before[0]
    await first.click()
    await page.wait_for_selector("#product-view:not([hidden]) #similar .card")
    await page.wait_for_function(f"document.getElementById('home').dataset.version !== '{version}'")
    assert await page.get_attribute("#product-detail", "data-product-id") == clicked
    stored = await _events_of(database_url, SHOPPER)
    assert [(e["event_type"], e["product_id"]) for e in stored] == [("product_click", clicked)]
    after = await _card_ids(page, "#home .card")
    assert after != before and clicked not in after  # personal now, and not what was just seen
    assert "personal" in await page.text_content("#home-strategy")
    reasons = await page.locator("#home .card .reasons li").all_text_contents()
    assert reasons, "a personal feed says why each product is there"
    await page.screenshot(path=str(screenshots / "storefront-product.png"), full_page=True)

    await page.fill("#search-input", "earbuds")
    await page.press("#search-input", "Enter")
    await page.wait_for_selector("#search-view:not([hidden]) #search-results .card")
    assert "earphones" in await page.text_content("#search-expansions")
    assert await page.is_hidden("#search-fallback")
    await page.screenshot(path=str(screenshots / "storefront-search.png"), full_page=True)

    await page.fill("#search-input", "qzxv wqpj")
    await page.press("#search-input", "Enter")
    await page.wait_for_selector("#search-fallback:not([hidden])")
    assert "no_match_used" in await page.text_content("#search-fallback")
    assert await page.locator("#search-results .card").count() > 0  # never an empty page
    stored = await _events_of(database_url, SHOPPER)
    assert [e["query"] for e in stored if e["event_type"] == "search_query"] == [
        "earbuds",
        "qzxv wqpj",
    ]


async def test_dashboard_needs_the_key_and_shows_models_jobs_traffic_and_evaluation(
    page, screenshots
):
    await page.goto("/demo/")  # some traffic for the latency table
    await page.wait_for_selector("#home .card")
    await page.goto("/demo/dashboard/")
    assert "API key" in await page.text_content("#error")
    await page.fill("#key-input", "wrong")
    await page.click("#key-form button")
    await page.wait_for_function("document.getElementById('error').textContent.includes('401')")
    assert await page.is_hidden("#dashboard")

    await page.fill("#key-input", ADMIN_KEY)
    await page.click("#key-form button")
    await page.wait_for_selector("#dashboard:not([hidden])")
    await page.wait_for_selector("#evaluation-plot:not([hidden])")
    models = await page.text_content("#models")
    assert "current: 20" in models and "loads cleanly" in models
    assert "retrain" in await page.text_content("#jobs")
    latency = await page.text_content("#latency")
    assert "GET /recommendations/home" in latency
    assert "default" in await page.text_content("#variants")
    evaluation = await page.text_content("#evaluation")
    assert "popularity" in evaluation and "ndcg@10" in evaluation
    loaded = await page.eval_on_selector("#evaluation-plot", "img => img.naturalWidth")
    assert loaded > 100
    await page.screenshot(path=str(screenshots / "dashboard.png"), full_page=True)
