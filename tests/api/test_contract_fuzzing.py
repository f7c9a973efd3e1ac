"""The OpenAPI document says what the service does: schemathesis generates requests for every
operation from it (valid and invalid ones) and checks every answer with all its checks (no 5xx,
status codes and content types as documented, bodies matching the schemas, schema-valid requests
accepted, invalid ones refused). A real server (uvicorn) on a database of its own.

A larger run, by hand, against a running service:
    st run http://127.0.0.1:8000/openapi.json --checks all --max-examples 200 -H "X-API-Key: $KEY"
"""

import os
import re
from datetime import UTC, datetime

import asyncpg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from bench.server import start_server
from config.settings import Settings
from main import create_app
from schemas import PRODUCT_ID_REGEX
from tests.conftest import cloned_database

ADMIN_KEY = "fuzz-key"
PRODUCT_ID = re.compile(PRODUCT_ID_REGEX)
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
EXAMPLES = 20  # per operation: CI stays within a couple of minutes
schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi())


@pytest.fixture(scope="module")
async def fuzz_database(server_url, template_database):
    """A database cloned from the test template, and a product id of its catalog."""
    async with cloned_database(server_url, template_database, "rec_fuzz") as url:
        conn = await asyncpg.connect(url)
        product_id, category = await conn.fetchrow(
            "SELECT id, sub_category FROM products ORDER BY id LIMIT 1"
        )
        await conn.close()
        yield url, product_id, category


@pytest.fixture(scope="module")
def live_server(fuzz_database, tmp_path_factory):
    """The service under uvicorn, as ops run it: (base URL, a product id of its catalog)."""
    url, product_id, category = fuzz_database
    env = os.environ | {
        "DATABASE_URL": url,
        "ARTIFACTS_DIR": str(tmp_path_factory.mktemp("fuzz-artifacts")),
        "ADMIN_API_KEY": ADMIN_KEY,
        "SCHEDULER_ENABLED": "false",
    }
    base, process = start_server(env, workers=1)
    try:
        yield base, product_id, category
    finally:
        process.terminate()
        process.wait(30)


def _number(value) -> float | None:
    try:
        return float(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def _within_rules_openapi_cannot_say(case, product_id: str, category: str) -> None:
    """Rules the document gives in words, not in JSON Schema: min_price <= max_price, a
    timestamp within 365 days before now (relative to the clock), a category of the catalog."""
    query = case.query or {}
    if isinstance(query.get("category"), str) and query["category"].strip():
        query["category"] = category.upper()  # any case names it
    low, high = _number(query.get("min_price")), _number(query.get("max_price"))
    if low is not None and high is not None and low > high:
        query["min_price"], query["max_price"] = query["max_price"], query["min_price"]
    events = case.body.get("events", [case.body]) if isinstance(case.body, dict) else []
    for event in events if isinstance(events, list) else []:
        # Only a well-formed date-time moves into the window: a malformed one stays, to be refused.
        if isinstance(event, dict) and RFC3339.fullmatch(str(event.get("timestamp"))):
            event["timestamp"] = datetime.now(UTC).isoformat()
        # A well-formed product id must also be in the catalog.
        if isinstance(event, dict) and PRODUCT_ID.fullmatch(str(event.get("product_id"))):
            event["product_id"] = product_id


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_documented(case, live_server):
    base, product_id, category = live_server
    _within_rules_openapi_cannot_say(case, product_id, category)
    # The key for reading admin status; POSTs go without it (they would start real jobs).
    headers = {"X-API-Key": ADMIN_KEY} if case.method == "GET" else {}
    case.call_and_validate(base_url=base, headers=headers)
