"""Refresh of deals chosen by a person in the admin, outside any ingestion run."""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field

from deals.ingestion.enrichment import DEFAULT_COST_PER_ASIN, MAX_ASINS_PER_CALL, STATS_DAYS, apply_products
from deals.keepa import KeepaClient
from deals.models import Deal
from tokens.errors import TokenRechargeError
from tokens.manager import TokenManager

logger = logging.getLogger(__name__)


@dataclass
class RefreshOutcome:
    requested: int = 0
    refreshed: int = 0
    tokens_consumed: float = 0.0
    # Deal ids not refreshed yet because the ledger required a long wait.
    remaining_ids: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "requested": self.requested,
            "refreshed": self.refreshed,
            "tokens_consumed": self.tokens_consumed,
            "remaining": len(self.remaining_ids),
        }


class RefreshPostponed(Exception):
    """Raised when the ledger requires a long wait. `outcome.remaining_ids` lists the deals still to refresh."""

    def __init__(self, outcome: RefreshOutcome, retry_after: float) -> None:
        super().__init__(f"{len(outcome.remaining_ids)} deals wait {retry_after:.0f} s for tokens.")
        self.outcome = outcome
        self.retry_after = retry_after


def refresh_selected_deals(
    deal_ids: list[int], *, manager: TokenManager | None = None, client: KeepaClient | None = None
) -> RefreshOutcome:
    """Refresh the current values of these deals with product calls, batched per marketplace.

    Every call runs under a reservation of the token ledger. Raises
    RefreshPostponed, naming the deals left, when the ledger requires a wait
    longer than KEEPA_MAX_WAIT_SECONDS.
    """
    manager = manager or TokenManager(task="refresh_deals")
    client = client or KeepaClient(response_hook=manager.observe)
    outcome = RefreshOutcome(requested=len(deal_ids))

    batches = _batches_by_domain(deal_ids, _batch_size(manager))
    for position, (domain, batch) in enumerate(batches):
        try:
            outcome.refreshed += _refresh_batch(domain, batch, manager, client, outcome)
        except TokenRechargeError as error:
            outcome.remaining_ids = [deal_id for _, later in batches[position:] for deal_id, _ in later]
            raise RefreshPostponed(outcome, error.retry_after) from error

    logger.info("Refreshed %s of %s selected deals for %g tokens.", outcome.refreshed, outcome.requested,
                outcome.tokens_consumed)
    return outcome


def _refresh_batch(
    domain: int, batch: list[tuple[int, str]], manager: TokenManager, client: KeepaClient, outcome: RefreshOutcome
) -> int:
    asins = [asin for _, asin in batch]
    with manager.reserve(kind="product", units=len(asins), default=DEFAULT_COST_PER_ASIN * len(asins)):
        response = client.product(asins, stats=STATS_DAYS[0], history=False, domain=domain)
    outcome.tokens_consumed += response.token_state.tokens_consumed
    return apply_products(domain, response.products)


def _batch_size(manager: TokenManager) -> int:
    # One call must never cost more than the ledger can grant at all.
    per_asin = max(manager.estimate_cost("product", units=1, default=DEFAULT_COST_PER_ASIN), 0.01)
    return max(1, min(MAX_ASINS_PER_CALL, math.floor(manager.max_grantable_cost() / per_asin)))


def _batches_by_domain(deal_ids: list[int], batch_size: int) -> list[tuple[int, list[tuple[int, str]]]]:
    by_domain: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for deal_id, domain, asin in Deal.objects.filter(pk__in=deal_ids).order_by("domain", "pk").values_list(
        "pk", "domain", "asin"
    ):
        by_domain[domain].append((deal_id, asin))

    return [
        (domain, deals[start : start + batch_size])
        for domain, deals in by_domain.items()
        for start in range(0, len(deals), batch_size)
    ]
