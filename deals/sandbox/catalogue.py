"""The sandbox's deal catalogue: a reproducible function of the seed and the anchor time.

At the anchor the catalogue contains `size` deals, the newest created at the anchor
minute and the rest spread over the minutes before it. With new_deals_per_minute
above zero, deal k of the stream appears (k + 1) / rate minutes after the anchor,
so a restart with the same seed and anchor serves the same deals plus those that
appeared since. Deals added by `add_deals` are kept in memory only.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import Any

from deals.keepa.keepa_time import unix_ms_to_keepa_minutes
from deals.keepa.price_types import range_value_at, value_at
from deals.sandbox.deal_generator import generate_deal, generate_malformed, is_malformed_index, make_asin

PAGE_SIZE = 150
ADDED_DEALS_FIRST_INDEX = 40_000_000  # far above any generated index, so added ASINs never collide


@dataclass(frozen=True)
class CatalogueEntry:
    index: int
    asin: str
    creation_date: int  # Keepa minutes, also for malformed objects whose own field is broken
    valid: bool
    deal: Any


class DealCatalogue:
    def __init__(self, *, seed: int, anchor_ms: int, size: int, new_deals_per_minute: float = 0.0) -> None:
        if size < 0:
            raise ValueError(f"Catalogue size {size} is negative: use 0 or more deals.")
        if new_deals_per_minute < 0:
            raise ValueError(f"New deals per minute {new_deals_per_minute} is negative: use 0 or more.")
        self.seed = seed
        self.anchor_ms = anchor_ms
        self.anchor_minutes = unix_ms_to_keepa_minutes(anchor_ms)
        self.size = size
        self.new_deals_per_minute = new_deals_per_minute
        self._lock = threading.Lock()
        self._entries: dict[int, list[CatalogueEntry]] = {}  # by domain id
        self._stream: dict[int, list[CatalogueEntry]] = {}
        self._added: dict[int, list[CatalogueEntry]] = {}

    def entries(self, domain_id: int, now_ms: int) -> list[CatalogueEntry]:
        """Return every deal visible at `now_ms` in a domain, in no particular order."""
        with self._lock:
            base = self._base_entries(domain_id)
            stream = self._stream_entries(domain_id, now_ms)
            return base + stream + list(self._added.get(domain_id, []))

    def add_deals(self, count: int, domain_id: int, now_ms: int) -> list[CatalogueEntry]:
        """Add `count` new deals created at the current minute (kept in memory only)."""
        now_minutes = unix_ms_to_keepa_minutes(now_ms)
        with self._lock:
            added = self._added.setdefault(domain_id, [])
            new = [
                self._make_entry(domain_id, ADDED_DEALS_FIRST_INDEX + len(added) + offset, now_minutes, now_minutes)
                for offset in range(count)
            ]
            added.extend(new)
            return new

    def valid_asins(self, domain_id: int, now_ms: int) -> set[str]:
        """Return the ASINs of the well-formed deals, the ones a careful caller should store."""
        return {entry.asin for entry in self.entries(domain_id, now_ms) if entry.valid}

    def malformed_entries(self, domain_id: int, now_ms: int) -> list[CatalogueEntry]:
        return [entry for entry in self.entries(domain_id, now_ms) if not entry.valid]

    def find(self, asin: str, domain_id: int, now_ms: int) -> CatalogueEntry | None:
        for entry in self.entries(domain_id, now_ms):
            if entry.asin == asin and entry.valid:
                return entry
        return None

    # Generation

    def _base_entries(self, domain_id: int) -> list[CatalogueEntry]:
        if domain_id not in self._entries:
            entries = []
            for index in range(self.size):
                # Deals are 1 to 5 minutes apart, newest first; the spacing keeps the order strict.
                rng = self._rng(domain_id, index)
                creation = self.anchor_minutes - index * 5 - (rng.randint(0, 4) if index else 0)
                entries.append(self._make_entry(domain_id, index, creation, self.anchor_minutes))
            self._entries[domain_id] = entries
        return self._entries[domain_id]

    def _stream_entries(self, domain_id: int, now_ms: int) -> list[CatalogueEntry]:
        if self.new_deals_per_minute <= 0 or now_ms <= self.anchor_ms:
            return []
        elapsed_minutes = (now_ms - self.anchor_ms) / 60_000
        count = int(elapsed_minutes * self.new_deals_per_minute)
        entries = self._stream.setdefault(domain_id, [])
        for k in range(len(entries), count):
            creation = self.anchor_minutes + int((k + 1) / self.new_deals_per_minute)
            entries.append(self._make_entry(domain_id, self.size + k, creation, creation))
        return entries[:count]

    def _make_entry(self, domain_id: int, index: int, creation: int, now_minutes: int) -> CatalogueEntry:
        rng = self._rng(domain_id, index, "deal")
        asin = make_asin(index, rng, "B1" if index >= ADDED_DEALS_FIRST_INDEX else "B0")
        if is_malformed_index(index):
            deal = generate_malformed(index, rng, asin, creation, domain_id)
            return CatalogueEntry(index, asin, creation, False, deal)
        deal = generate_deal(rng, asin, creation, now_minutes, domain_id)
        return CatalogueEntry(index, asin, creation, True, deal)

    def _rng(self, domain_id: int, index: int, purpose: str = "time") -> random.Random:
        # A string seed is hashed with SHA-512, so the sequence is the same in every process.
        return random.Random(f"{self.seed}:{domain_id}:{index}:{purpose}")


def query_deals(entries: list[CatalogueEntry], selection: dict) -> list[CatalogueEntry]:
    """Return the entries that match the selection's filters, in its sortType order.

    Filters (includeCategories, excludeCategories, currentRange, deltaPercentRange) apply to
    well-formed deals; when any is set, malformed objects are left out.
    """
    matching = [entry for entry in entries if _matches(entry, selection)]

    sort_type = selection.get("sortType", 1)
    price_type = _first_price_type(selection)
    date_range = selection.get("dateRange", 1) if isinstance(selection.get("dateRange"), int) else 1
    key = SORT_KEYS[abs(sort_type)]
    ordered = sorted(matching, key=lambda entry: (key(entry, date_range, price_type), entry.index))
    return ordered[::-1] if sort_type < 0 else ordered


def page_of(entries: list[CatalogueEntry], page: int) -> list[CatalogueEntry]:
    return entries[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]


def _matches(entry: CatalogueEntry, selection: dict) -> bool:
    filters = ("includeCategories", "excludeCategories", "currentRange", "deltaPercentRange")
    if not any(selection.get(name) for name in filters):
        return True
    if not entry.valid:
        return False

    deal = entry.deal
    categories = {deal.get("rootCat"), *deal.get("categories", [])}
    included = selection.get("includeCategories")
    if included and not categories.intersection(included):
        return False
    excluded = selection.get("excludeCategories")
    if excluded and categories.intersection(excluded):
        return False

    price_type = _first_price_type(selection)
    date_range = selection.get("dateRange", 1)
    return _in_range(value_at(deal["current"], price_type), selection.get("currentRange")) and _in_range(
        range_value_at(deal["deltaPercent"], date_range, price_type), selection.get("deltaPercentRange")
    )


def _in_range(value: int | None, bounds: Any) -> bool:
    if not (isinstance(bounds, list) and len(bounds) == 2):
        return True
    return value is not None and bounds[0] <= value <= bounds[1]


def _first_price_type(selection: dict) -> int:
    price_types = selection.get("priceTypes")
    if isinstance(price_types, list) and price_types and isinstance(price_types[0], int):
        return price_types[0]
    return 0


def _deal_value(entry: CatalogueEntry, field_name: str, date_range: int, price_type: int) -> int | None:
    if not entry.valid:
        return None
    return range_value_at(entry.deal.get(field_name), date_range, price_type)


# Each key sorts ascending into Keepa's default order; a negative sortType reverses it.
# Unknown values sort last.
SORT_KEYS = {
    # 1: deal age, newest first; within one minute the later generated deal is the newer.
    1: lambda entry, _range, _type: (-entry.creation_date, -entry.index),
    # 2: absolute delta, biggest change first.
    2: lambda entry, date_range, price_type: -abs(_deal_value(entry, "delta", date_range, price_type) or 0),
    # 3: sales rank, best (lowest) first; -1 and unknown last.
    3: lambda entry, _range, _type: _sales_rank_key(entry),
    # 4: percentage delta, biggest first.
    4: lambda entry, date_range, price_type: -abs(_deal_value(entry, "deltaPercent", date_range, price_type) or 0),
}


def _sales_rank_key(entry: CatalogueEntry) -> int:
    rank = value_at(entry.deal.get("current"), 3) if entry.valid else None
    return rank if rank is not None and rank > 0 else 2**63
