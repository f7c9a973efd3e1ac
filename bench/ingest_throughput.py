"""Event ingestion throughput over HTTP: single events (concurrent clients) and batches.

    python -m bench.ingest_throughput [--events 5000] [--concurrency 16] [--batch-size 1000]

Starts uvicorn on a free local port (database from DATABASE_URL / PGDATA_DIR, as the service),
posts events for products read from the processed catalog CSV, prints events/s, stops the server.
The load generator runs on the same machine, so it shares the CPU with the server.
"""

import argparse
import asyncio
import csv
import os
import random
import signal
import time
from pathlib import Path

import httpx

from bench.server import start_server
from config.settings import get_settings


def _product_ids(catalog: Path, limit: int = 5000) -> list[str]:
    with catalog.open(encoding="utf-8") as handle:
        return [row["id"] for _, row in zip(range(limit), csv.DictReader(handle), strict=False)]


def _event(rng: random.Random, products: list[str], users: int) -> dict:
    user_id = f"bench_{rng.randrange(users)}"
    if rng.random() < 0.8:
        return {
            "user_id": user_id,
            "event_type": "product_click",
            "product_id": rng.choice(products),
        }
    return {"user_id": user_id, "event_type": "search_query", "query": rng.choice(["shoes", "tv"])}


async def _single_events(url: str, events: list[dict], concurrency: int) -> float:
    queue = iter(events)
    errors = 0

    async def worker(client: httpx.AsyncClient):
        nonlocal errors
        for event in queue:
            response = await client.post("/interactions", json=event)
            errors += response.status_code != 201

    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{errors} single-event requests failed")
    return len(events) / elapsed


async def _batches(url: str, events: list[dict], batch_size: int, concurrency: int) -> float:
    batches = iter([events[i : i + batch_size] for i in range(0, len(events), batch_size)])

    async def worker(client: httpx.AsyncClient):
        for batch in batches:
            response = await client.post("/interactions/batch", json={"events": batch})
            response.raise_for_status()

    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return len(events) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--users", type=int, default=2000, help="distinct user ids")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers")
    parser.add_argument("--catalog", type=Path, default=get_settings().processed_catalog_path)
    args = parser.parse_args()

    products = _product_ids(args.catalog)
    rng = random.Random(1)
    url, server = start_server(os.environ.copy(), args.workers)
    try:
        # Warm-up also creates most users' tables, so the runs below measure steady state.
        warmup = [_event(rng, products, args.users) for _ in range(args.users)]
        asyncio.run(_batches(url, warmup, 500, 2))
        single = asyncio.run(
            _single_events(
                url,
                [_event(rng, products, args.users) for _ in range(args.events)],
                args.concurrency,
            )
        )
        batched = asyncio.run(
            _batches(
                url,
                [_event(rng, products, args.users) for _ in range(args.events * 10)],
                args.batch_size,
                2,
            )
        )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    print(f"single events, {args.concurrency} concurrent clients: {single:,.0f} events/s")
    print(f"batches of {args.batch_size}, 2 concurrent clients: {batched:,.0f} events/s")


if __name__ == "__main__":
    main()
