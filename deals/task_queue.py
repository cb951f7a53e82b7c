"""Queueing of ingestion tasks from the web process, by task name through the Celery broker.

The admin only queues; a worker runs the task and spends Keepa tokens through
the ledger. Tasks are sent by name, so the web process needs neither the
task's code nor a Keepa client.
"""

from __future__ import annotations

import logging

from kombu.exceptions import OperationalError

from dealsite.celery import app

logger = logging.getLogger(__name__)

UPDATE_RECENT_DEALS_TASK = "deals.tasks.update_recent_deals"
REFRESH_DEALS_TASK = "deals.tasks.refresh_deals"

# Keepa's product endpoint takes at most 100 ASINs per call, so one task refreshes at most that many deals.
REFRESH_BATCH_SIZE = 100


class TaskQueueError(Exception):
    """A task could not be queued: it does not exist in this code base, or the broker is unreachable."""


def queue_query_run(query: object) -> str:
    """Queue update_recent_deals for one deal query and return the Celery task id."""
    return _send(UPDATE_RECENT_DEALS_TASK, kwargs={"query_name": query.name})


def queue_deal_refresh(deal_ids: list[int]) -> list[str]:
    """Queue refresh_deals in batches of at most REFRESH_BATCH_SIZE deal ids; return the task ids."""
    task_ids = []
    for start in range(0, len(deal_ids), REFRESH_BATCH_SIZE):
        batch = deal_ids[start : start + REFRESH_BATCH_SIZE]
        task_ids.append(_send(REFRESH_DEALS_TASK, args=[batch]))
    return task_ids


def task_exists(name: str) -> bool:
    # The task modules are imported on first use, as a worker would import them.
    app.loader.import_default_modules()
    return name in app.tasks


def _send(name: str, *, args: list | None = None, kwargs: dict | None = None) -> str:
    if not task_exists(name):
        raise TaskQueueError(f"The Celery task {name} does not exist in this version of dealsite; nothing was queued.")
    try:
        result = app.send_task(name, args=args, kwargs=kwargs)
    except OperationalError as error:
        logger.error("Queueing %s failed: %s", name, error)
        raise TaskQueueError(
            f"Queueing {name} failed because the Celery broker is unreachable ({error}): check Redis."
        ) from error
    logger.info("Queued %s as task %s", name, result.id)
    return result.id
