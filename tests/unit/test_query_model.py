"""The routers' own request parsing (routers/dependencies: parse_query for query strings,
RequestRoute for path parameters and JSON bodies) accepts, refuses and documents exactly what
FastAPI's own parameter handling does."""

from typing import Annotated

import pytest
from fastapi import APIRouter, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from routers.dependencies import RequestRoute, parse_query, query_parameters
from routers.problems import install_problem_handlers
from schemas import (
    PRODUCT_ID_REGEX,
    HomeQuery,
    InteractionBatchIn,
    InteractionIn,
    SearchQuery,
    SessionQuery,
    SimilarQuery,
)

MODELS = {
    "home": HomeQuery,
    "similar": SimilarQuery,
    "session": SessionQuery,
    "search": SearchQuery,
}


def _app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    for name, model in MODELS.items():

        def fastapi_way(query: Annotated[model, Query()]):
            return query.model_dump(mode="json")

        app.get(f"/fastapi/{name}")(fastapi_way)
        app.get(f"/fast/{name}", openapi_extra=query_parameters(model))(_one_call(model))

    @app.get("/fastapi/product/{product_id}")
    def product_fastapi_way(product_id: Annotated[str, Path(pattern=PRODUCT_ID_REGEX)]):
        return {"product_id": product_id}

    direct = APIRouter(route_class=RequestRoute)

    @direct.get("/fast/product/{product_id}")
    async def product_direct(
        request: Request, product_id: Annotated[str, Path(pattern=PRODUCT_ID_REGEX)]
    ):
        return JSONResponse({"product_id": product_id})

    @app.post("/fastapi/event")
    def event_fastapi_way(event: InteractionIn):
        return event.model_dump(mode="json")

    @app.post("/fastapi/batch")
    def batch_fastapi_way(batch: InteractionBatchIn):
        return batch.model_dump(mode="json")

    @direct.post("/fast/event")
    async def event_direct(request: Request, event: InteractionIn):
        return JSONResponse(event.model_dump(mode="json"))

    @direct.post("/fast/batch")
    async def batch_direct(request: Request, batch: InteractionBatchIn):
        return JSONResponse(batch.model_dump(mode="json"))

    app.include_router(direct)
    return app


def _one_call(model):
    def one_call(request: Request):
        return parse_query(request, model).model_dump(mode="json")

    return one_call


CASES = [
    ("home", "user_id=U1"),
    ("home", "user_id=U1&limit=5&offset=3&exclude_seen=false&category=+Headphones+"),
    ("home", "user_id=U1&min_price=10&max_price=20&unknown=1"),
    ("home", "user_id=U1&limit=2&limit=7"),  # a repeated scalar: the last value
    ("home", ""),
    ("home", "user_id=bad-id!&limit=0&offset=x"),
    ("home", "user_id=U1&min_price=30&max_price=20"),
    ("home", "user_id=U1&category=%20&exclude_seen=maybe"),
    ("similar", "mode=blend"),
    ("similar", "mode=other&limit=101"),
    ("session", "product_ids=B09N3ZNHTY&product_ids=B0BRKXTSBT"),
    ("session", "product_ids=B09N3ZNHTY&product_ids=nope"),
    ("session", "limit=3"),
    ("search", "q=%EF%BD%94%EF%BD%96++stand&user_id=U1"),
    ("search", "q=%20%20"),
    ("search", "q=tv%01"),
    ("product/B09N3ZNHTY", ""),  # a path parameter, checked by RequestRoute
    ("product/bad-id!", ""),
    ("product/" + "X" * 80, "limit=3"),
]


@pytest.mark.parametrize(("name", "query_string"), CASES)
def test_same_answer_as_fastapi_query_models(name, query_string):
    client = TestClient(_app())
    ours = client.get(f"/fast/{name}?{query_string}")
    theirs = client.get(f"/fastapi/{name}?{query_string}")
    assert ours.status_code == theirs.status_code
    if ours.status_code == 422:  # the problem's instance is the path, which differs here
        assert ours.json().pop("instance") == f"/fast/{name}"
        assert theirs.json().pop("instance") == f"/fastapi/{name}"
    assert _without_instance(ours.json()) == _without_instance(theirs.json())


CLICK = b'{"user_id": "U1", "event_type": "product_click", "product_id": "B09N3ZNHTY"}'
JSON = {"content-type": "application/json"}
BODIES = [
    ("event", CLICK, JSON),
    ("event", CLICK, {"content-type": "application/vnd.shop+json; charset=utf-8"}),
    ("event", b'{"user_id": "U1", "event_type": "search_query", "query": " tv "}', JSON),
    ("event", b'{"user_id": "U1", "event_type": "product_click"}', JSON),
    ("event", b'{"user_id": "U 1", "event_type": "purchase", "product_id": 3}', JSON),
    ("event", b"{not json", JSON),
    ("event", b"[1, 2", JSON),
    ("event", b"\xff\xfe{", JSON),
    ("event", b"", JSON),
    ("event", CLICK, {}),  # no content type: not read as JSON
    ("event", CLICK, {"content-type": "text/plain"}),
    ("batch", b'{"events": [' + CLICK + b", " + CLICK + b"]}", JSON),
    ("batch", b'{"events": []}', JSON),
    ("batch", b'{"events": [{"user_id": "U1"}]}', JSON),
]


@pytest.mark.parametrize(("name", "body", "headers"), BODIES)
def test_same_body_handling_as_fastapi(name, body, headers):
    client = TestClient(_app())
    ours = client.post(f"/fast/{name}", content=body, headers=headers)
    theirs = client.post(f"/fastapi/{name}", content=body, headers=headers)
    assert ours.status_code == theirs.status_code
    assert _without_instance(ours.json()) == _without_instance(theirs.json())


def test_request_route_checks_path_parameters():
    client = TestClient(_app())
    assert client.get("/fast/product/B09N3ZNHTY").json() == {"product_id": "B09N3ZNHTY"}
    refused = client.get("/fast/product/bad-id!")
    assert refused.status_code == 422
    assert [e["field"] for e in refused.json()["errors"]] == ["path.product_id"]


def _without_instance(body: dict) -> dict:
    return {key: value for key, value in body.items() if key != "instance"}


def test_documented_as_fastapi_documents_query_models():
    paths = _app().openapi()["paths"]
    for name in MODELS:
        fast = paths[f"/fast/{name}"]["get"]["parameters"]
        assert fast == paths[f"/fastapi/{name}"]["get"]["parameters"]
        assert {p["name"] for p in fast} == set(MODELS[name].model_fields)
    product = paths["/fast/product/{product_id}"]["get"]["parameters"]
    assert product == paths["/fastapi/product/{product_id}"]["get"]["parameters"]
