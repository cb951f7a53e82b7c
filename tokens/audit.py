"""Writing the token audit trail. A failed write is logged and never fails the Keepa call it describes."""

from __future__ import annotations

import logging
import os
import socket

from django.db import DatabaseError

from dealsite.db import save_on_fresh_connection_if_lost
from dealsite.masking import mask_secrets
from tokens.models import TokenEvent

logger = logging.getLogger(__name__)

MESSAGE_LENGTH = TokenEvent._meta.get_field("message").max_length
TASK_LENGTH = TokenEvent._meta.get_field("task").max_length


def worker_name() -> str:
    """Return host:pid of this process; read each time, because Celery forks workers."""
    return f"{socket.gethostname()}:{os.getpid()}"[:100]


def record_event(
    kind: str,
    *,
    secrets: tuple[str, ...] = (),
    message: str = "",
    task: str = "",
    **fields: object,
) -> TokenEvent | None:
    """Write one audit row. `secrets` are masked out of the message and task (the Keepa key)."""
    event = TokenEvent(
        kind=kind,
        worker=worker_name(),
        task=mask_secrets(task, secrets)[:TASK_LENGTH],
        message=mask_secrets(message, secrets)[:MESSAGE_LENGTH],
        **fields,
    )
    try:
        save_on_fresh_connection_if_lost(event)
    except DatabaseError:
        logger.exception("Writing the token audit event %s failed; the ledger itself is unaffected.", kind)
        return None
    return event
