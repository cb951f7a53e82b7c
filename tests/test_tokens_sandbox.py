"""The token ledger with the Keepa client and the sandbox over real HTTP on 127.0.0.1."""

from __future__ import annotations

import socket
import uuid

import pytest
from django.test import override_settings

from deals.keepa import KeepaError, NotEnoughTokensError
from tokens.errors import LedgerUnavailableError
from tokens.manager import TokenManager
from tokens.models import TokenEvent

SELECTION = {"domainId": 1, "dateRange": 0, "page": 0}


@pytest.fixture
def manager(keepa_sandbox, keepa_client, redis_key_prefix):
    ledger = TokenManager(
        keepa_sandbox.api_key,
        key_prefix=f"{redis_key_prefix}:tokens-sandbox:{uuid.uuid4().hex[:8]}",
        client=keepa_client,
        refill_interval_ms=keepa_sandbox.api.bucket.refill_interval_ms,
        sync_interval_seconds=60,
    )
    keepa_client.response_hook = ledger.observe
    yield ledger
    ledger.ledger.client.delete(*ledger.ledger.all_keys())


def requests_to(sandbox, endpoint: str) -> int:
    return sandbox.stats()["requests_by_endpoint"].get(endpoint, 0)


@pytest.mark.django_db
class TestSync:
    def test_empty_ledger_syncs_first(self, manager, keepa_sandbox):
        assert manager.status().balance is None

        manager.request_permission_for_call(5, kind="deal")

        assert requests_to(keepa_sandbox, "token") == 1
        assert manager.status().refill_rate == keepa_sandbox.stats()["refill_rate"]
        assert TokenEvent.objects.filter(kind=TokenEvent.Kind.SYNC).count() == 1

    def test_sync_in_deficit_reads_429_balance(self, manager, keepa_sandbox):
        keepa_sandbox.set_tokens_left(-20)

        result = manager.sync_tokens(force=True)

        assert result is not None
        assert manager.status().balance == pytest.approx(-20, abs=1e-9)
        assert manager.has_enough_tokens(5) is False
        assert keepa_sandbox.stats()["answers_429"] >= 1

    def test_routine_sync_throttled_forced_not(self, manager, keepa_sandbox):
        assert manager.sync_tokens() is not None
        assert manager.sync_tokens() is None

        assert manager.sync_tokens(force=True) is not None
        assert requests_to(keepa_sandbox, "token") == 2

    def test_status_never_calls_keepa(self, manager, keepa_sandbox):
        manager.sync_tokens(force=True)
        before = keepa_sandbox.stats()["requests"]

        for _ in range(5):
            manager.status()

        assert keepa_sandbox.stats()["requests"] == before


@pytest.mark.django_db
class TestReconcileOverHttp:
    def test_balance_follows_response(self, manager, keepa_client):
        with manager.reserve(kind="deal", default=5) as reservation:
            response = keepa_client.deal(SELECTION)

        assert reservation.closed
        status = manager.status()
        assert status.balance == response.token_state.tokens_left
        assert status.in_flight_count == 0
        assert status.learned_costs == {"deal": 5.0}

    def test_fourfold_cost_learned_after_one_call(self, manager, keepa_sandbox, keepa_client):
        keepa_sandbox.set_cost_multiplier(4)

        with manager.reserve(kind="product", units=2, default=2):
            keepa_client.product(["B000000001", "B000000002"])

        assert manager.estimate_cost("product", 2) == pytest.approx(8.0)

    def test_drift_repaired_by_next_response(self, manager, keepa_sandbox, keepa_client):
        manager.sync_tokens(force=True)
        keepa_sandbox.set_tokens_left(2.0)

        with manager.reserve(kind="deal", default=5):
            response = keepa_client.deal(SELECTION)

        assert manager.status().balance == response.token_state.tokens_left
        assert TokenEvent.objects.filter(kind=TokenEvent.Kind.DRIFT_CORRECTED).exists()

    def test_429_reconciles(self, manager, keepa_sandbox, keepa_client):
        manager.sync_tokens(force=True)
        keepa_sandbox.set_tokens_left(-20.0)

        with pytest.raises(NotEnoughTokensError), manager.reserve(kind="deal", default=5):
            keepa_client.deal(SELECTION)

        assert manager.status().balance <= 0
        assert TokenEvent.objects.filter(kind=TokenEvent.Kind.NOT_ENOUGH_TOKENS).count() == 1

    def test_plan_upgrade_from_next_response(self, manager, keepa_sandbox, keepa_client):
        keepa_sandbox.set_refill_rate(5)
        manager.sync_tokens(force=True)
        keepa_sandbox.set_refill_rate(25)

        with manager.reserve(kind="deal", default=5):
            keepa_client.deal(SELECTION)

        assert manager.status().refill_rate == 25
        assert TokenEvent.objects.filter(kind=TokenEvent.Kind.RATE_CHANGE).count() == 1

    def test_response_without_tokens_keeps_spent(self, manager, keepa_sandbox, keepa_client):
        manager.sync_tokens(force=True)
        keepa_client.max_retries = 0
        keepa_sandbox.inject_fault("html", next=1, endpoint="deal")
        reservation = manager.reserve(5, kind="deal")

        with pytest.raises(KeepaError), reservation:
            keepa_client.deal(SELECTION)

        status = manager.status()
        assert reservation.closed
        assert status.in_flight_count == 0
        # Not refunded: the balance is still the one the grant left.
        assert status.balance == reservation.balance_after

    def test_key_in_no_audit_row(self, manager, keepa_sandbox, keepa_client):
        keepa_sandbox.inject_fault("html", next=1, endpoint="deal")
        keepa_client.max_retries = 0
        for _ in range(2):
            try:
                with manager.reserve(kind="deal", default=5):
                    keepa_client.deal(SELECTION)
            except KeepaError:
                pass

        assert TokenEvent.objects.count() >= 4
        for event in TokenEvent.objects.all():
            for field in ("endpoint", "task", "message", "worker", "reservation_id"):
                assert keepa_sandbox.api_key not in getattr(event, field)


@pytest.fixture
def closed_redis_caches(settings):
    """CACHES with an alias "closed" that points at a port on 127.0.0.1 where no Redis listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    return {**settings.CACHES, "closed": {**settings.CACHES["default"],
                                          "LOCATION": f"redis://127.0.0.1:{closed_port}/0"}}


@pytest.mark.django_db
def test_redis_down_fails_closed(keepa_sandbox, keepa_client, closed_redis_caches):
    with override_settings(CACHES=closed_redis_caches):
        manager = TokenManager(keepa_sandbox.api_key, cache_alias="closed", client=keepa_client)
        keepa_client.response_hook = manager.observe

        with pytest.raises(LedgerUnavailableError, match="Redis"), manager.reserve(5, kind="deal"):
            keepa_client.deal(SELECTION)
        with pytest.raises(LedgerUnavailableError):
            manager.has_enough_tokens(5)

    assert keepa_sandbox.stats()["requests"] == 0
    assert TokenEvent.objects.count() == 0


@pytest.mark.django_db
def test_redis_down_after_call_keeps_cost_in_audit(keepa_sandbox, keepa_client, closed_redis_caches):
    # Keepa charged the call, so the audit trail must show its cost even when Redis cannot take the reading.
    response = keepa_client.deal(SELECTION)

    with override_settings(CACHES=closed_redis_caches):
        manager = TokenManager(keepa_sandbox.api_key, cache_alias="closed", client=keepa_client)
        with pytest.raises(LedgerUnavailableError):
            manager.update_after_call(response.token_state, endpoint="deal", status=200)

    event = TokenEvent.objects.get()
    assert event.kind == TokenEvent.Kind.RECONCILE
    assert event.actual_cost == keepa_sandbox.stats()["tokens_consumed_total"] == 5.0
    assert "Redis unavailable" in event.message
