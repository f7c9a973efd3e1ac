"""Per-request context: request id (X-Request-ID in and out), latency metrics per route, and
one structured access-log line per request. Pure ASGI: no per-request task or body copy."""

import itertools
import logging
import os
import re
import time

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from config.logging import request_id
from routers.problems import problem_response
from routers.worker_balance import WorkerBalance
from services import metrics

access_log = logging.getLogger("access")
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")  # anything else is replaced
# Generated ids: a random per-process prefix and a counter (unique, and cheaper than uuid4).
_PREFIX = os.urandom(8).hex()
_COUNTER = itertools.count()


def _header(scope: Scope, name: bytes) -> bytes:
    """A request header's value (the last if repeated, as dict() of the headers gave), b"" when
    absent: a scan of the few headers, without building a dict per request."""
    found = b""
    for key, value in scope["headers"]:
        if key == name:
            found = value
    return found


class RequestContextMiddleware:
    """With a `balance` (several workers), also notes each request's connection and closes one
    when the balance says so (routers/worker_balance.py)."""

    def __init__(self, app: ASGIApp, balance: WorkerBalance | None = None):
        self.app = app
        self.balance = balance

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        supplied = _header(scope, b"x-request-id").decode("latin-1")
        if _CLIENT_REQUEST_ID.fullmatch(supplied):
            rid = supplied
        else:
            rid = f"{_PREFIX}{next(_COUNTER):016x}"
        token = request_id.set(rid)
        status = 500
        started = time.perf_counter()
        balance = self.balance
        client = scope.get("client")  # (host, port): the connection, for the balance

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", []), (b"x-request-id", rid.encode())]
                if balance is not None and balance.should_close(client):
                    headers.append((b"connection", b"close"))
                message["headers"] = headers
            await send(message)

        if balance is not None:
            balance.saw(client)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = scope.get("route")
            # The route template keeps label values few ("/recommendations/product/{product_id}").
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            latency, answered = _request_metrics(method, template, status)
            latency.observe(seconds)
            answered.inc()
            if access_log.isEnabledFor(logging.INFO):
                # Path only: query strings can carry search text; headers are never logged.
                access_log.info(
                    "%s %s %s",
                    method,
                    scope["path"],
                    status,
                    extra={
                        "method": method,
                        "path": scope["path"],
                        "route": template,
                        "status": status,
                        "duration_ms": round(seconds * 1000, 2),
                    },
                )
            request_id.reset(token)


# The two request metrics of each (method, route, status): prometheus_client's labels() costs
# more than the update itself. Few keys (route templates, not paths), bounded all the same.
_request_children: dict[tuple[str, str, int], tuple] = {}
REQUEST_METRIC_KEYS = 1_000


def _request_metrics(method: str, template: str, status: int) -> tuple:
    key = (method, template, status)
    children = _request_children.get(key)
    if children is None:
        if len(_request_children) >= REQUEST_METRIC_KEYS:
            _request_children.clear()
        children = _request_children[key] = (
            metrics.REQUEST_SECONDS.labels(method, template),
            metrics.REQUESTS.labels(method, template, str(status)),
        )
    return children


class BodySizeLimitMiddleware:
    """413 for a request body above `limit` bytes: refused by its Content-Length before any of
    it is read, or as soon as a body without one (chunked) passes the limit."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared.isdigit() and int(declared) > self.limit:
            response = problem_response(Request(scope), 413, self._detail())
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # An HTTPException: the problem handlers answer it (413, problem+json).
                    raise HTTPException(413, self._detail())
            return message

        await self.app(scope, limited_receive, send)

    def _detail(self) -> str:
        return f"Request body larger than {self.limit:,} bytes."
