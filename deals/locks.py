"""Single-flight locks for ingestion: at most one run per deal query at a time, across all workers.

A lock is a Redis key with a TTL, so a lock left by a crashed worker expires
by itself and no manual cleanup (let alone a flush) is ever needed. The
holder extends the TTL while it makes progress, including while it waits
for tokens.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django_redis import get_redis_connection
from redis.exceptions import LockError
from redis.lock import Lock

logger = logging.getLogger(__name__)


def ingestion_lock_key(query_id: int) -> str:
    return f"{settings.REDIS_KEY_PREFIX}:deals:ingestion-lock:{query_id}"


class QueryLock:
    """The ingestion lock of one deal query. ttl_seconds bounds how long a dead holder blocks others."""

    def __init__(self, query_id: int, *, ttl_seconds: float | None = None) -> None:
        self.query_id = query_id
        self.ttl_seconds = float(ttl_seconds if ttl_seconds is not None else settings.INGEST_LOCK_TTL_SECONDS)
        self.key = ingestion_lock_key(query_id)
        # redis-py's Lock stores a random token and releases or extends only
        # when the key still holds it (an atomic Lua check).
        self._lock = Lock(
            get_redis_connection("default"),
            self.key,
            timeout=self.ttl_seconds,
            blocking=False,
            thread_local=False,
        )

    def acquire(self) -> bool:
        """Take the lock without waiting; return False when another run holds it."""
        return bool(self._lock.acquire(blocking=False))

    def extend(self) -> bool:
        """Reset the TTL to ttl_seconds. Return False when the lock expired and was lost."""
        try:
            self._lock.extend(self.ttl_seconds, replace_ttl=True)
        except LockError:
            logger.warning("The ingestion lock of deal query %s expired before the run extended it.", self.query_id)
            return False
        return True

    def release(self) -> None:
        try:
            self._lock.release()
        except LockError:
            # Expired (and maybe taken by another run): that run's lock is not ours to delete.
            logger.warning("The ingestion lock of deal query %s had expired before release.", self.query_id)

    def is_held(self) -> bool:
        return bool(self._lock.owned())
