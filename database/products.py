"""SQL for reading the catalog."""

import asyncpg

# The spec's 11 columns, in the order of the processed CSV and of the products table.
RAW_COLUMNS = [
    "name", "main_category", "sub_category", "image", "link",
    "ratings", "no_of_ratings", "discount_price", "actual_price",
]  # fmt: skip
PRODUCT_COLUMNS = ["id", *RAW_COLUMNS, "discount_ratio"]

_KNOWN_IDS = """
SELECT id AS asked, id AS product_id FROM products WHERE id = ANY($1::text[])
UNION ALL
SELECT a.alias_id, a.product_id FROM product_aliases a
WHERE a.alias_id = ANY($1::text[]) AND NOT EXISTS (SELECT 1 FROM products p WHERE p.id = a.alias_id)
"""
# Listings beyond a product's own category columns (most products have none).
_OTHER_LISTINGS = """
SELECT c.product_id, c.main_category, c.sub_category
FROM product_categories c JOIN products p ON p.id = c.product_id
WHERE (c.main_category, c.sub_category) <> (p.main_category, p.sub_category)
ORDER BY 1, 2, 3
"""
_ALIASES = "SELECT alias_id, product_id FROM product_aliases"
_COUNT = "SELECT count(*) FROM products"


async def canonical_product_ids(
    *, conn: asyncpg.Connection, product_ids: list[str]
) -> dict[str, str]:
    """The product each known id stands for: itself, or the product an alias was merged into.
    Unknown ids are left out."""
    rows = await conn.fetch(_KNOWN_IDS, product_ids)
    return {row["asked"]: row["product_id"] for row in rows}


async def other_listings(*, conn: asyncpg.Connection) -> list[tuple[str, str, str]]:
    """(product id, main category, sub-category) of every listing beyond the product's own."""
    return [tuple(r) for r in await conn.fetch(_OTHER_LISTINGS)]


async def product_aliases(*, conn: asyncpg.Connection) -> dict[str, str]:
    return {r["alias_id"]: r["product_id"] for r in await conn.fetch(_ALIASES)}


async def count_products(*, conn: asyncpg.Connection) -> int:
    return await conn.fetchval(_COUNT)
