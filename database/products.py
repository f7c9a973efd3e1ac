"""SQL for reading the catalog."""

import asyncpg

_EXISTING_IDS = "SELECT id FROM products WHERE id = ANY($1::text[])"
_COUNT = "SELECT count(*) FROM products"


async def existing_product_ids(*, conn: asyncpg.Connection, product_ids: list[str]) -> set[str]:
    rows = await conn.fetch(_EXISTING_IDS, product_ids)
    return {row["id"] for row in rows}


async def count_products(*, conn: asyncpg.Connection) -> int:
    return await conn.fetchval(_COUNT)
