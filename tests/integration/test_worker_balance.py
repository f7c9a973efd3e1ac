"""Worker balance in real processes (uvicorn --workers 2, tests/integration/balance_app.py):
each worker claims a slot in the supervisor's load table; of a burst of connections, those one
worker accepted are kept busy and the others left idle, and the busy worker closes some
(Connection: close) until the clients' reconnections leave it half of them; the last worker
to stop removes the table."""

import http.client
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from bench.server import free_port
from routers import worker_balance as wb

ROOT = Path(__file__).resolve().parents[2]


def _get(conn: http.client.HTTPConnection, path: str) -> tuple[int, bool]:
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    return int(body), response.getheader("connection") == "close"


def _wait_ready(port: int, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert server.poll() is None, "uvicorn exited"
        try:
            _get(http.client.HTTPConnection("127.0.0.1", port, timeout=2), "/")
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError("uvicorn did not start")


def test_the_worker_holding_a_burst_of_connections_closes_some():
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "tests.integration.balance_app:app",
            "--port",
            str(port),
            "--workers",
            "2",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
    )
    table = wb.load_table_path(server.pid)
    try:
        _wait_ready(port, server)
        connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=5) for _ in range(16)]
        served_by = [_get(conn, "/")[0] for conn in connections]
        workers = set(served_by)
        busy = Counter(served_by).most_common(1)[0][0]
        # Load only the connections one worker accepted: its sibling serves nothing.
        loaded = [c for c, pid in zip(connections, served_by, strict=True) if pid == busy]
        holder = {id(conn): busy for conn in loaded}  # the worker that served its last request
        closes: Counter = Counter()
        stop = threading.Event()

        def keep_asking(conn: http.client.HTTPConnection) -> None:
            while not stop.is_set():
                pid, closed = _get(conn, "/slow")  # reconnects by itself after a close
                holder[id(conn)] = pid
                closes[pid] += closed

        threads = [threading.Thread(target=keep_asking, args=(conn,)) for conn in loaded]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 15
        try:
            while time.monotonic() < deadline:
                time.sleep(0.1)
                held = Counter(holder.values())
                if len(held) == 2 and held[busy] <= len(loaded) // 2 + 1:
                    break  # balanced: the busy worker kept half, give or take one
            slots = table.read_bytes()  # while both workers run
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        live = {pid for pid, _, _ in wb._SLOT.iter_unpack(slots) if pid}
        assert live == set(held) | workers
        assert len(held) == 2 and held[busy] <= len(loaded) // 2 + 1, held
        assert closes[busy] >= 1
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    assert not table.exists()
