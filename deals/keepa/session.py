"""The one requests Session per process that every KeepaClient shares.

A forked Celery worker gets its own Session on first use, because sockets of a
connection pool must not be shared across processes.
"""

from __future__ import annotations

import logging
import os
import threading

import requests

import dealsite
from dealsite.masking import KeepaKeyFilter

USER_AGENT = f"dealsite/{dealsite.__version__} (python-requests/{requests.__version__})"

# urllib3 logs request URLs, which carry the key, at DEBUG level from these loggers. A filter on a
# logger applies only to records logged on that very logger, so each one gets its own.
URLLIB3_LOGGERS = ("urllib3.connectionpool", "urllib3.util.retry", "urllib3.poolmanager", "urllib3.connection")

_lock = threading.Lock()
_session: requests.Session | None = None
_session_pid: int | None = None


def shared_session() -> requests.Session:
    global _session, _session_pid  # noqa: PLW0603 (one Session per process is the point)

    with _lock:
        if _session is None or _session_pid != os.getpid():
            _session = new_session()
            _session_pid = os.getpid()
        return _session


def new_session() -> requests.Session:
    session = requests.Session()
    session.headers.update({"User-Agent": USER_AGENT, "Accept-Encoding": "gzip", "Accept": "application/json"})
    return session


def mask_urllib3_logs() -> None:
    """Attach the key-masking filter to urllib3's loggers once per process."""
    for name in URLLIB3_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, KeepaKeyFilter) for existing in logger.filters):
            logger.addFilter(KeepaKeyFilter())
