"""The watermark of a deal query: Keepa's creationDate up to which every deal has been stored.

Pages come newest first (sortType 1, by creationDate), so a run may move the
watermark only after it has stored every deal newer than the old one. The
comparison uses creationDate, never lastUpdate: lastUpdate changes on deals
that are already known, creationDate only when Keepa finds a deal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Q
from django.utils import timezone

from deals.models import Deal, DealQuery


@dataclass
class PageSelection:
    """The deals of one page that a run has to store, and whether the page went past the watermark."""

    newer: list[dict[str, Any]] = field(default_factory=list)
    # Deals found in the same Keepa minute as the watermark. Keepa counts time
    # in whole minutes, so some of them may have been found after the previous
    # run read that minute; the ones not stored yet are stored now.
    at_watermark: list[dict[str, Any]] = field(default_factory=list)
    reached_watermark: bool = False


def select_newer_deals(rows: list[dict[str, Any]], watermark: datetime | None) -> PageSelection:
    """Split a page's parsed deals by the watermark.

    The page reaches the watermark at the first deal strictly older than it.
    A deal in the watermark's own minute does not end the run, because more
    deals of that minute may follow on the next page. Every deal newer than
    the watermark is kept, even one listed after an older deal, so a page
    that is not strictly ordered loses nothing.
    """
    selection = PageSelection()
    for row in rows:
        created = row["keepa_created_at"]
        if watermark is None or created > watermark:
            selection.newer.append(row)
        elif created == watermark:
            selection.at_watermark.append(row)
        else:
            selection.reached_watermark = True
    return selection


def unstored_at_watermark(domain: int, rows: list[dict[str, Any]], watermark: datetime) -> list[dict[str, Any]]:
    """Return the deals of the watermark's minute that are not stored with that creationDate yet."""
    if not rows:
        return []
    stored = set(
        Deal.objects.filter(
            domain=domain, asin__in=[row["asin"] for row in rows], keepa_created_at=watermark
        ).values_list("asin", flat=True)
    )
    return [row for row in rows if row["asin"] not in stored]


def advance_watermark(query: DealQuery, new_watermark: datetime) -> bool:
    """Move the query's watermark forward to new_watermark; never backward. Return True when it moved.

    The conditional UPDATE keeps the watermark monotonic even if another
    process moved it in the meantime.
    """
    moved = (
        DealQuery.objects.filter(pk=query.pk)
        .filter(Q(watermark__isnull=True) | Q(watermark__lt=new_watermark))
        .update(watermark=new_watermark, watermark_updated_at=timezone.now())
    )
    if moved:
        query.watermark = new_watermark
    return bool(moved)
