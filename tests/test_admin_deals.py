"""The deal admin: escaping of Keepa's HTML, filters, query counts, CSV export and the refresh action."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from deals.models import Deal, DealQuery

SCRIPT_TITLE = "Blender <script>alert('pwned')</script> & <b>Bold</b>"
SCRIPT_COMMENT = "Box damaged <img src=x onerror=alert(1)>"
UNICODE_TITLE = "Kaffeemühle – 咖啡 ☕ «Édition»"
CHANGELIST = "/admin/deals/deal/"

pytestmark = pytest.mark.usefixtures("plain_static_storage")


@pytest.fixture
def deal_query(db):
    return DealQuery.objects.create(name="admin-test", selection={"domainId": 1, "priceTypes": [1]})


def make_deal(query: DealQuery | None, number: int, **fields) -> Deal:
    now = timezone.now()
    values = {
        "domain": 1,
        "asin": f"B0ADM{number:05d}",
        "title": f"Deal number {number}",
        "title_raw": f"Deal number {number}",
        "image_url": f"https://m.media-amazon.com/images/I/{number}abc.jpg",
        "root_category": 1055398,
        "query": query,
        "drop_percent": 30,
        "drop_price_type": 1,
        "current_amazon": None,
        "current_new": 2499,
        "current_used": 1799,
        "current_sales_rank": 1234,
        "keepa_created_at": now - timedelta(minutes=number),
        "raw": {"asin": f"B0ADM{number:05d}", "current": [-1, 2499, 1799, 1234]},
    }
    values.update(fields)
    return Deal.objects.create(**values)


@pytest.fixture
def script_deal(deal_query):
    return make_deal(
        deal_query, 1, title=SCRIPT_TITLE, title_raw=SCRIPT_TITLE, warehouse_condition=2,
        warehouse_condition_comment=SCRIPT_COMMENT, raw={"title": SCRIPT_TITLE, "warehouseConditionComment":
                                                          SCRIPT_COMMENT},
    )


def test_deal_list_escapes_script_in_title(admin_client, script_deal):
    response = admin_client.get(CHANGELIST)

    body = response.content.decode()
    assert response.status_code == 200
    assert "<script>alert('pwned')</script>" not in body
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in body
    assert "<b>Bold</b>" not in body


def test_deal_list_shows_links_prices_and_thumbnail(admin_client, deal_query):
    make_deal(deal_query, 2, domain=3, asin="B0DEUTSCH1", current_new=123456)

    body = admin_client.get(CHANGELIST).content.decode()

    assert 'href="https://www.amazon.de/dp/B0DEUTSCH1"' in body
    assert 'href="https://keepa.com/#!product/3-B0DEUTSCH1"' in body
    assert "1.234,56 €" in body
    assert 'src="https://m.media-amazon.com/images/I/2abc.jpg"' in body
    assert "30 %" in body


def test_deal_detail_escapes_and_pretty_prints_raw(admin_client, script_deal):
    response = admin_client.get(reverse("admin:deals_deal_change", args=[script_deal.pk]))

    body = response.content.decode()
    assert response.status_code == 200
    assert "<script>alert('pwned')</script>" not in body
    assert "<img src=x onerror=alert(1)>" not in body
    assert "&lt;img src=x onerror=alert(1)&gt;" in body
    assert '<pre class="deals-json">{\n  &quot;title&quot;' in body
    assert 'name="title"' not in body


def test_deal_admin_has_no_add(admin_client, db):
    assert admin_client.get("/admin/deals/deal/add/").status_code == 403


def test_anonymous_redirected_to_login(client, script_deal):
    response = client.get(CHANGELIST)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_non_staff_redirected_to_login(client, script_deal):
    user = User.objects.create_user("shopper", password="correct-horse-battery-staple")
    client.force_login(user)

    response = client.get(CHANGELIST)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_deal_list_query_count_does_not_grow(admin_client, deal_query, django_assert_max_num_queries):
    for number in range(5):
        make_deal(deal_query, number)
    with CaptureQueriesContext(connection) as five_deals:
        assert admin_client.get(CHANGELIST).status_code == 200

    for number in range(5, 50):
        make_deal(deal_query, number, lightning_end=timezone.now() + timedelta(hours=1))
    with django_assert_max_num_queries(len(five_deals)):
        response = admin_client.get(CHANGELIST)

    assert response.status_code == 200
    assert response.content.decode().count('class="deals-thumbnail"') == 50


@pytest.mark.parametrize(
    ("parameters", "expected_asins"),
    [
        ("drop=50-75", {"B0ADM00002"}),
        ("drop=lt10", {"B0ADM00003"}),
        ("has_price=amazon", {"B0ADM00002"}),
        ("lightning=running", {"B0ADM00002"}),
        ("lightning=ended", {"B0ADM00003"}),
        ("warehouse=yes", {"B0ADM00003"}),
        ("root_category=999", {"B0ADM00003"}),
        ("domain__exact=2", {"B0ADM00003"}),
        ("q=b0adm00002", {"B0ADM00002"}),
        ("q=Toaster", {"B0ADM00003"}),
    ],
)
def test_deal_filters_and_search(admin_client, deal_query, parameters, expected_asins):
    now = timezone.now()
    make_deal(deal_query, 1, drop_percent=30)
    make_deal(deal_query, 2, drop_percent=60, current_amazon=999, lightning_end=now + timedelta(hours=2))
    make_deal(deal_query, 3, drop_percent=5, title="Toaster", lightning_end=now - timedelta(hours=1),
              warehouse_condition=3, root_category=999, domain=2)

    response = admin_client.get(f"{CHANGELIST}?{parameters}")

    assert response.status_code == 200
    shown = {deal.asin for deal in response.context["cl"].result_list}
    assert shown == expected_asins


def test_date_hierarchy_renders(admin_client, deal_query):
    deal = make_deal(deal_query, 1)

    response = admin_client.get(f"{CHANGELIST}?first_seen_at__year={deal.first_seen_at.year}")

    assert response.status_code == 200
    assert deal.asin in response.content.decode()


def post_action(admin_client, action: str, deals: list[Deal]):
    return admin_client.post(
        CHANGELIST,
        {"action": action, "_selected_action": [deal.pk for deal in deals]},
    )


def test_csv_export_streams_utf8_with_unicode_and_null_prices(admin_client, deal_query):
    unicode_deal = make_deal(deal_query, 1, title=UNICODE_TITLE, current_new=None, current_used=None,
                             current_amazon=None)
    script_deal = make_deal(deal_query, 2, domain=5, title="=HYPERLINK(\"http://evil\") <script>x</script>",
                            current_new=1980, warehouse_condition_comment=SCRIPT_COMMENT)

    response = post_action(admin_client, "export_csv", [unicode_deal, script_deal])

    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="deals-')
    raw = b"".join(response.streaming_content)
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    by_asin = {row["asin"]: row for row in rows}
    assert len(rows) == 2
    assert by_asin["B0ADM00001"]["title"] == UNICODE_TITLE
    assert by_asin["B0ADM00001"]["new_price"] == ""
    assert by_asin["B0ADM00001"]["currency"] == "USD"
    assert by_asin["B0ADM00001"]["used_price"] == ""
    assert by_asin["B0ADM00002"]["title"].startswith("'=HYPERLINK")
    assert by_asin["B0ADM00002"]["new_price"] == "1980"
    assert by_asin["B0ADM00002"]["currency"] == "JPY"
    assert by_asin["B0ADM00002"]["amazon_url"] == "https://www.amazon.co.jp/dp/B0ADM00002"
    assert by_asin["B0ADM00002"]["warehouse_comment"] == SCRIPT_COMMENT


def test_csv_export_prices_in_main_unit(admin_client, deal_query):
    deal = make_deal(deal_query, 1, current_new=2499, current_used=5)

    response = post_action(admin_client, "export_csv", [deal])

    row = next(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert row["new_price"] == "24.99"
    assert row["used_price"] == "0.05"


def test_refresh_action_reports_what_was_queued(admin_client, deal_query, celery_queue):
    from deals import task_queue

    deals = [make_deal(deal_query, number) for number in range(3)]
    redis, queue_key = celery_queue
    before = redis.llen(queue_key)

    response = post_action(admin_client, "refresh_from_keepa", deals)

    assert response.status_code == 302
    messages = [str(message) for message in response.wsgi_request._messages]
    assert len(messages) == 1
    assert "Queued a Keepa refresh of 3 deals in 1 task(s)" in messages[0]
    message = json.loads(redis.lindex(queue_key, 0))
    assert message["headers"]["task"] == task_queue.REFRESH_DEALS_TASK
    assert redis.llen(queue_key) == before + 1
