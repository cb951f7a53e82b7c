"""update_recent_deals against the Keepa sandbox over loopback HTTP, with the real ledger, Redis and database."""

from __future__ import annotations

import time

import pytest

from deals.keepa import decode_image_name, keepa_minutes_to_datetime
from deals.locks import QueryLock
from deals.models import Deal, IngestionRun
from deals.sandbox.answers import wall_clock_ms
from tokens.errors import TokenRechargeError

pytestmark = pytest.mark.django_db

UNKNOWN_CATEGORY = 2**63 - 1


class Crash(Exception):
    pass


def catalogue_deals(sandbox) -> dict[str, dict]:
    return {entry.asin: entry.deal for entry in sandbox.catalogue.entries(1, wall_clock_ms()) if entry.valid}


def crash_after_page(number: int):
    def progress(event):
        if event.page == number:
            raise Crash(f"crash after page {number}")

    return progress


# First run


def test_first_run_stores_every_valid_deal(ingest, keepa_sandbox, deal_query):
    run = ingest()

    valid = keepa_sandbox.valid_asins()
    assert run.status == IngestionRun.Status.SUCCEEDED, run.error
    assert set(Deal.objects.values_list("asin", flat=True)) == valid
    assert run.deals_created == len(valid)
    assert run.deals_updated == 0
    assert run.pages_fetched == 3


def test_first_run_counts_invalid_deals_by_reason(ingest, keepa_sandbox):
    run = ingest()

    malformed = keepa_sandbox.catalogue.malformed_entries(1, wall_clock_ms())
    assert run.deals_skipped == len(malformed)
    assert sum(run.skip_reasons.values()) == len(malformed)
    assert run.skip_reasons["not_an_object"] >= 1
    assert run.skip_reasons["invalid_asin"] >= 1
    assert run.deals_received == len(malformed) + run.deals_created


def test_first_run_moves_watermark_to_newest_deal(ingest, keepa_sandbox, deal_query):
    run = ingest()

    newest = max(deal["creationDate"] for deal in catalogue_deals(keepa_sandbox).values())
    deal_query.refresh_from_db()
    assert run.watermark_before is None
    assert deal_query.watermark == keepa_minutes_to_datetime(newest)
    assert run.watermark_after == deal_query.watermark


def test_stored_prices_match_catalogue(ingest, keepa_sandbox):
    ingest()

    checked = 0
    for asin, raw in catalogue_deals(keepa_sandbox).items():
        deal = Deal.objects.get(asin=asin)
        current = raw["current"]
        for index, column in ((0, "current_amazon"), (1, "current_new"), (4, "current_list_price")):
            expected = current[index] if index < len(current) and current[index] >= 0 else None
            assert getattr(deal, column) == expected, (asin, column)
        assert deal.keepa_created_at == keepa_minutes_to_datetime(raw["creationDate"])
        assert deal.raw == raw
        checked += 1
    assert checked > 300


def test_no_offer_stored_as_null(ingest, keepa_sandbox):
    ingest()

    without_amazon = [asin for asin, raw in catalogue_deals(keepa_sandbox).items() if raw["current"][0] == -1]
    assert without_amazon
    assert not Deal.objects.filter(asin__in=without_amazon, current_amazon__isnull=False).exists()


def test_image_names_from_both_encodings(ingest, keepa_sandbox):
    ingest()

    deals = catalogue_deals(keepa_sandbox)
    as_text = next(asin for asin, raw in deals.items() if isinstance(raw["image"], str))
    as_codes = next(asin for asin, raw in deals.items() if isinstance(raw["image"], list))
    without = next(asin for asin, raw in deals.items() if raw["image"] is None)

    base = "https://m.media-amazon.com/images/I/"
    assert Deal.objects.get(asin=as_text).image_url == base + deals[as_text]["image"]
    assert Deal.objects.get(asin=as_codes).image_url == base + decode_image_name(deals[as_codes]["image"])
    assert Deal.objects.get(asin=as_codes).image_url.endswith(".jpg")
    assert Deal.objects.get(asin=without).image_url == ""


def test_unknown_root_category_stored_as_null(ingest, keepa_sandbox):
    ingest()

    deals = catalogue_deals(keepa_sandbox)
    unknown = [asin for asin, raw in deals.items() if raw["rootCat"] in (0, UNKNOWN_CATEGORY)]
    large = [asin for asin, raw in deals.items() if raw["rootCat"] == 2619525011]
    assert unknown
    assert large
    assert not Deal.objects.filter(asin__in=unknown, root_category__isnull=False).exists()
    assert set(Deal.objects.filter(asin__in=large).values_list("root_category", flat=True)) == {2619525011}


def test_large_category_ids_kept_exactly(ingest, keepa_sandbox):
    ingest()

    raw_by_asin = catalogue_deals(keepa_sandbox)
    with_large = [asin for asin, raw in raw_by_asin.items() if 16225007011 in raw["categories"]]
    assert with_large
    for asin in with_large[:20]:
        assert 16225007011 in Deal.objects.get(asin=asin).category_ids


def test_titles_stripped_of_html_and_unicode_kept(ingest, keepa_sandbox):
    ingest()

    titles = dict(Deal.objects.values_list("title_raw", "title"))
    bottle = "Stainless Steel Water Bottle 750 ml"
    assert titles[f"<b>Bestseller</b> {bottle}"] == f"Bestseller {bottle}"
    assert titles["Tom &amp; Jerry: The Complete Collection &quot;Deluxe&quot; &#8211; DVD"] == (
        'Tom & Jerry: The Complete Collection "Deluxe" – DVD'
    )
    assert titles["日本製 ステンレス 包丁 三徳 165mm"] == "日本製 ステンレス 包丁 三徳 165mm"
    assert titles["LED Desk Lamp 💡 Dimmable, USB-C 🔌"] == "LED Desk Lamp 💡 Dimmable, USB-C 🔌"
    assert "<" not in titles["Garden Hose 30 m <img src=x onerror=alert(2)>"]


def test_lightning_and_warehouse_deals(ingest, keepa_sandbox):
    ingest()

    deals = catalogue_deals(keepa_sandbox)
    lightning = next(asin for asin, raw in deals.items() if raw["lightningEnd"])
    warehouse = next(asin for asin, raw in deals.items() if raw["warehouseCondition"])
    plain = next(asin for asin, raw in deals.items() if not raw["lightningEnd"] and not raw["warehouseCondition"])

    assert Deal.objects.get(asin=lightning).lightning_end == keepa_minutes_to_datetime(deals[lightning]["lightningEnd"])
    stored = Deal.objects.get(asin=warehouse)
    assert stored.warehouse_condition == deals[warehouse]["warehouseCondition"]
    assert stored.warehouse_condition_comment == deals[warehouse]["warehouseConditionComment"]
    assert Deal.objects.get(asin=plain).lightning_end is None
    assert Deal.objects.get(asin=plain).warehouse_condition is None


# Later runs


def test_second_run_reads_one_page_and_writes_nothing(ingest):
    ingest()
    before = dict(Deal.objects.values_list("asin", "last_seen_at"))

    run = ingest()

    assert run.status == IngestionRun.Status.SUCCEEDED
    assert run.pages_fetched == 1
    assert run.deals_created == 0
    assert run.deals_updated == 0
    assert dict(Deal.objects.values_list("asin", "last_seen_at")) == before


def test_run_after_new_deals_stores_only_them(ingest, keepa_sandbox, deal_query):
    ingest()
    added = keepa_sandbox.add_deals(20)
    new_valid = {entry.asin for entry in added if entry.valid}

    run = ingest()

    assert run.deals_created == len(new_valid)
    assert run.deals_updated == 0
    assert new_valid <= set(Deal.objects.values_list("asin", flat=True))
    assert Deal.objects.count() == len(keepa_sandbox.valid_asins())
    deal_query.refresh_from_db()
    assert deal_query.watermark == keepa_minutes_to_datetime(max(entry.creation_date for entry in added))


# Crashes and faults


def test_crash_between_pages_keeps_committed_pages(ingest, deal_query):
    with pytest.raises(Crash):
        ingest(progress=crash_after_page(1))

    run = IngestionRun.objects.get()
    deal_query.refresh_from_db()
    assert run.status == IngestionRun.Status.FAILED
    assert "Crash" in run.error
    assert run.pages_fetched == 2
    assert Deal.objects.count() == run.deals_created
    assert deal_query.watermark is None


def test_rerun_after_crash_stores_the_rest_once(ingest, keepa_sandbox, deal_query):
    with pytest.raises(Crash):
        ingest(progress=crash_after_page(0))
    stored_before = Deal.objects.count()

    run = ingest()

    assert run.status == IngestionRun.Status.SUCCEEDED
    assert run.deals_updated == stored_before
    assert Deal.objects.count() == len(keepa_sandbox.valid_asins())
    assert set(Deal.objects.values_list("asin", flat=True)) == keepa_sandbox.valid_asins()
    deal_query.refresh_from_db()
    assert deal_query.watermark is not None


def test_crash_on_later_run_keeps_old_watermark(ingest, keepa_sandbox, deal_query):
    ingest()
    deal_query.refresh_from_db()
    old_watermark = deal_query.watermark
    keepa_sandbox.add_deals(320)

    with pytest.raises(Crash):
        ingest(progress=crash_after_page(1))
    deal_query.refresh_from_db()
    assert deal_query.watermark == old_watermark

    run = ingest()
    assert run.status == IngestionRun.Status.SUCCEEDED
    assert set(Deal.objects.values_list("asin", flat=True)) == keepa_sandbox.valid_asins()
    deal_query.refresh_from_db()
    assert deal_query.watermark >= old_watermark


@pytest.mark.parametrize("fault", ["429", "500", "503", "truncated", "error200", "html"])
def test_fault_on_second_page_ends_run_partial(ingest, keepa_sandbox, deal_query, fault):
    def fault_after_first_page(event):
        if event.page == 0:
            # Two uses, because the client repeats a 5xx once.
            keepa_sandbox.inject_fault(fault, next=2, endpoint="deal")

    run = ingest(progress=fault_after_first_page)

    deal_query.refresh_from_db()
    assert run.status == IngestionRun.Status.PARTIAL
    assert run.pages_fetched == 1
    assert "Page 1" in run.error
    assert Deal.objects.count() == run.deals_created
    assert run.deals_created < len(keepa_sandbox.valid_asins())
    assert deal_query.watermark is None


def test_rerun_after_fault_completes_catalogue(ingest, keepa_sandbox, deal_query):
    def fault_after_first_page(event):
        if event.page == 0:
            keepa_sandbox.inject_fault("500", next=2, endpoint="deal")

    ingest(progress=fault_after_first_page)
    run = ingest()

    assert run.status == IngestionRun.Status.SUCCEEDED
    assert set(Deal.objects.values_list("asin", flat=True)) == keepa_sandbox.valid_asins()


def test_long_error_kept_whole_beside_short_stop_reason(ingest, keepa_sandbox):
    # PostgreSQL rejects a stop reason longer than its column; the error field takes any length.
    keepa_sandbox.inject_fault("disconnect", next=2, endpoint="deal")

    run = ingest()
    run.refresh_from_db()

    assert len(run.error) > 200
    assert run.error.startswith("Page 0: Keepa deal failed to connect")
    assert len(run.stop_reason) <= 200
    assert run.stop_reason.endswith("…")


def test_fault_on_first_page_fails_run(ingest, keepa_sandbox, deal_query):
    keepa_sandbox.inject_fault("503", next=2, endpoint="deal")

    run = ingest()

    assert run.status == IngestionRun.Status.FAILED
    assert "HTTP 503" in run.error
    assert run.pages_fetched == 0
    assert Deal.objects.count() == 0


# Limits and dry runs


def test_page_limit_leaves_watermark(ingest, deal_query):
    run = ingest(max_pages=1)

    deal_query.refresh_from_db()
    assert run.status == IngestionRun.Status.PARTIAL
    assert run.pages_fetched == 1
    assert "page limit" in run.stop_reason
    assert deal_query.watermark is None


def test_deal_limit_stores_newest_deals(ingest, keepa_sandbox, deal_query):
    run = ingest(max_deals=10)

    newest = sorted(catalogue_deals(keepa_sandbox).items(), key=lambda item: -item[1]["creationDate"])[:10]
    assert run.deals_created == 10
    assert set(Deal.objects.values_list("asin", flat=True)) == {asin for asin, _ in newest}
    deal_query.refresh_from_db()
    assert deal_query.watermark is None


def test_dry_run_writes_no_deals(ingest, deal_query):
    run = ingest(dry_run=True)

    deal_query.refresh_from_db()
    assert run.dry_run
    assert run.deals_created > 300
    assert Deal.objects.count() == 0
    assert deal_query.watermark is None


# Single flight


def test_overlapping_run_is_skipped(ingest, deal_query):
    overlapping = []

    def start_second_run(event):
        if event.page == 0:
            overlapping.append(ingest())

    first = ingest(progress=start_second_run)

    assert first.status == IngestionRun.Status.SUCCEEDED
    assert overlapping[0].status == IngestionRun.Status.SKIPPED
    assert overlapping[0].pages_fetched == 0
    assert IngestionRun.objects.filter(status=IngestionRun.Status.SKIPPED).count() == 1


def test_lock_held_by_another_worker_skips(ingest, deal_query):
    holder = QueryLock(deal_query.pk, ttl_seconds=30)
    assert holder.acquire()
    try:
        run = ingest()
    finally:
        holder.release()

    assert run.status == IngestionRun.Status.SKIPPED
    assert Deal.objects.count() == 0


def test_lock_of_dead_worker_expires(ingest, deal_query):
    dead_holder = QueryLock(deal_query.pk, ttl_seconds=0.3)
    assert dead_holder.acquire()
    assert ingest().status == IngestionRun.Status.SKIPPED

    time.sleep(0.4)
    run = ingest()

    assert run.status == IngestionRun.Status.SUCCEEDED
    assert not dead_holder.is_held()


def test_lost_lock_stops_run_after_page(ingest, deal_query):
    # As after a Redis restart: the lock key is gone while the run works.
    from django_redis import get_redis_connection

    from deals.locks import ingestion_lock_key

    def lose_lock_after_first_page(event):
        if event.page == 0:
            get_redis_connection("default").delete(ingestion_lock_key(deal_query.pk))

    run = ingest(progress=lose_lock_after_first_page)
    deal_query.refresh_from_db()

    assert run.status == IngestionRun.Status.PARTIAL
    assert run.pages_fetched == 2
    assert "lock" in run.stop_reason
    assert deal_query.watermark is None


def test_lock_released_after_run(ingest, deal_query):
    ingest()

    lock = QueryLock(deal_query.pk)
    assert lock.acquire()
    lock.release()


# Tokens


def test_long_token_wait_raises_for_retry(ingest, keepa_sandbox, token_manager, deal_query):
    # Below MIN_TOKEN_THRESHOLD but positive: the ledger has to wait for the next refill.
    token_manager.max_wait_seconds = 0.0
    keepa_sandbox.set_tokens_left(0.5)

    with pytest.raises(TokenRechargeError) as raised:
        ingest()

    run = IngestionRun.objects.get()
    assert raised.value.retry_after > 0
    assert run.status == IngestionRun.Status.PARTIAL
    assert "Waiting for tokens" in run.stop_reason
    assert Deal.objects.count() == 0


def test_wait_for_tokens_then_complete(ingest, keepa_sandbox, token_manager):
    # 3000 tokens a minute: a 5-token page is covered within a few refills of 200 ms.
    token_manager.max_wait_seconds = 0.0
    keepa_sandbox.set_refill_rate(3000)
    keepa_sandbox.set_tokens_left(0.5)
    waits = []

    run = ingest(wait_for_tokens=lambda seconds, what: waits.append((seconds, what)))

    assert run.status == IngestionRun.Status.SUCCEEDED
    assert waits
    assert "deal" in waits[0][1]
    assert Deal.objects.count() == len(keepa_sandbox.valid_asins())


def test_tokens_consumed_recorded(ingest, keepa_sandbox):
    run = ingest()

    assert run.tokens_consumed == 15
    assert run.tokens_estimated >= 15


# Enrichment and refresh


def test_enrichment_refreshes_new_deals(ingest, keepa_sandbox):
    run = ingest(enrich=True)

    assert run.deals_enriched == run.deals_created
    assert not Deal.objects.filter(refreshed_at__isnull=True).exists()
    assert keepa_sandbox.stats()["requests_by_endpoint"]["product"] >= 4


def test_overdue_deals_refreshed_cheaply(ingest, keepa_sandbox, ingest_settings):
    from datetime import timedelta

    from django.utils import timezone

    ingest()
    old = timezone.now() - timedelta(hours=ingest_settings.DEAL_REFRESH_AFTER_HOURS + 1)
    overdue = list(Deal.objects.order_by("asin").values_list("pk", flat=True)[:30])
    Deal.objects.filter(pk__in=overdue).update(checked_at=old, last_seen_at=old)

    run = ingest(enrich=True)

    assert run.deals_refreshed == 30
    assert not Deal.objects.filter(checked_at__lt=timezone.now() - timedelta(hours=1)).exists()


def test_refresh_postponed_when_tokens_short(ingest, keepa_sandbox, ingest_settings):
    from datetime import timedelta

    from django.utils import timezone

    ingest()
    old = timezone.now() - timedelta(hours=ingest_settings.DEAL_REFRESH_AFTER_HOURS + 1)
    Deal.objects.update(checked_at=old)
    keepa_sandbox.set_refill_rate(1)
    keepa_sandbox.set_tokens_left(0.5)

    run = ingest(enrich=True)

    assert run.deals_refreshed == 0
    assert "not refreshed" in run.stop_reason
    assert Deal.objects.filter(checked_at=old).count() == Deal.objects.count()
