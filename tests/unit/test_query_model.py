"""The routers' one-call query-string parsing (routers/dependencies.parse_query) accepts, refuses
and documents exactly what FastAPI's own `Annotated[Model, Query()]` does."""

from typing import Annotated

import pytest
from fastapi import APIRouter, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from routers.dependencies import RequestRoute, parse_query, query_parameters
from routers.problems import install_problem_handlers
from schemas import PRODUCT_ID_REGEX, HomeQuery, SearchQuery, SessionQuery, SimilarQuery

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
