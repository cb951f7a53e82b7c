"""Deletion of stale deals: deals Keepa has not reported for a while although dealsite checked them.

A deal counts as stale only when it was not seen for the given hours and its
refresh is not overdue, that is Keepa was asked about it within
DEAL_REFRESH_AFTER_HOURS and did not report its offer. A deal that went
unrefreshed because tokens ran short is kept and reported as backlog.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Min, QuerySet
from django.utils import timezone

from deals.models import Deal

logger = logging.getLogger(__name__)

DELETE_BATCH_SIZE = 1000


@dataclass
class CleanupResult:
    deleted: int
    backlog: int
    oldest_backlog_check: datetime | None
    cutoff: datetime

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        for name in ("oldest_backlog_check", "cutoff"):
            values[name] = values[name].isoformat() if values[name] else None
        return values


def stale_deals(older_than_hours: float, now: datetime) -> QuerySet[Deal]:
    cutoff = now - timedelta(hours=older_than_hours)
    return Deal.objects.filter(last_seen_at__lt=cutoff, checked_at__gte=_refresh_cutoff(now))


def overdue_unseen_deals(older_than_hours: float, now: datetime) -> QuerySet[Deal]:
    cutoff = now - timedelta(hours=older_than_hours)
    return Deal.objects.filter(last_seen_at__lt=cutoff, checked_at__lt=_refresh_cutoff(now))


def clean_stale_deals(
    older_than_hours: float | None = None, *, batch_size: int = DELETE_BATCH_SIZE, dry_run: bool = False
) -> CleanupResult:
    """Delete stale deals in batches of `batch_size` and report the backlog of overdue refreshes."""
    hours = settings.DEAL_STALE_AFTER_HOURS if older_than_hours is None else older_than_hours
    if hours <= 0:
        raise ValueError(f"older_than_hours={hours!r} must be positive: pass the hours a deal may go unseen.")
    now = timezone.now()

    deleted = 0
    stale = stale_deals(hours, now).order_by("pk")
    if dry_run:
        deleted = stale.count()
    else:
        while True:
            ids = list(stale.values_list("pk", flat=True)[:batch_size])
            if not ids:
                break
            deleted += Deal.objects.filter(pk__in=ids).delete()[0]

    backlog = overdue_unseen_deals(hours, now).aggregate(count=Count("pk"), oldest=Min("checked_at"))
    result = CleanupResult(
        deleted=deleted,
        backlog=backlog["count"],
        oldest_backlog_check=backlog["oldest"],
        cutoff=now - timedelta(hours=hours),
    )
    logger.info(
        "Stale deals %s: %s not seen since %s. Backlog kept: %s deals with an overdue refresh, oldest checked %s.",
        "counted" if dry_run else "deleted", deleted, result.cutoff, result.backlog, result.oldest_backlog_check,
    )
    return result


def _refresh_cutoff(now: datetime) -> datetime:
    return now - timedelta(hours=settings.DEAL_REFRESH_AFTER_HOURS)
