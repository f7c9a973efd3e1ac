"""Start the service under uvicorn for a benchmark and wait until it is ready."""

import socket
import subprocess
import sys
import tempfile
import time

import httpx


def server_environment(env: dict[str, str], database_url: str, **extra: str) -> dict[str, str]:
    """The service's environment for a measurement: no scheduled job may start in the middle of
    it, warnings only in the log, and /metrics across the workers."""
    return env | {
        "DATABASE_URL": database_url,
        "SCHEDULER_ENABLED": "false",
        "LOG_LEVEL": "WARNING",
        "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="prometheus-"),
        **extra,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, server: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("server exited during start-up")
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError("server not ready")


def start_server(env: dict[str, str], workers: int) -> tuple[str, subprocess.Popen]:
    """uvicorn with `workers` on a free port, started and ready; returns (base URL, process)."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "main:app", "--port", str(port)]
    command += ["--workers", str(workers), "--no-access-log", "--log-level", "warning"]
    # Its own process group: a test or a benchmark can kill uvicorn and its workers together.
    server = subprocess.Popen(command, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, server)
    except BaseException:
        server.terminate()
        raise
    time.sleep(2 * workers)  # every worker has started, not only the first to answer
    return url, server
