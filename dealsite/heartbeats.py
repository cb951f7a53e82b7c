"""Heartbeats that Celery workers and beat write to Redis, and their reading by the health checks.

Each worker adds itself to a sorted set scored by the Unix time of its latest
heartbeat, and beat writes one key with a time to live. Reading them costs one
Redis round trip each, so /healthz can be polled every few seconds without
broadcasting an `inspect` to every worker.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, ClassVar

from celery import bootsteps
from django.conf import settings

logger = logging.getLogger(__name__)

# A worker gone for this long is dropped from the set by the next heartbeat of any worker.
FORGET_WORKER_SECONDS = 24 * 3600


def workers_key() -> str:
    return f"{settings.REDIS_KEY_PREFIX}:heartbeat:workers"


def beat_key() -> str:
    return f"{settings.REDIS_KEY_PREFIX}:heartbeat:beat"


def heartbeat_interval() -> float:
    return float(settings.HEARTBEAT_INTERVAL_SECONDS)


def stale_after() -> float:
    """Return the seconds after which a missing heartbeat means the process is gone (three missed beats)."""
    return 3 * heartbeat_interval()


def _redis() -> Any:
    from django_redis import get_redis_connection

    return get_redis_connection("default")


def record_worker_heartbeat(hostname: str, client: Any = None, now: float | None = None) -> None:
    """Store the time of `hostname`'s heartbeat and forget workers silent for a day."""
    client = client or _redis()
    now = time.time() if now is None else now
    pipeline = client.pipeline(transaction=False)
    pipeline.zadd(workers_key(), {hostname: now})
    pipeline.zremrangebyscore(workers_key(), "-inf", now - FORGET_WORKER_SECONDS)
    pipeline.execute()


def forget_worker(hostname: str, client: Any = None) -> None:
    client = client or _redis()
    client.zrem(workers_key(), hostname)


def record_beat_heartbeat(client: Any = None, now: float | None = None) -> None:
    client = client or _redis()
    now = time.time() if now is None else now
    client.set(beat_key(), repr(now), ex=max(1, int(stale_after() * 2)))


def live_workers(client: Any, now: float | None = None) -> dict[str, float]:
    """Return each worker seen within `stale_after()` seconds, with the seconds since its heartbeat."""
    now = time.time() if now is None else now
    entries = client.zrangebyscore(workers_key(), now - stale_after(), "+inf", withscores=True)
    return {_text(hostname): max(0.0, now - score) for hostname, score in entries}


def latest_worker_heartbeat(client: Any) -> float | None:
    """Return the Unix time of the newest worker heartbeat, however old, or None when no worker ever beat."""
    entries = client.zrevrange(workers_key(), 0, 0, withscores=True)
    return entries[0][1] if entries else None


def beat_heartbeat(client: Any) -> float | None:
    """Return the Unix time of beat's latest heartbeat, or None when there is none within its time to live."""
    value = client.get(beat_key())
    return float(_text(value)) if value is not None else None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class WorkerHeartbeat(bootsteps.StartStopStep):
    """A worker bootstep that records a heartbeat on the worker's timer every HEARTBEAT_INTERVAL_SECONDS."""

    requires: ClassVar[set[str]] = {"celery.worker.components:Timer"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.timer_entry = None

    def start(self, worker: Any) -> None:
        self._beat(worker.hostname)
        self.timer_entry = worker.timer.call_repeatedly(heartbeat_interval(), self._beat, (worker.hostname,))
        logger.info("Worker %s writes a heartbeat every %.0f s", worker.hostname, heartbeat_interval())

    def stop(self, worker: Any) -> None:
        if self.timer_entry is not None:
            self.timer_entry.cancel()
            self.timer_entry = None
        try:
            forget_worker(worker.hostname)
        except Exception:
            logger.warning("Could not remove worker %s from the heartbeat set", worker.hostname, exc_info=True)

    def _beat(self, hostname: str) -> None:
        # A Redis outage must not stop the worker; the health check reports the missing heartbeat.
        try:
            record_worker_heartbeat(hostname)
        except Exception:
            logger.warning("Could not write the heartbeat of worker %s", hostname, exc_info=True)


class BeatHeartbeatThread(threading.Thread):
    """A daemon thread in the beat process that records beat's heartbeat until the process exits."""

    def __init__(self) -> None:
        super().__init__(name="beat-heartbeat", daemon=True)

    def run(self) -> None:
        while True:
            try:
                record_beat_heartbeat()
            except Exception:
                logger.warning("Could not write the beat heartbeat", exc_info=True)
            time.sleep(heartbeat_interval())


_beat_thread_lock = threading.Lock()
_beat_thread: BeatHeartbeatThread | None = None


def start_beat_heartbeat(**_signal_arguments: Any) -> None:
    """Start the beat heartbeat thread once per process (beat embedded in a worker sends two init signals)."""
    global _beat_thread  # noqa: PLW0603
    with _beat_thread_lock:
        if _beat_thread is not None:
            return
        _beat_thread = BeatHeartbeatThread()
        _beat_thread.start()
    logger.info("Beat writes a heartbeat every %.0f s", heartbeat_interval())


def install(app: Any) -> None:
    """Register the worker bootstep and the beat signal handlers on the Celery `app`."""
    from celery.signals import beat_embedded_init, beat_init

    app.steps["worker"].add(WorkerHeartbeat)
    beat_init.connect(start_beat_heartbeat, weak=False)
    beat_embedded_init.connect(start_beat_heartbeat, weak=False)
