"""The ledger's management commands and its admin."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from tokens.admin import TokenEventAdmin
from tokens.manager import TokenManager
from tokens.models import TokenEvent


@pytest.fixture
def ledger(settings, keepa_sandbox, redis_key_prefix):
    settings.KEEPA_API_KEY = keepa_sandbox.api_key
    settings.KEEPA_API_URL = keepa_sandbox.url
    manager = TokenManager()
    yield manager
    manager.ledger.client.delete(*manager.ledger.all_keys())


def run(*arguments: str) -> str:
    output = StringIO()
    call_command(*arguments, stdout=output)
    return output.getvalue()


@pytest.mark.django_db
class TestCommands:
    def test_status_json_without_keepa(self, ledger, keepa_sandbox):
        data = json.loads(run("token_status", "--json"))

        assert data["balance"] is None
        assert data["max_deficit"] == ledger.MAX_DEFICIT
        assert keepa_sandbox.stats()["requests"] == 0

    def test_sync_then_status(self, ledger, keepa_sandbox):
        assert "Synced" in run("sync_tokens", "--force")
        assert "Skipped" in run("sync_tokens")

        data = json.loads(run("token_status", "--json"))
        assert data["refill_rate"] == keepa_sandbox.stats()["refill_rate"]
        assert "refill rate" in run("token_status")

    def test_prune_deletes_old_rows(self):
        old = TokenEvent.objects.create(kind=TokenEvent.Kind.GRANT, message="old")
        TokenEvent.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))
        TokenEvent.objects.create(kind=TokenEvent.Kind.GRANT, message="new")

        assert "Deleted 1" in run("prune_token_audit", "--older-than", "30")
        assert list(TokenEvent.objects.values_list("message", flat=True)) == ["new"]

    @pytest.mark.parametrize("value", ["abc", "0", "-3"])
    def test_prune_rejects_bad_days(self, value):
        with pytest.raises(CommandError, match=repr(value)):
            run("prune_token_audit", "--older-than", value)


def test_admin_read_only(rf):
    admin = TokenEventAdmin(TokenEvent, None)
    request = rf.get("/")

    assert admin.has_add_permission(request) is False
    assert admin.has_change_permission(request) is False
    assert admin.has_delete_permission(request) is False
    assert "kind" in admin.list_filter
    assert "worker" in admin.list_filter
