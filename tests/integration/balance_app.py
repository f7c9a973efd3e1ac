"""A tiny app with the service's request middleware and worker balance, for
test_worker_balance.py to run under `uvicorn --workers 2`: `/` answers the worker's pid,
`/slow` the same after 20 ms (so the test's client threads keep the workers idle)."""

import asyncio
import os
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from routers.middleware import RequestContextMiddleware
from routers.worker_balance import worker_balance

balance = worker_balance()


@asynccontextmanager
async def lifespan(app):
    if balance is not None:
        balance.start()
    yield
    if balance is not None:
        balance.stop()


async def pid(request):
    return PlainTextResponse(str(os.getpid()))


async def slow(request):
    await asyncio.sleep(0.02)
    return PlainTextResponse(str(os.getpid()))


app = RequestContextMiddleware(
    Starlette(routes=[Route("/", pid), Route("/slow", slow)], lifespan=lifespan), balance=balance
)
