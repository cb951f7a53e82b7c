"""Token costs of the sandbox's endpoints, before the cost multiplier.

Keepa documents 5 tokens per deal page and 1 per product. For the extras the
sandbox charges: 6 tokens per ASIN per page of offers (10 offers a page),
2 per ASIN for buybox, 1 per ASIN for rating; stats, history and update are free.
"""

from __future__ import annotations

import math

DEAL_PAGE_COST = 5
PRODUCT_COST_PER_ASIN = 1
OFFERS_PER_PAGE = 10
OFFER_PAGE_COST_PER_ASIN = 6
BUYBOX_COST_PER_ASIN = 2
RATING_COST_PER_ASIN = 1


def product_cost(asin_count: int, *, offers: int | None, buybox: bool, rating: bool) -> int:
    per_asin = PRODUCT_COST_PER_ASIN
    if offers:
        per_asin += OFFER_PAGE_COST_PER_ASIN * math.ceil(offers / OFFERS_PER_PAGE)
    if buybox:
        per_asin += BUYBOX_COST_PER_ASIN
    if rating:
        per_asin += RATING_COST_PER_ASIN
    return asin_count * per_asin
