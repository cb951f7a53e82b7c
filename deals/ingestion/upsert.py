"""Bulk upsert of parsed deals: one SELECT and one INSERT ... ON CONFLICT per page, whatever its size."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from deals.models import Deal

# Every column a newer sighting of a deal overwrites. first_seen_at is kept
# from the first insert, and refreshed_at belongs to the product refresh.
UPDATE_FIELDS = [
    deal_field.name
    for deal_field in Deal._meta.concrete_fields
    if deal_field.name not in {"id", "domain", "asin", "first_seen_at", "refreshed_at"}
]


@dataclass
class UpsertResult:
    created: int = 0
    updated: int = 0
    # ASINs left out because the stored row or another copy in the page was newer.
    skipped: dict[str, int] = field(default_factory=dict)
    created_asins: list[str] = field(default_factory=list)


def newness(row: dict[str, Any]) -> tuple[datetime, datetime]:
    """Order key of two copies of one deal: the later lastUpdate wins, then the later creationDate."""
    created = row["keepa_created_at"]
    return (row["keepa_updated_at"] or created, created)


def newest_per_asin(rows: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Return one row per ASIN, the newest copy, in first-seen order, and how many copies were dropped."""
    newest: dict[str, dict[str, Any]] = {}
    dropped = 0
    for row in rows:
        kept = newest.get(row["asin"])
        if kept is None:
            newest[row["asin"]] = row
            continue
        dropped += 1
        if newness(row) > newness(kept):
            newest[row["asin"]] = row
    return list(newest.values()), dropped


def upsert_deals(domain: int, rows: list[dict[str, Any]], *, dry_run: bool = False) -> UpsertResult:
    """Insert or update one page of parsed deals of one domain. The caller opens the transaction.

    A copy older than the stored row (by lastUpdate) is left out and counted
    as older_than_stored, so an out-of-order page never rolls a deal back.
    """
    result = UpsertResult()
    rows, duplicates = newest_per_asin(rows)
    if duplicates:
        result.skipped["duplicate_asin"] = duplicates
    if not rows:
        return result

    stored = dict(
        Deal.objects.filter(domain=domain, asin__in=[row["asin"] for row in rows]).values_list(
            "asin", "keepa_updated_at"
        )
    )
    writable = []
    for row in rows:
        if row["asin"] in stored and _is_older_than_stored(row, stored[row["asin"]]):
            result.skipped["older_than_stored"] = result.skipped.get("older_than_stored", 0) + 1
            continue
        writable.append(row)

    result.created_asins = [row["asin"] for row in writable if row["asin"] not in stored]
    result.created = len(result.created_asins)
    result.updated = len(writable) - result.created
    if writable and not dry_run:
        Deal.objects.bulk_create(
            [Deal(**row) for row in writable],
            update_conflicts=True,
            unique_fields=["domain", "asin"],
            update_fields=UPDATE_FIELDS,
        )
    return result


def _is_older_than_stored(row: dict[str, Any], stored_updated_at: datetime | None) -> bool:
    incoming = row["keepa_updated_at"]
    return stored_updated_at is not None and incoming is not None and incoming < stored_updated_at
