"""Product calls after the deal pages: enrich the deals a run created, then refresh overdue ones.

Both are optional work: a batch starts only when the ledger reports enough
tokens, and a batch that would have to wait ends the work for this run.
Deals left over stay overdue and are picked up, oldest first, by a later
run; clean_stale_deals reports them as a backlog instead of deleting them.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from deals.ingestion.calls import TokenGate
from deals.keepa import KeepaClient, price_at
from deals.models import Deal, DealQuery
from deals.parsing import CURRENT_FIELDS, InvalidDeal, parse_current_values

logger = logging.getLogger(__name__)

MAX_ASINS_PER_CALL = 100
# Keepa's documented base cost of a product call without offers: 1 token per ASIN.
DEFAULT_COST_PER_ASIN = 1.0
# Days of statistics to ask for, by the deal query's dateRange.
STATS_DAYS = {0: 1, 1: 7, 2: 31, 3: 90}
REFRESHED_FIELDS = [*CURRENT_FIELDS.values(), "checked_at", "refreshed_at", "last_seen_at"]


@dataclass
class EnrichmentOutcome:
    enriched: int = 0
    refreshed: int = 0
    note: str = ""


def enrich_and_refresh(
    query: DealQuery, created_asins: list[str], client: KeepaClient, gate: TokenGate
) -> EnrichmentOutcome:
    """Refresh the deals created by this run, then up to DEAL_REFRESH_MAX_PER_RUN overdue deals."""
    outcome = EnrichmentOutcome()
    batch_size = product_batch_size(gate)

    outcome.enriched, left = refresh_deals(query, created_asins, client, gate, batch_size)
    if left:
        outcome.note = f"{left} new deals were not enriched: not enough tokens."
        return outcome

    overdue = overdue_asins(query.domain, settings.DEAL_REFRESH_MAX_PER_RUN)
    outcome.refreshed, left = refresh_deals(query, overdue, client, gate, batch_size)
    if left:
        outcome.note = f"{left} overdue deals were not refreshed: not enough tokens."
    return outcome


def product_batch_size(gate: TokenGate) -> int:
    """Return how many ASINs one product call may carry so that its cost never exceeds what the ledger grants.

    The per-ASIN cost is what the ledger learned from earlier calls; the
    largest grantable cost follows from the refill rate and the deficit floor.
    """
    per_asin = max(gate.estimate("product", 1, DEFAULT_COST_PER_ASIN), 0.01)
    largest = gate.largest_grantable_cost()
    if largest is None:
        return MAX_ASINS_PER_CALL
    return max(1, min(MAX_ASINS_PER_CALL, math.floor(largest / per_asin)))


def overdue_asins(domain: int, limit: int) -> list[str]:
    """Return up to `limit` ASINs whose Keepa data is older than DEAL_REFRESH_AFTER_HOURS, oldest first."""
    if limit <= 0:
        return []
    cutoff = timezone.now() - timedelta(hours=settings.DEAL_REFRESH_AFTER_HOURS)
    return list(
        Deal.objects.filter(domain=domain, checked_at__lt=cutoff)
        .order_by("checked_at")
        .values_list("asin", flat=True)[:limit]
    )


def refresh_deals(
    query: DealQuery, asins: list[str], client: KeepaClient, gate: TokenGate, batch_size: int
) -> tuple[int, int]:
    """Refresh `asins` in batches. Return (deals refreshed, ASINs left because tokens ran short)."""
    refreshed = 0
    for start in range(0, len(asins), batch_size):
        batch = asins[start : start + batch_size]
        cost = gate.estimate("product", len(batch), DEFAULT_COST_PER_ASIN * len(batch))
        if not gate.has_enough_tokens(cost):
            logger.info("Refresh of %s deals postponed: the ledger has not %.0f tokens to spare.", len(batch), cost)
            return refreshed, len(asins) - start

        response = gate.call(
            "product",
            units=len(batch),
            default=DEFAULT_COST_PER_ASIN * len(batch),
            may_wait=False,
            call=lambda batch=batch: client.product(
                batch, stats=STATS_DAYS.get(query.date_range, 1), history=False
            ),
        )
        refreshed += apply_products(query.domain, response.products)
    return refreshed, 0


def apply_products(domain: int, products: list[Any]) -> int:
    """Store current values from product objects in their deals, in one UPDATE. Return the deals changed."""
    by_asin = {product["asin"]: product for product in products if isinstance(product, dict) and "asin" in product}
    now = timezone.now()
    with transaction.atomic():
        deals = list(Deal.objects.select_for_update().filter(domain=domain, asin__in=list(by_asin)))
        for deal in deals:
            _apply_product(deal, by_asin[deal.asin], now)
        Deal.objects.bulk_update(deals, REFRESHED_FIELDS)
    return len(deals)


def _apply_product(deal: Deal, product: dict[str, Any], now: Any) -> None:
    deal.checked_at = now
    stats = product.get("stats")
    current = stats.get("current") if isinstance(stats, dict) else None
    if not isinstance(current, list):
        # Keepa sent no statistics, e.g. for an ASIN it no longer lists.
        return

    try:
        values = parse_current_values(current)
    except InvalidDeal as error:
        logger.warning("Product %s sent invalid current values: %s", deal.asin, error.detail)
        return
    for field_name, value in values.items():
        setattr(deal, field_name, value)
    deal.refreshed_at = now

    # The deal is seen again while its price type still has an offer.
    if deal.drop_price_type is None or price_at(current, deal.drop_price_type) is not None:
        deal.last_seen_at = now
