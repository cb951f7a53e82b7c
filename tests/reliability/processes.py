"""The processes of a reliability run: the Keepa sandbox, Celery workers, and the task schedule that replaces beat.

Every process is a real subprocess of `manage.py` or `celery -A dealsite`,
configured through its environment, so it reaches the private Redis and the
database exactly as a deployment would.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.reliability.servers import free_port, stop_process

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent.parent
START_SECONDS = 40
HTTP_SECONDS = 5


@dataclass
class SoakConfig:
    """Sandbox and ledger settings shared by the sandbox, the workers and the checks.

    refill_rate is tokens per refill interval's minute as Keepa counts it; the
    sandbox and the ledger both add refill_rate tokens every refill_interval_ms.
    """

    api_key: str
    redis_url: str
    database_url: str
    key_prefix: str
    var_dir: Path
    seed: int = 7
    catalogue_size: int = 300
    new_deals_per_minute: float = 30.0
    refill_rate: float = 20.0
    refill_interval_ms: int = 1000
    initial_tokens: float = 40.0
    anchor_ms: int = 0
    extra_environment: dict[str, str] = field(default_factory=dict)

    def environment(self, sandbox_url: str = "") -> dict[str, str]:
        environment = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "dealsite.settings",
            "DEALSITE_REDIS_PREFIX": self.key_prefix,
            "REDIS_URL": self.redis_url,
            "DATABASE_URL": self.database_url,
            "DEALSITE_VAR_DIR": str(self.var_dir),
            "KEEPA_API_KEY": self.api_key,
            "KEEPA_REFILL_INTERVAL_MS": str(self.refill_interval_ms),
            "KEEPA_CONNECT_TIMEOUT": "1",
            "KEEPA_READ_TIMEOUT": "2",
            "KEEPA_MAX_RETRIES": "1",
            "KEEPA_RETRY_BACKOFF": "0.05",
            "KEEPA_RETRY_BACKOFF_MAX": "0.2",
            "KEEPA_MAX_WAIT_SECONDS": "5",
            "KEEPA_SYNC_INTERVAL_SECONDS": "5",
            "KEEPA_RESERVATION_TTL_SECONDS": "8",
            "DEALSITE_INGEST_LOCK_TTL_SECONDS": "8",
            "DEALSITE_INGEST_ENRICH": "0",
            "DEALSITE_HEARTBEAT_INTERVAL_SECONDS": "5",
            "DJANGO_LOG_LEVEL": "INFO",
            **self.extra_environment,
        }
        environment.pop("DJANGO_DEBUG", None)
        if sandbox_url:
            environment["KEEPA_API_URL"] = sandbox_url
        return environment


class SandboxProcess:
    """`manage.py keepa_sandbox` as a subprocess, steered through /_sandbox/control and read through /_sandbox/state.

    The anchor time is written to the sandbox's persistent state file first, so
    this process can rebuild the same catalogue (see `catalogue()`).
    """

    def __init__(self, config: SoakConfig, *, latency_ms: int = 0, faults: tuple[str, ...] = ()) -> None:
        self.config = config
        self.port = free_port()
        self.latency_ms = latency_ms
        self.faults = faults
        self.process: subprocess.Popen | None = None
        self.log_path = config.var_dir / "sandbox.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SandboxProcess:
        from deals.sandbox.persistence import SandboxAnchor, save_anchor

        config = self.config
        if not config.anchor_ms:
            config.anchor_ms = int(time.time() * 1000) // 60_000 * 60_000
        save_anchor(config.var_dir / "sandbox" / "anchor.json", SandboxAnchor(config.seed, config.anchor_ms))
        command = [
            sys.executable, "manage.py", "keepa_sandbox", "--port", str(self.port), "--key", config.api_key,
            "--seed", str(config.seed), "--refill-rate", str(config.refill_rate),
            "--refill-interval-ms", str(config.refill_interval_ms), "--initial-tokens", str(config.initial_tokens),
            "--deals", str(config.catalogue_size), "--new-deals-per-minute", str(config.new_deals_per_minute),
            "--latency-ms", str(self.latency_ms), "--persistent", "--quiet",
        ]
        for spec in self.faults:
            command += ["--fault", spec]
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, env=config.environment(), stdout=log,
                                            stderr=subprocess.STDOUT)
        wait_until(lambda: "listening on" in self.log_path.read_text(), START_SECONDS, self.process,
                   f"the sandbox did not start: {self.log_path}")
        return self

    def stop(self) -> None:
        stop_process(self.process)

    def _request(self, path: str, body: dict[str, Any] | None = None, query: str = "") -> dict[str, Any]:
        url = f"{self.url}{path}?key={self.config.api_key}{query}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")  # noqa: S310
        with urllib.request.urlopen(request, timeout=HTTP_SECONDS) as response:  # noqa: S310 - loopback only
            return json.loads(response.read())

    def state(self, *, domain: int = 1, asins: bool = False) -> dict[str, Any]:
        query = f"&domain={domain}" + ("&include=asins" if asins else "")
        return self._request("/_sandbox/state", query=query)

    def control(self, **command: Any) -> dict[str, Any]:
        return self._request("/_sandbox/control", body=command)

    def catalogue(self):
        """The sandbox's generated catalogue, rebuilt here from the same seed, anchor and size.

        Deals added through control are not in it; `state(asins=True)` lists them.
        """
        from deals.sandbox.catalogue import DealCatalogue

        config = self.config
        return DealCatalogue(seed=config.seed, anchor_ms=config.anchor_ms, size=config.catalogue_size,
                             new_deals_per_minute=config.new_deals_per_minute)


class WorkerProcess:
    """One `celery -A dealsite worker --pool solo` with a unique node name."""

    def __init__(self, name: str, config: SoakConfig, sandbox_url: str) -> None:
        self.name = name
        self.config = config
        self.sandbox_url = sandbox_url
        self.log_path = config.var_dir / f"worker-{name}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        command = [
            sys.executable, "-m", "celery", "-A", "dealsite", "worker", "--pool", "solo", "-n", f"{self.name}@%h",
            "--without-heartbeat", "--without-gossip", "--without-mingle", "--loglevel", "INFO",
        ]
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, env=self.config.environment(self.sandbox_url),
                                            stdout=log, stderr=subprocess.STDOUT)
        return self

    def wait_ready(self) -> None:
        wait_until(lambda: "ready." in self.log_path.read_text(), START_SECONDS, self.process,
                   f"worker {self.name} did not start: {self.log_path}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, number: int) -> None:
        if self.alive():
            os.kill(self.pid, number)

    def sigkill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=10)

    def stop(self, *, timeout: float = 20.0) -> None:
        stop_process(self.process, timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


class TaskSchedule:
    """Queues ingestion tasks on the private broker, standing in for beat with a short interval.

    A task is queued only while the queue is short, so faults that stop the
    workers do not pile up work that outlives the run.
    """

    def __init__(self, config: SoakConfig) -> None:
        from celery import Celery

        self.config = config
        # Not the current app: shared tasks queued later in this process must keep using dealsite's broker.
        self.app = Celery("dealsite-soak", broker=config.redis_url, set_as_current=False)
        self.app.conf.broker_transport_options = {"global_keyprefix": f"{config.key_prefix}:celery:"}
        self.app.conf.broker_connection_timeout = 1
        self.app.conf.broker_connection_retry = False
        self.app.conf.task_publish_retry = False
        self.queue_key = f"{config.key_prefix}:celery:celery"
        self.queued = 0
        self.failed_publishes = 0

    def queue_length(self) -> int | None:
        import redis

        try:
            return int(redis.Redis.from_url(self.config.redis_url, socket_timeout=1).llen(self.queue_key))
        except redis.RedisError:
            return None

    def queue(self, query_names: list[str], *, max_queued: int) -> int:
        """Queue update_recent_deals for each name while fewer than max_queued tasks wait. Return how many."""
        waiting = self.queue_length()
        if waiting is None:
            self.failed_publishes += 1
            return 0
        queued = 0
        for name in query_names:
            if waiting + queued >= max_queued:
                break
            try:
                self.app.send_task("deals.tasks.update_recent_deals", args=[name])
            except Exception:
                self.failed_publishes += 1
                break
            queued += 1
        self.queued += queued
        return queued


def wait_until(condition: Any, seconds: float, process: subprocess.Popen | None, message: str) -> None:
    """Poll `condition` every 0.1 s until it holds; raise RuntimeError after `seconds` or if `process` exits."""
    deadline = time.monotonic() + seconds
    while True:
        if condition():
            return
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{message} (exited with {process.returncode})")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{message} (after {seconds:g} s)")
        time.sleep(0.1)
