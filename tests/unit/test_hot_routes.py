"""HotRoutes serves its routes past FastAPI's routing with the answers FastAPI gives: the same
statuses, bodies and problem documents for good requests, bad ones and failing endpoints; and
everything that is not a hot route (other paths, other methods, a slash too many) goes on to
FastAPI untouched."""

from typing import Annotated

import pytest
from fastapi import APIRouter, FastAPI, Path, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from starlette.exceptions import HTTPException

from database.pool import DatabaseUnavailable
from routers.dependencies import RequestRoute, parse_query
from routers.hot_routes import HotRoutes
from routers.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from routers.problems import ProblemError, install_problem_handlers
from schemas import PRODUCT_ID_REGEX, InteractionIn, SimilarQuery


def _router() -> APIRouter:
    router = APIRouter(prefix="/shop", route_class=RequestRoute)

    @router.get("/product/{product_id}")
    async def product(request: Request, product_id: Annotated[str, Path(pattern=PRODUCT_ID_REGEX)]):
        query = parse_query(request, SimilarQuery)
        # Whether FastAPI's request_response ran: it opens the request's exit stacks.
        through_fastapi = "fastapi_inner_astack" in request.scope
        return JSONResponse(
            {"product_id": product_id, "limit": query.limit, "routed": through_fastapi}
        )

    @router.post("/event", status_code=201)
    async def event(request: Request, event: InteractionIn):
        return JSONResponse(event.model_dump(mode="json"), status_code=201)

    @router.get("/fails/{how}")
    async def fails(request: Request, how: str):
        if how == "problem":
            raise ProblemError(404, "no such thing", problem_type="unknown-product")
        if how == "http":
            raise HTTPException(418, "short and stout")
        if how == "database":
            raise DatabaseUnavailable("the pool is closed")
        raise RuntimeError("a bug")

    return router


def _app(hot: bool) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    router = _router()
    if hot:
        app.add_middleware(HotRoutes, fastapi=app, routes=router.routes)
    app.add_middleware(BodySizeLimitMiddleware, limit=200)
    app.add_middleware(RequestContextMiddleware)

    @app.get("/shop/other")
    def other():
        return {"served": "by FastAPI"}

    app.include_router(router)
    return app


CLICK = b'{"user_id": "U1", "event_type": "product_click", "product_id": "B09N3ZNHTY"}'
REQUESTS = [
    ("GET", "/shop/product/B09N3ZNHTY?limit=3", None),
    ("GET", "/shop/product/bad-id!", None),
    ("GET", "/shop/product/B09N3ZNHTY?limit=0", None),
    ("HEAD", "/shop/product/B09N3ZNHTY", None),  # not a method of the route: 405
    ("POST", "/shop/product/B09N3ZNHTY", None),
    ("GET", "/shop/product/", None),
    ("GET", "/shop/product/B09N3ZNHTY/more", None),
    ("GET", "/shop/other", None),
    ("GET", "/shop/nothing", None),
    ("POST", "/shop/event", CLICK),
    ("POST", "/shop/event", b'{"user_id": "U1"}'),
    ("POST", "/shop/event", b"{not json"),
    ("POST", "/shop/event", b'{"user_id": "' + b"x" * 300 + b'"}'),  # over the body limit
    ("GET", "/shop/event", None),
    ("GET", "/shop/fails/problem", None),
    ("GET", "/shop/fails/http", None),
    ("GET", "/shop/fails/database", None),
    ("GET", "/shop/fails/bug", None),
]


@pytest.mark.parametrize(("method", "url", "body"), REQUESTS)
def test_same_answer_as_through_fastapi(method, url, body):
    headers = {"content-type": "application/json"}
    answers = []
    for hot in (True, False):
        client = TestClient(_app(hot), raise_server_exceptions=False, follow_redirects=False)
        response = client.request(method, url, content=body, headers=headers)
        answer = response.json() if response.content else None
        if isinstance(answer, dict):
            answer.pop("routed", None)
        answers.append((response.status_code, response.headers.get("content-type"), answer))
    assert answers[0] == answers[1]


def test_hot_routes_skip_fastapi_routing_and_keep_their_route():
    hot = TestClient(_app(True)).get("/shop/product/B09N3ZNHTY")
    assert hot.json()["routed"] is False
    assert TestClient(_app(False)).get("/shop/product/B09N3ZNHTY").json()["routed"] is True
    # The request id and latency middleware still wraps them.
    assert hot.headers["x-request-id"]


def test_under_a_root_path():
    client = TestClient(_app(True), root_path="/api")
    answer = client.get("/api/shop/product/B09N3ZNHTY")
    assert answer.status_code == 200
    assert answer.json()["routed"] is False


def test_only_request_routes():
    router = APIRouter()

    @router.get("/plain")
    def plain():
        return {}

    with pytest.raises(TypeError, match="RequestRoute"):
        HotRoutes(FastAPI(), fastapi=FastAPI(), routes=router.routes)


def test_the_app_serves_its_hot_routes_directly_unless_tracing(tmp_path):
    from config.settings import Settings
    from main import create_app

    def hot_routes(settings: Settings) -> list[str]:
        app = create_app(settings)
        return [
            route.path
            for middleware in app.user_middleware
            if middleware.cls is HotRoutes
            for route in middleware.kwargs["routes"]
        ]

    served = hot_routes(Settings(artifacts_dir=tmp_path))
    assert {"/recommendations/home", "/recommendations/product/{product_id}"} <= set(served)
    assert {"/recommendations/search", "/interactions"} <= set(served)
    # Traced, every request takes FastAPI's routing, which names the request's span.
    assert hot_routes(Settings(artifacts_dir=tmp_path, opentelemetry=True)) == []
