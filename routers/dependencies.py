"""Typed dependencies shared by the routers."""

from typing import Annotated

import asyncpg
from fastapi import Depends, Request


async def get_pool(request: Request) -> asyncpg.Pool:
    # async: FastAPI runs a plain `def` dependency in its thread pool, a thread hop per request.
    return request.app.state.pool


Pool = Annotated[asyncpg.Pool, Depends(get_pool)]
