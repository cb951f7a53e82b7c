"""Product objects the sandbox's /product endpoint returns, built from catalogue deals."""

from __future__ import annotations

from typing import Any

from deals.keepa.images import decode_image_name
from deals.sandbox.catalogue import CatalogueEntry


def product_object(
    asin: str, entry: CatalogueEntry | None, domain_id: int, *, history: bool, stats: bool, offers: int | None,
    buybox: bool,
) -> dict[str, Any]:
    if entry is None:
        # NOTE: Keepa's exact answer for an ASIN it does not know is unverified; the sandbox sends a bare object.
        return {"asin": asin, "domainId": domain_id, "title": None, "productType": 4, "csv": None}

    deal = entry.deal
    product: dict[str, Any] = {
        "asin": asin,
        "domainId": domain_id,
        "productType": 0,
        "title": deal["title"],
        "parentAsin": deal["parentAsin"],
        "rootCategory": deal["rootCat"],
        "categories": deal["categories"],
        "imagesCSV": decode_image_name(deal["image"]),
        "lastUpdate": deal["lastUpdate"],
        # Histories are [keepa minute, value, keepa minute, value, ...] per price type.
        "csv": [[deal["creationDate"], value] for value in deal["current"]] if history else None,
    }
    if stats:
        product["stats"] = {"current": deal["current"], "avg": deal["avg"][0] if deal["avg"] else []}
    if offers:
        product["offers"] = []
    if buybox:
        product["buyBoxPrice"] = deal["current"][0] if deal["current"] else -1
    return product
