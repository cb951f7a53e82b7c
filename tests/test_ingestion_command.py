"""manage.py update_recent_deals and clean_stale_deals, run in-process against the sandbox."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from deals.models import Deal, DealQuery, IngestionRun

pytestmark = pytest.mark.django_db


def run_command(*args: str, **options) -> str:
    out = StringIO()
    call_command("update_recent_deals", *args, stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


def test_missing_api_key_explains_sandbox(settings):
    settings.KEEPA_API_KEY = ""

    with pytest.raises(CommandError) as raised:
        run_command()

    assert "KEEPA_API_KEY" in str(raised.value)
    assert "python3 dev.py run" in str(raised.value)


def test_unknown_query_lists_known_names(ingest_settings):
    with pytest.raises(CommandError) as raised:
        run_command("--query", "nope")

    assert "'nope'" in str(raised.value)
    assert "amazon-com-all" in str(raised.value)


@pytest.mark.parametrize("option", ["--max-pages", "--max-deals"])
def test_negative_limit_rejected(ingest_settings, option):
    with pytest.raises(CommandError) as raised:
        run_command(option, "-1")

    assert f"{option} -1" in str(raised.value)


def test_several_active_queries_need_a_name(ingest_settings):
    DealQuery.objects.create(name="uk", selection={"domainId": 2})

    with pytest.raises(CommandError) as raised:
        run_command()

    assert "--query" in str(raised.value)
    assert "uk" in str(raised.value)


def test_run_prints_pages_and_summary(ingest_settings, keepa_sandbox):
    output = run_command("--no-enrich", verbosity=2)

    assert output.count("page ") >= 3
    assert "tokens 15 spent" in output
    assert "succeeded" in output
    assert f"created {len(keepa_sandbox.valid_asins())}" in output
    assert IngestionRun.objects.get().status == IngestionRun.Status.SUCCEEDED


def test_verbosity_zero_prints_nothing(ingest_settings):
    output = run_command("--no-enrich", verbosity=0)

    assert output == ""
    assert Deal.objects.exists()


def test_dry_run_option(ingest_settings):
    output = run_command("--dry-run", "--max-pages", "1")

    assert "dry run" in output
    assert not Deal.objects.exists()


def test_failed_run_raises(ingest_settings, keepa_sandbox):
    ingest_settings.KEEPA_API_KEY = "wrong-key-0000"

    with pytest.raises(CommandError) as raised:
        run_command("--no-enrich")

    assert "failed" in str(raised.value)
    assert "wrong-key-0000" not in str(raised.value)


# clean_stale_deals


def make_deal(asin: str, *, seen_hours_ago: float, checked_hours_ago: float) -> Deal:
    now = timezone.now()
    return Deal.objects.create(
        domain=1,
        asin=asin,
        keepa_created_at=now - timedelta(hours=200),
        last_seen_at=now - timedelta(hours=seen_hours_ago),
        checked_at=now - timedelta(hours=checked_hours_ago),
    )


def test_stale_deals_deleted_in_batches(settings):
    settings.DEAL_REFRESH_AFTER_HOURS = 12
    for index in range(5):
        make_deal(f"B00000000{index}", seen_hours_ago=100, checked_hours_ago=1)
    fresh = make_deal("B000000009", seen_hours_ago=1, checked_hours_ago=1)
    out = StringIO()

    call_command("clean_stale_deals", "--older-than", "72", "--batch-size", "2", stdout=out)

    assert list(Deal.objects.all()) == [fresh]
    assert "deleted 5 deals" in out.getvalue()


def test_overdue_refresh_kept_and_reported(settings):
    settings.DEAL_REFRESH_AFTER_HOURS = 12
    overdue = make_deal("B000000001", seen_hours_ago=100, checked_hours_ago=90)
    make_deal("B000000002", seen_hours_ago=100, checked_hours_ago=2)
    out = StringIO()

    call_command("clean_stale_deals", "--older-than", "72", stdout=out)

    assert list(Deal.objects.all()) == [overdue]
    assert "kept 1 unseen deals whose refresh is overdue" in out.getvalue()


def test_stale_default_from_setting(settings):
    settings.DEAL_STALE_AFTER_HOURS = 200
    make_deal("B000000001", seen_hours_ago=100, checked_hours_ago=1)

    call_command("clean_stale_deals", stdout=StringIO())

    assert Deal.objects.count() == 1


@pytest.mark.parametrize(("option", "value"), [("--older-than", "0"), ("--older-than", "-3"), ("--batch-size", "0")])
def test_clean_rejects_bad_values(option, value):
    with pytest.raises(CommandError) as raised:
        call_command("clean_stale_deals", option, value, stdout=StringIO())

    assert value in str(raised.value)
