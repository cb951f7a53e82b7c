"""Celery tasks of the deals app. Beat queues update_recent_deals_for_active_queries every INGEST_INTERVAL_SECONDS."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from deals.ingestion import IngestionOptions
from deals.ingestion import update_recent_deals as run_ingestion
from deals.ingestion.janitor import clean_stale_deals as delete_stale_deals
from deals.ingestion.refresh import RefreshPostponed, refresh_selected_deals
from deals.models import DealQuery
from tokens.errors import TokenRechargeError

logger = logging.getLogger(__name__)

# A task that keeps hitting long token waits gives up after this many retries;
# beat queues a new one every INGEST_INTERVAL_SECONDS anyway.
MAX_TOKEN_RETRIES = 20


@shared_task(bind=True, name="deals.tasks.update_recent_deals", max_retries=MAX_TOKEN_RETRIES)
def update_recent_deals(
    self: Any,
    query_name: str,
    max_pages: int | None = None,
    max_deals: int | None = None,
    enrich: bool | None = None,
) -> dict[str, Any]:
    """Run ingestion for one deal query. On a long token wait, retry with the ledger's retry_after as countdown.

    Returns the run's summary. The worker is never held while tokens refill.
    """
    options = IngestionOptions(max_pages=max_pages, max_deals=max_deals, enrich=enrich, trigger="task")
    try:
        run = run_ingestion(query_name, options)
    except TokenRechargeError as error:
        countdown = max(1.0, error.retry_after)
        logger.info("Ingestion of deal query %s retries in %.0f s to wait for tokens.", query_name, countdown)
        raise self.retry(countdown=countdown, exc=error) from error
    return summarize(run)


@shared_task(name="deals.tasks.update_recent_deals_for_active_queries")
def update_recent_deals_for_active_queries() -> list[str]:
    """Queue one update_recent_deals task per active deal query. Returns the query names."""
    names = list(DealQuery.objects.filter(is_active=True).order_by("name").values_list("name", flat=True))
    for name in names:
        update_recent_deals.delay(name)
    logger.info("Queued update_recent_deals for %s active deal queries.", len(names))
    return names


@shared_task(bind=True, name="deals.tasks.refresh_deals", max_retries=MAX_TOKEN_RETRIES)
def refresh_deals(self: Any, deal_ids: list[int]) -> dict[str, Any]:
    """Refresh the current values of these deals from Keepa, as requested by the admin's refresh action.

    On a long token wait the task retries later with only the deals not yet refreshed.
    """
    try:
        outcome = refresh_selected_deals(deal_ids)
    except RefreshPostponed as postponed:
        countdown = max(1.0, postponed.retry_after)
        logger.info("Refresh of %s deals retries in %.0f s to wait for tokens.",
                    len(postponed.outcome.remaining_ids), countdown)
        raise self.retry(args=[postponed.outcome.remaining_ids], countdown=countdown, exc=postponed) from postponed
    return outcome.as_dict()


@shared_task(name="deals.tasks.clean_stale_deals")
def clean_stale_deals(older_than_hours: float | None = None) -> dict[str, Any]:
    """Delete deals not seen for DEAL_STALE_AFTER_HOURS (or older_than_hours) whose refresh is not overdue."""
    return delete_stale_deals(older_than_hours).as_dict()


def summarize(run: Any) -> dict[str, Any]:
    return {
        "run_id": run.pk,
        "query": run.query.name,
        "status": run.status,
        "pages_fetched": run.pages_fetched,
        "deals_created": run.deals_created,
        "deals_updated": run.deals_updated,
        "deals_skipped": run.deals_skipped,
        "skip_reasons": run.skip_reasons,
        "tokens_consumed": run.tokens_consumed,
        "stop_reason": run.stop_reason,
        "error": run.error,
    }
