"""The deal query and ingestion run admin: selection validation, running now, the latest runs inline."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from deals.models import DealQuery, IngestionRun

pytestmark = pytest.mark.usefixtures("plain_static_storage")


@pytest.fixture
def deal_query(db):
    return DealQuery.objects.create(name="queries-test", selection={"domainId": 1, "priceTypes": [1], "dateRange": 0})


def change_url(query: DealQuery) -> str:
    return reverse("admin:deals_dealquery_change", args=[query.pk])


def form_data(**overrides) -> dict:
    return {
        "name": "queries-test",
        "selection": json.dumps({"domainId": 1}),
        "is_active": "on",
        "runs-TOTAL_FORMS": "0",
        "runs-INITIAL_FORMS": "0",
        "runs-MIN_NUM_FORMS": "0",
        "runs-MAX_NUM_FORMS": "0",
        **overrides,
    }


def test_change_form_shows_pretty_selection_and_run_button(admin_client, deal_query):
    body = admin_client.get(change_url(deal_query)).content.decode()

    assert "{\n  &quot;domainId&quot;: 1," in body
    assert reverse("admin:deals_dealquery_run", args=[deal_query.pk]) in body
    assert "Run now" in body


def test_invalid_selection_errors_on_selection_field(admin_client, deal_query):
    selection = json.dumps({"domainId": 7, "priceTypes": [99], "bogus": 1})

    response = admin_client.post(change_url(deal_query), form_data(selection=selection))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["selection"]
    assert any("domainId=7" in error for error in errors)
    assert any("Unknown keys bogus" in error for error in errors)
    assert len(errors) >= 3
    deal_query.refresh_from_db()
    assert deal_query.selection["domainId"] == 1


def test_malformed_json_errors_on_selection_field(admin_client, deal_query):
    response = admin_client.post(change_url(deal_query), form_data(selection="{domainId: 1"))

    assert response.status_code == 200
    assert "selection" in response.context["adminform"].form.errors


def test_valid_selection_saves_and_copies_domain(admin_client, deal_query):
    response = admin_client.post(change_url(deal_query), form_data(selection=json.dumps({"domainId": 3})))

    assert response.status_code == 302
    deal_query.refresh_from_db()
    assert deal_query.domain == 3


def test_run_now_queues_update_recent_deals(admin_client, deal_query, celery_queue):
    redis, queue_key = celery_queue
    before = redis.llen(queue_key)

    response = admin_client.post(reverse("admin:deals_dealquery_run", args=[deal_query.pk]), follow=True)

    messages = [str(message) for message in response.context["messages"]]
    assert any(f"Queued a run of deal query {deal_query.name}" in message for message in messages)
    assert redis.llen(queue_key) == before + 1
    message = json.loads(redis.lindex(queue_key, 0))
    assert message["headers"]["task"] == "deals.tasks.update_recent_deals"
    assert "queries-test" in message["headers"]["kwargsrepr"]


def test_run_now_rejects_get(admin_client, deal_query):
    assert admin_client.get(reverse("admin:deals_dealquery_run", args=[deal_query.pk])).status_code == 405


def test_run_now_refuses_inactive_query(admin_client, deal_query):
    DealQuery.objects.filter(pk=deal_query.pk).update(is_active=False)

    response = admin_client.post(reverse("admin:deals_dealquery_run", args=[deal_query.pk]), follow=True)

    messages = [str(message) for message in response.context["messages"]]
    assert any("is inactive" in message for message in messages)


def test_inline_shows_latest_ten_runs(admin_client, deal_query):
    now = timezone.now()
    for minutes in range(12):
        IngestionRun.objects.create(query=deal_query, status=IngestionRun.Status.SUCCEEDED,
                                    started_at=now - timedelta(minutes=minutes),
                                    error=f"<script>run {minutes}</script>")

    response = admin_client.get(change_url(deal_query))

    formset = response.context["inline_admin_formsets"][0].formset
    assert len(formset.forms) == 10
    body = response.content.decode()
    assert "<script>run 1</script>" not in body
    assert "&lt;script&gt;run 1&lt;/script&gt;" in body
    assert "run 11" not in body


def test_query_list_shows_last_run_without_n_plus_one(admin_client, deal_query, django_assert_max_num_queries):
    for number in range(10):
        query = DealQuery.objects.create(name=f"list-{number}", selection={"domainId": 1})
        IngestionRun.objects.create(query=query, status=IngestionRun.Status.FAILED)

    with django_assert_max_num_queries(12):
        response = admin_client.get(reverse("admin:deals_dealquery_changelist"))

    assert response.status_code == 200
    assert response.content.decode().count(">failed<") == 10


def test_ingestion_run_list_is_read_only_and_filters(admin_client, deal_query):
    IngestionRun.objects.create(query=deal_query, status=IngestionRun.Status.FAILED, error="Keepa 500")
    IngestionRun.objects.create(query=deal_query, status=IngestionRun.Status.SUCCEEDED,
                                finished_at=timezone.now() + timedelta(seconds=42))

    url = reverse("admin:deals_ingestionrun_changelist")
    failed = admin_client.get(f"{url}?status__exact=failed")
    by_query = admin_client.get(f"{url}?query__id__exact={deal_query.pk}")

    assert [run.status for run in failed.context["cl"].result_list] == ["failed"]
    assert len(by_query.context["cl"].result_list) == 2
    assert admin_client.get(reverse("admin:deals_ingestionrun_add")).status_code == 403
    assert "Keepa 500" in failed.content.decode()
