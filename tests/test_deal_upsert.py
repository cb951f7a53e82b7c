"""The page upsert: one SELECT and one INSERT per page, newest copy wins, no duplicates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from deals.ingestion.upsert import newest_per_asin, upsert_deals
from deals.ingestion.watermark import advance_watermark, select_newer_deals
from deals.models import Deal, DealQuery
from deals.parsing import DealContext, parse_deal

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
CONTEXT = DealContext(domain=1, date_range=0, price_type=0, query_id=None, now=NOW)


def row(asin: str, created: int = 8_375_000, updated: int | None = None, price: int = 1999) -> dict:
    raw = {
        "asin": asin,
        "title": f"Deal {asin}",
        "current": [price, price + 100],
        "creationDate": created,
        "lastUpdate": updated if updated is not None else created + 1,
    }
    return parse_deal(raw, CONTEXT)


def asins(count: int, start: int = 0) -> list[str]:
    return [f"B{index:09d}" for index in range(start, start + count)]


def test_page_inserted_with_constant_queries():
    rows = [row(asin) for asin in asins(150)]

    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        result = upsert_deals(1, rows)

    assert result.created == 150
    assert Deal.objects.count() == 150
    statements = [query["sql"] for query in queries.captured_queries]
    # PostgreSQL: one SELECT and one INSERT. SQLite splits the INSERT at 999
    # parameters (7 statements for 150 deals), still far from one per deal.
    assert len(statements) <= 10, statements


def test_second_upsert_updates_in_place():
    upsert_deals(1, [row(asin) for asin in asins(10)])
    first_seen = dict(Deal.objects.values_list("asin", "first_seen_at"))

    result = upsert_deals(1, [row(asin, updated=8_375_100, price=999) for asin in asins(10)])

    assert result.updated == 10
    assert result.created == 0
    assert Deal.objects.count() == 10
    assert set(Deal.objects.values_list("current_amazon", flat=True)) == {999}
    assert dict(Deal.objects.values_list("asin", "first_seen_at")) == first_seen


def test_duplicate_asin_in_page_newest_wins():
    rows = [row("B000000001", updated=8_375_010, price=500), row("B000000001", updated=8_375_050, price=700)]

    result = upsert_deals(1, rows)

    assert result.created == 1
    assert result.skipped == {"duplicate_asin": 1}
    assert Deal.objects.get(asin="B000000001").current_amazon == 700


def test_older_copy_never_overwrites_stored():
    upsert_deals(1, [row("B000000001", updated=8_375_050, price=700)])

    result = upsert_deals(1, [row("B000000001", updated=8_375_010, price=500)])

    assert result.skipped == {"older_than_stored": 1}
    assert Deal.objects.get(asin="B000000001").current_amazon == 700


def test_same_asin_other_domain_is_another_deal():
    upsert_deals(1, [row("B000000001")])
    upsert_deals(3, [{**row("B000000001"), "domain": 3}])

    assert Deal.objects.filter(asin="B000000001").count() == 2


def test_dry_run_writes_nothing():
    result = upsert_deals(1, [row(asin) for asin in asins(5)], dry_run=True)

    assert result.created == 5
    assert Deal.objects.count() == 0


def test_newest_per_asin_keeps_first_position():
    rows = [row("B000000002"), row("B000000001", updated=8_375_001), row("B000000001", updated=8_375_009)]

    kept, dropped = newest_per_asin(rows)

    assert [item["asin"] for item in kept] == ["B000000002", "B000000001"]
    assert dropped == 1


def test_watermark_split_keeps_same_minute_deals():
    watermark = row("B000000001", created=8_375_000)["keepa_created_at"]
    rows = [
        row("B000000003", created=8_375_002),
        row("B000000002", created=8_375_000),
        row("B000000001", created=8_374_990),
    ]

    selection = select_newer_deals(rows, watermark)

    assert [item["asin"] for item in selection.newer] == ["B000000003"]
    assert [item["asin"] for item in selection.at_watermark] == ["B000000002"]
    assert selection.reached_watermark


def test_watermark_only_moves_forward():
    query = DealQuery.objects.get(name="amazon-com-all")
    later = NOW
    earlier = NOW - timedelta(hours=1)

    assert advance_watermark(query, later)
    assert not advance_watermark(query, earlier)
    query.refresh_from_db()
    assert query.watermark == later
