"""Refresh of deals selected in the admin: product calls through the ledger, against the sandbox."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from deals.ingestion.refresh import RefreshPostponed, refresh_selected_deals
from deals.models import Deal
from tokens.models import TokenEvent

pytestmark = pytest.mark.django_db


def make_deal(asin: str, *, domain: int = 1) -> Deal:
    long_ago = timezone.now() - timedelta(days=3)
    return Deal.objects.create(
        domain=domain, asin=asin, title=asin, keepa_created_at=long_ago,
        first_seen_at=long_ago, last_seen_at=long_ago, checked_at=long_ago, current_new=None,
    )


def test_refresh_updates_selected_deals(keepa_sandbox, token_manager, ingest_client):
    asins = sorted(keepa_sandbox.valid_asins())[:3]
    deals = [make_deal(asin) for asin in asins]
    untouched = make_deal("B0UNTOUCH1")

    outcome = refresh_selected_deals([deal.pk for deal in deals], manager=token_manager, client=ingest_client)

    assert outcome.requested == 3
    assert outcome.refreshed == 3
    assert outcome.tokens_consumed == pytest.approx(3.0)
    for deal in deals:
        deal.refresh_from_db()
        assert deal.refreshed_at is not None
        assert deal.checked_at > timezone.now() - timedelta(minutes=1)
    untouched.refresh_from_db()
    assert untouched.refreshed_at is None
    assert keepa_sandbox.stats()["requests_by_endpoint"]["product"] == 1
    assert TokenEvent.objects.filter(endpoint="product").exists()


def test_refresh_postponed_names_remaining_deals(keepa_sandbox, token_manager, ingest_client):
    deals = [make_deal(asin) for asin in sorted(keepa_sandbox.valid_asins())[:2]]
    token_manager.max_wait_seconds = 0
    keepa_sandbox.set_tokens_left(-50)
    token_manager.sync_tokens(force=True)

    with pytest.raises(RefreshPostponed) as caught:
        refresh_selected_deals([deal.pk for deal in deals], manager=token_manager, client=ingest_client)

    assert sorted(caught.value.outcome.remaining_ids) == sorted(deal.pk for deal in deals)
    assert caught.value.retry_after > 0
    assert keepa_sandbox.stats()["requests_by_endpoint"].get("product", 0) == 0
