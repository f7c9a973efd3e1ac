"""The hot routes' requests taken straight to their endpoints, past FastAPI's routing.

A storefront calls a few routes for nearly every request (home, similar, search, one event).
Under load, the ASGI layers between the app's own middlewares and a route's endpoint (exception
middleware, router, included routers, route matching, the request's exit stacks) cost about
as much CPU as a light endpoint itself. `HotRoutes`, the innermost middleware, matches these
routes itself and calls their handlers directly; everything else goes on through FastAPI. The
routes stay registered with FastAPI as well: the OpenAPI document, URL building and every
other route are unchanged.

Only routes whose endpoints take their inputs themselves (`RequestRoute`: no per-request
dependencies) can be served here, and their paths must not be matched by any earlier route.
"""

import inspect
from collections.abc import Awaitable, Callable, Iterable

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from routers.dependencies import RequestRoute

Handler = Callable[[Request], Awaitable[Response]]


class _Route:
    __slots__ = ("route", "handler", "regex", "methods", "convertors", "static")

    def __init__(self, route: APIRoute):
        if not isinstance(route, RequestRoute):
            raise TypeError(f"{route.path}: only a RequestRoute can be served as a hot route")
        self.route = route
        self.handler: Handler = route.get_route_handler()
        self.regex = route.path_regex
        self.methods = frozenset(route.methods or ())
        self.convertors = route.param_convertors
        self.static = not self.convertors  # a path without parameters: compared as a string


def _route_path(scope: Scope) -> str:
    """The path the app's routes match: without the root path a proxy mounts the app under
    (uvicorn --root-path), as Starlette's router takes it off."""
    path, root = scope["path"], scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] == "/":
        return path[len(root) :]
    return path


class HotRoutes:
    """Serves `routes` (from the routers given to FastAPI) directly; every other request, and a
    hot path with a method it does not take (405), goes on to `app`, FastAPI's router. Errors
    get the answers FastAPI's exception handlers give (the app's problem+json handlers); an
    error no handler takes goes up to FastAPI's server-error middleware, as from any route."""

    def __init__(self, app: ASGIApp, fastapi: FastAPI, routes: Iterable[APIRoute]):
        self.app = app
        self.fastapi = fastapi
        self.routes = [_Route(route) for route in routes]
        self.by_path = {r.route.path: r for r in self.routes if r.static}
        self.with_parameters = [r for r in self.routes if not r.static]

    def _match(self, path: str, method: str) -> tuple[_Route, dict] | None:
        route = self.by_path.get(path)
        if route is not None:
            return (route, {}) if method in route.methods else None
        for route in self.with_parameters:
            found = route.regex.match(path)
            if found is not None:
                if method not in route.methods:
                    return None
                params = {
                    name: route.convertors[name].convert(value)
                    for name, value in found.groupdict().items()
                }
                return route, params
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        matched = self._match(_route_path(scope), scope["method"])
        if matched is None:
            await self.app(scope, receive, send)
            return
        route, params = matched
        scope["route"] = route.route
        scope["endpoint"] = route.route.endpoint
        scope["path_params"] = params
        request = Request(scope, receive, send)
        try:
            response = await route.handler(request)
        except Exception as exc:
            on_error = self._exception_handler(exc)
            if on_error is None:
                raise
            if inspect.iscoroutinefunction(on_error):
                response = await on_error(request, exc)
            else:
                response = await run_in_threadpool(on_error, request, exc)
        await response(scope, receive, send)

    def _exception_handler(self, exc: Exception) -> Callable | None:
        """The handler FastAPI's exception middleware would pick: by status for an
        HTTPException, else the nearest class in the exception's MRO; the catch-all (Exception,
        500) is the server-error middleware's, outside this one."""
        handlers = self.fastapi.exception_handlers
        if isinstance(exc, HTTPException) and exc.status_code in handlers:
            return handlers[exc.status_code]
        for cls in type(exc).__mro__:
            if cls is Exception:
                return None
            if cls in handlers:
                return handlers[cls]
        return None
