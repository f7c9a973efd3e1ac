"""Keep a multi-worker server's keep-alive connections spread evenly over its workers.

`uvicorn --workers N` workers accept from one shared listening socket. A client that opens its
connections in a burst (a proxy's upstream pool, a load generator) leaves them where they were
accepted, often many more on one worker than another, and a worker's single event loop then sets
the latency while the other idles (docs/BENCHMARKS.md: the closed loop's p95 followed the
split). Each worker publishes how many connections it serves (those with a request in the last
second) in a small shared-memory table, a slot per worker. A worker serving at least two more
than its siblings' mean answers requests with `Connection: close`, half the excess per tick;
the clients reconnect, to whichever worker accepts first, and as only the busier side closes,
the split evens out. A single process (no supervisor) publishes nothing and never closes a
connection."""

import asyncio
import fcntl
import logging
import mmap
import multiprocessing
import os
import struct
import tempfile
import time
from collections.abc import Hashable
from pathlib import Path

from services import metrics

logger = logging.getLogger(__name__)

SLOTS = 64  # workers of one server at most
_SLOT = struct.Struct("=qdd")  # pid (0: free), connections served, monotonic time written
TICK_SECONDS = 0.1  # a worker counts, publishes and reads its siblings' counts every tick
ACTIVE_TICKS = 10  # a connection counts while its last request is at most this many ticks old
STALE_SECONDS = 1.0  # a slot not written for this long is a stopped worker's
# Close a connection when this worker serves at least this many more than its siblings' mean:
# moving one then narrows the gap (a gap of 1 it would only flip).
EXCESS_TO_SHED = 2.0


def load_table_path(supervisor_pid: int) -> Path:
    """One table per server: named after the supervisor process all its workers share."""
    folder = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    return folder / f"recsys-worker-loads-{supervisor_pid}"


class SiblingLoads:
    """This worker's slot in a table of every worker's load, in a file mapped by all of them."""

    def __init__(self, path: Path, pid: int | None = None):
        self.path = path
        self.pid = pid or os.getpid()
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # claiming a slot: one worker at a time
            if os.fstat(fd).st_size < SLOTS * _SLOT.size:
                os.ftruncate(fd, SLOTS * _SLOT.size)
            self._map = mmap.mmap(fd, SLOTS * _SLOT.size)
            self._offset = self._claim()
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _claim(self) -> int:
        now = time.monotonic()
        for slot in range(SLOTS):
            offset = slot * _SLOT.size
            pid, _, written = _SLOT.unpack_from(self._map, offset)
            if pid in (0, self.pid) or now - written > STALE_SECONDS:
                _SLOT.pack_into(self._map, offset, self.pid, 0.0, now)
                return offset
        raise RuntimeError(f"no free slot in {self.path}: more than {SLOTS} workers")

    def publish(self, load: float, now: float) -> None:
        _SLOT.pack_into(self._map, self._offset, self.pid, load, now)

    def siblings_mean(self, now: float) -> float | None:
        """The mean load of the other live workers, None when there are none."""
        loads = [
            load
            for pid, load, written in _SLOT.iter_unpack(self._map)
            if pid not in (0, self.pid) and now - written <= STALE_SECONDS
        ]
        return sum(loads) / len(loads) if loads else None

    def close(self) -> None:
        _SLOT.pack_into(self._map, self._offset, 0, 0.0, 0.0)
        self._map.close()
        try:
            if not any(pid for pid, _, _ in _SLOT.iter_unpack(self.path.read_bytes())):
                self.path.unlink()  # the last worker out removes the table
        except FileNotFoundError:
            pass


class WorkerBalance:
    """Notes the connection (client address) of each request (RequestContextMiddleware), counts
    and publishes this worker's active connections every tick once started, and says when a
    response should close its connection."""

    def __init__(self, table_path: Path, pid: int | None = None):
        self.table_path = table_path
        self.pid = pid
        self.table: SiblingLoads | None = None
        self.ticks = 0
        self.connections = 0  # with a request in the last ACTIVE_TICKS ticks, as of the last tick
        self.excess = 0.0  # connections minus the siblings' mean, as of the last tick
        self._last_request: dict[Hashable, int] = {}  # client address -> tick of its request
        self._closes_left = 0  # this tick's
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Claims this worker's slot and ticks from now on (in the running event loop). Without
        a table (no writable shared memory) the worker serves on, unbalanced."""
        try:
            self.open_table()
        except OSError as error:
            logger.warning("worker balance off: no load table at %s (%s)", self.table_path, error)
            return
        self._tick()

    def open_table(self) -> None:
        self.table = SiblingLoads(self.table_path, self.pid)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.table is not None:
            self.table.close()
            self.table = None
        self.excess = 0.0
        self._closes_left = 0

    def saw(self, client: Hashable | None) -> None:
        if client is not None and self.table is not None:
            self._last_request[client] = self.ticks

    def _tick(self) -> None:
        self.update()
        self._timer = asyncio.get_running_loop().call_later(TICK_SECONDS, self._tick)

    def update(self) -> None:
        """A tick's work: count the active connections, publish, read the siblings'."""
        self.ticks += 1
        oldest = self.ticks - ACTIVE_TICKS
        self._last_request = {c: t for c, t in self._last_request.items() if t >= oldest}
        self.connections = len(self._last_request)
        now = time.monotonic()
        self.table.publish(self.connections, now)
        siblings = self.table.siblings_mean(now)
        self.excess = 0.0 if siblings is None else self.connections - siblings
        # Half the excess per tick (a reconnection may land here again): a large imbalance,
        # as of many connections opened at once, evens out in a few ticks, a small one in one.
        self._closes_left = int(self.excess // 2) if self.excess >= EXCESS_TO_SHED else 0

    def should_close(self, client: Hashable | None) -> bool:
        """Whether this response should close its connection: at most half the excess per tick,
        so that the next tick sees where the closed ones reconnected."""
        if client is None or self._closes_left <= 0:
            return False
        self._closes_left -= 1
        self._last_request.pop(client, None)
        metrics.CONNECTIONS_CLOSED_TO_BALANCE.inc()
        return True


def worker_balance() -> WorkerBalance | None:
    """A balance for this worker when it is one of a supervisor's (uvicorn --workers N), else
    None: a lone process has no sibling to hand connections to."""
    if multiprocessing.parent_process() is None:
        return None
    return WorkerBalance(load_table_path(os.getppid()))
