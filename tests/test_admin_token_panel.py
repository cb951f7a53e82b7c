"""The token panel, the admin index link to it and the read-only token audit trail."""

from __future__ import annotations

import socket

import pytest
from django_redis import get_redis_connection

from tokens.models import TokenEvent

pytestmark = pytest.mark.usefixtures("plain_static_storage")

API_KEY = "Zq8wSECRETpanelKey0123456789abcdefABCDEF0123456789abcdefABCDEF012"
PANEL = "/admin/token-panel/"


@pytest.fixture
def ledger(settings, db):
    from tokens.manager import TokenManager

    settings.KEEPA_API_KEY = API_KEY
    manager = TokenManager()
    manager.update_after_call(120.0, refill_rate=20.0, refill_in=30_000, tokens_consumed=5.0, endpoint="deal",
                              status=200)
    yield manager
    get_redis_connection("default").delete(*manager.ledger.all_keys())


def test_panel_shows_ledger_chart_and_masked_key(admin_client, ledger):
    response = admin_client.get(PANEL)

    body = response.content.decode()
    assert response.status_code == 200
    assert "Refill rate (tokens per minute)" in body
    assert "<td>20</td>" in body
    assert "Deficit floor" in body
    assert "<polyline" in body
    assert API_KEY not in body
    assert "Zq8w…" in body


def test_panel_shows_message_when_redis_is_down(admin_client, settings, db):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.CACHES = {**settings.CACHES, "default": {**settings.CACHES["default"],
                                                      "LOCATION": f"redis://127.0.0.1:{port}/0"}}

    response = admin_client.get(PANEL)

    assert response.status_code == 200
    assert "token ledger is unavailable because Redis cannot be reached" in response.content.decode()


def test_panel_requires_staff(client, db):
    response = client.get(PANEL)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_index_links_to_panel(admin_client):
    assert PANEL in admin_client.get("/admin/").content.decode()


def test_token_audit_admin_is_read_only_with_filters(admin_client, db):
    TokenEvent.objects.create(kind=TokenEvent.Kind.SYNC, worker="host-a:1", balance_after=50, message="<b>x</b>")

    response = admin_client.get("/admin/tokens/tokenevent/")

    body = response.content.decode()
    filters = {spec.title for spec in response.context["cl"].filter_specs}
    assert response.status_code == 200
    assert {"kind", "worker"} <= filters
    assert "&lt;b&gt;x&lt;/b&gt;" in body
    assert admin_client.get("/admin/tokens/tokenevent/add/").status_code == 403
    event = TokenEvent.objects.get()
    assert admin_client.post(f"/admin/tokens/tokenevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert TokenEvent.objects.count() == 1
