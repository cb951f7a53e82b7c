"""Data for the admin's token panel: the ledger's status from Redis and the balance from the audit trail."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from dealsite.balance_chart import balance_chart
from dealsite.masking import mask_key

logger = logging.getLogger(__name__)

CHART_HOURS = 24


def token_panel_context() -> dict[str, Any]:
    """Return the template context of the token panel. Reads Redis and the database, never Keepa."""
    from tokens.errors import LedgerError
    from tokens.manager import TokenManager

    context: dict[str, Any] = {
        "masked_key": mask_key(settings.KEEPA_API_KEY),
        "ledger": None,
        "ledger_error": "",
        "chart_hours": CHART_HOURS,
    }
    try:
        context["ledger"] = TokenManager().status()
    except LedgerError as error:
        logger.warning("The token panel cannot read the ledger: %s", error)
        context["ledger_error"] = (
            "The token ledger is unavailable because Redis cannot be reached. Workers cannot start Keepa calls "
            "until it is back. Check that Redis is running and that REDIS_URL points at it."
        )

    deficit_floor = context["ledger"].max_deficit if context["ledger"] else float(settings.KEEPA_MAX_DEFICIT)
    context["chart"] = balance_chart(balance_samples(CHART_HOURS), deficit_floor, hours=CHART_HOURS)
    return context


def balance_samples(hours: int) -> list[tuple[Any, float]]:
    """Return (time, tokens left after the event) of every audit event of the last `hours` hours, oldest first."""
    from tokens.models import TokenEvent

    since = timezone.now() - timedelta(hours=hours)
    rows = (
        TokenEvent.objects.filter(created_at__gte=since, balance_after__isnull=False)
        .order_by("created_at", "id")
        .values_list("created_at", "balance_after")
    )
    return list(rows)
