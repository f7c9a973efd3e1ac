"""SQL for reading the catalog."""

import asyncpg

# The spec's 11 columns, in the order of the processed CSV and of the products table.
RAW_COLUMNS = [
    "name", "main_category", "sub_category", "image", "link",
    "ratings", "no_of_ratings", "discount_price", "actual_price",
]  # fmt: skip
PRODUCT_COLUMNS = ["id", *RAW_COLUMNS, "discount_ratio"]

_EXISTING_IDS = "SELECT id FROM products WHERE id = ANY($1::text[])"
_COUNT = "SELECT count(*) FROM products"


async def existing_product_ids(*, conn: asyncpg.Connection, product_ids: list[str]) -> set[str]:
    rows = await conn.fetch(_EXISTING_IDS, product_ids)
    return {row["id"] for row in rows}


async def count_products(*, conn: asyncpg.Connection) -> int:
    return await conn.fetchval(_COUNT)
