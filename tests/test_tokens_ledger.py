"""The token ledger against real Redis: arithmetic, waiting, fairness, reconciliation and expiry."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from django.db import connections

from tokens.errors import CostExceedsBudgetError, TokenRechargeError
from tokens.manager import TokenManager
from tokens.models import TokenEvent

# A refill far in the future, so that no refill happens during a test.
NO_REFILL_MS = 600_000


@pytest.fixture
def make_manager(redis_key_prefix):
    created = []

    def make(**options) -> TokenManager:
        options.setdefault("key_prefix", f"{redis_key_prefix}:tokens-test:{uuid.uuid4().hex[:8]}")
        options.setdefault("refill_interval_ms", 200)
        manager = TokenManager("test-key-not-a-secret", **options)
        created.append(manager)
        return manager

    yield make
    for manager in created:
        manager.ledger.client.delete(*manager.ledger.all_keys())


def seed(manager: TokenManager, tokens_left: float, *, refill_rate: float = 20.0, refill_in: float = NO_REFILL_MS):
    return manager.update_after_call(tokens_left, refill_in=refill_in, refill_rate=refill_rate)


@pytest.mark.django_db
class TestFloatBalances:
    def test_fractional_reading_kept_exactly(self, make_manager):
        manager = make_manager()
        seed(manager, 54.5)

        assert manager.status().balance == 54.5

    def test_negative_reading_kept_exactly(self, make_manager):
        manager = make_manager()
        seed(manager, -13.0)

        assert manager.status().balance == -13.0
        assert manager.has_enough_tokens(1) is False

    def test_many_fractional_costs_exact(self, make_manager):
        manager = make_manager()
        seed(manager, 54.5)
        costs = [0.1, 0.7, 1.3, 0.05, 2.25] * 8

        for cost in costs:
            manager.request_permission_for_call(cost, max_wait=0)

        assert manager.status().balance == pytest.approx(54.5 - sum(costs), abs=1e-9)
        assert manager.status().in_flight_total == pytest.approx(sum(costs), abs=1e-9)

    def test_reconcile_fractional_keeps_other_reservations(self, make_manager):
        manager = make_manager()
        seed(manager, 54.5)
        first = manager.request_permission_for_call(10.25)
        manager.request_permission_for_call(20.5)

        manager.update_after_call(40.75, refill_in=NO_REFILL_MS, refill_rate=20, reservation=first)

        assert manager.status().balance == pytest.approx(40.75 - 20.5, abs=1e-9)
        assert manager.status().in_flight_count == 1


@pytest.mark.django_db
class TestDeficitFloor:
    def test_grant_may_go_below_zero_within_floor(self, make_manager):
        manager = make_manager()
        seed(manager, 1.0)

        reservation = manager.request_permission_for_call(181, max_wait=0)

        assert reservation.balance_after == -180.0

    def test_has_enough_tokens_respects_floor(self, make_manager):
        manager = make_manager()
        seed(manager, 1.0)

        assert manager.has_enough_tokens(181) is True
        assert manager.has_enough_tokens(181.5) is False
        assert manager.status().in_flight_count == 0

    def test_threshold_blocks_positive_balance_below_it(self, make_manager):
        manager = make_manager()
        seed(manager, 0.5)

        assert manager.has_enough_tokens(0.1) is False

    def test_grant_keeps_smaller_call_in_flight_safe(self, make_manager):
        # Keepa may receive the second call first; the first must still find a positive balance.
        manager = make_manager()
        seed(manager, 5.0)
        first = manager.request_permission_for_call(4, max_wait=0)

        assert manager.has_enough_tokens(11) is False

        manager.update_after_call(1.0, refill_in=NO_REFILL_MS, refill_rate=20, tokens_consumed=4, reservation=first)

        assert manager.has_enough_tokens(11) is True

    def test_cost_beyond_full_balance_rejected(self, make_manager):
        manager = make_manager()
        seed(manager, 10.0, refill_rate=5)

        with pytest.raises(CostExceedsBudgetError) as caught:
            manager.request_permission_for_call(481)

        assert caught.value.max_grantable == 480.0
        assert manager.max_grantable_cost() == 480.0
        assert manager.status().waiter_count == 0

    def test_long_wait_raises_recharge_error(self, make_manager):
        manager = make_manager(max_wait_seconds=60, refill_interval_ms=60_000)
        seed(manager, -100.0, refill_rate=20, refill_in=30_000)

        with pytest.raises(TokenRechargeError) as caught:
            manager.request_permission_for_call(10)

        # 101 tokens at 20 per minute: the refill in 30 s and five more minutes.
        assert caught.value.retry_after == pytest.approx(30 + 5 * 60, abs=0.1)
        assert manager.status().waiter_count == 0
        assert TokenEvent.objects.filter(kind=TokenEvent.Kind.RECHARGE_WAIT).count() == 1

    def test_kept_ticket_holds_place(self, make_manager):
        manager = make_manager(max_wait_seconds=1)
        seed(manager, -100.0, refill_rate=20, refill_in=30_000)

        with pytest.raises(TokenRechargeError) as caught:
            manager.request_permission_for_call(10, ticket="ingest-query-7")

        assert caught.value.ticket == "ingest-query-7"
        assert manager.status().waiter_count == 1


@pytest.mark.django_db(transaction=True)
class TestWaiting:
    def test_waiter_sleeps_once_then_passes(self, make_manager):
        manager = make_manager(refill_interval_ms=200)
        # 600 per minute is 2 tokens per 200 ms refill. Cost 190 needs a balance of 10: five refills.
        seed(manager, 0.0, refill_rate=600, refill_in=200)
        waits = []

        started = time.monotonic()
        reservation = manager.request_permission_for_call(190, on_wait=lambda seconds, reason: waits.append(seconds))
        elapsed = time.monotonic() - started

        assert len(waits) == 1
        assert 0.8 <= waits[0] <= 1.05
        assert elapsed >= waits[0]
        assert reservation.balance_before == pytest.approx(10.0)

    def test_refill_projected_while_nobody_calls(self, make_manager):
        manager = make_manager(refill_interval_ms=100)
        # 600 per minute is 1 token per 100 ms refill.
        seed(manager, -50.0, refill_rate=600, refill_in=100)
        first = manager.status()

        time.sleep(0.55)
        later = manager.status()

        # The first refill comes within 101 ms, then one every 100 ms: five or six in 550 ms.
        assert later.projected_balance in (-45.0, -44.0)
        assert first.projected_balance == -50.0
        assert later.balance == -50.0

    def test_refill_capped_at_one_hour(self, make_manager):
        manager = make_manager(refill_interval_ms=100)
        # 600 per minute is 1 token per refill and a cap of 36000.
        seed(manager, 35_999.5, refill_rate=600, refill_in=1)

        time.sleep(0.25)

        assert manager.status().projected_balance == 36_000.0

    def test_fairness_large_among_small(self, make_manager):
        interval_ms = 100
        manager = make_manager(refill_interval_ms=interval_ms)
        # 6000 per minute is 10 tokens per refill; start near the floor so everyone waits.
        seed(manager, -170.0, refill_rate=6000, refill_in=interval_ms)
        stop = threading.Event()
        small_grants = []

        def small_caller(cost: float) -> None:
            while not stop.is_set():
                reservation = manager.request_permission_for_call(cost, max_wait=None)
                small_grants.append(reservation.cost)
                reservation.close_as_spent()
            connections.close_all()

        threads = [threading.Thread(target=small_caller, args=(cost,)) for cost in (1, 2, 3, 4, 5, 1)]
        for thread in threads:
            thread.start()
        time.sleep(0.3)

        first_waits = []
        big = manager.request_permission_for_call(
            150, max_wait=None, on_wait=lambda seconds, reason: first_waits.append(seconds)
        )
        stop.set()
        for thread in threads:
            thread.join(timeout=10)

        assert first_waits, "the large caller never had to wait"
        # The slack covers thread wake-up delays on a loaded 2-core CI machine, not ledger scheduling.
        assert big.waited_seconds <= first_waits[0] + interval_ms / 1000 + 0.15
        assert len(small_grants) > 6


@pytest.mark.django_db
class TestExpiry:
    def test_dead_waiter_ticket_expires(self, make_manager):
        manager = make_manager(refill_interval_ms=100, ticket_grace_seconds=0.2)
        seed(manager, 0.0, refill_rate=600, refill_in=100)
        # A waiter that gets a wait time and then dies: it never comes back for its grant.
        dead = manager.ledger.reserve("dead-waiter", 100, grant=True, **manager._reserve_limits())
        assert dead.status == "wait"
        assert manager.status().waiter_count == 1

        time.sleep(dead.wait_ms / 1000 + 0.3)

        assert manager.status().waiter_count == 0
        assert manager.has_enough_tokens(1) is True

    def test_dead_reservation_expires_spent(self, make_manager):
        manager = make_manager(reservation_ttl_seconds=1)
        seed(manager, 50.0)
        manager.request_permission_for_call(20)

        time.sleep(1.1)
        manager.has_enough_tokens(1)

        status = manager.status()
        assert status.in_flight_count == 0
        assert status.balance == 30.0


@pytest.mark.django_db
class TestReconcile:
    def test_drift_corrected_by_next_response(self, make_manager):
        manager = make_manager()
        seed(manager, 100.0)
        reservation = manager.request_permission_for_call(10)

        manager.update_after_call(-104.0, refill_in=NO_REFILL_MS, refill_rate=20, tokens_consumed=10,
                                  reservation=reservation)

        assert manager.status().balance == -104.0
        assert TokenEvent.objects.filter(kind=TokenEvent.Kind.DRIFT_CORRECTED).count() == 1

    def test_older_reading_ignored(self, make_manager):
        manager = make_manager()
        manager.update_after_call(50.0, refill_in=NO_REFILL_MS, refill_rate=20, timestamp=2_000)

        result = manager.update_after_call(80.0, refill_in=NO_REFILL_MS, refill_rate=20, timestamp=1_000)

        assert result.outcome == "stale"
        assert manager.status().balance == 50.0

    def test_higher_reading_in_same_refill_period_ignored(self, make_manager):
        # Between refills Keepa's balance only falls, so the higher reading was taken first,
        # even when its response carries the later timestamp.
        manager = make_manager()
        manager.update_after_call(40.0, refill_in=NO_REFILL_MS, refill_rate=20, timestamp=10_000)

        result = manager.update_after_call(45.0, refill_in=NO_REFILL_MS - 10, refill_rate=20, timestamp=10_010)

        assert result.outcome == "stale"
        assert manager.status().balance == 40.0

    def test_reading_of_next_refill_period_applied(self, make_manager):
        manager = make_manager()
        manager.update_after_call(40.0, refill_in=NO_REFILL_MS, refill_rate=20, timestamp=10_000)

        result = manager.update_after_call(45.0, refill_in=NO_REFILL_MS, refill_rate=20, timestamp=10_200)

        assert result.outcome == "applied"
        assert manager.status().balance == 45.0

    def test_faster_server_refill_applied_despite_minute_setting(self, make_manager):
        # A server refilling every 2 s while the ledger is set for Keepa's minute:
        # readings 2 s apart belong to different refill periods.
        manager = make_manager(refill_interval_ms=60_000)
        manager.update_after_call(40.0, refill_in=1_500, refill_rate=20, timestamp=10_000)

        result = manager.update_after_call(40.5, refill_in=1_500, refill_rate=20, timestamp=12_000)

        assert result.outcome == "applied"
        assert manager.status().balance == 40.5

    def test_response_without_token_fields_keeps_balance(self, make_manager):
        manager = make_manager()
        seed(manager, 50.0)
        reservation = manager.request_permission_for_call(20)

        manager.update_after_call(None, reservation=reservation, status=None)

        status = manager.status()
        assert status.balance == 30.0
        assert status.in_flight_count == 0

    def test_plan_upgrade_picked_up(self, make_manager):
        manager = make_manager()
        seed(manager, 10.0, refill_rate=5)

        manager.update_after_call(10.0, refill_in=NO_REFILL_MS, refill_rate=25)

        assert manager.status().refill_rate == 25
        assert manager.max_grantable_cost() == 25 * 60 + 180
        assert TokenEvent.objects.filter(kind=TokenEvent.Kind.RATE_CHANGE).count() == 1

    def test_cancel_refunds(self, make_manager):
        manager = make_manager()
        seed(manager, 50.0)
        reservation = manager.request_permission_for_call(20)

        reservation.cancel()

        assert manager.status().balance == 50.0


@pytest.mark.django_db
class TestLearnedCosts:
    def test_underestimate_corrected_after_one_call(self, make_manager):
        manager = make_manager()
        seed(manager, 500.0)
        reservation = manager.request_permission_for_call(manager.estimate_cost("product", 50), kind="product",
                                                          units=50)
        assert reservation.cost == 50

        manager.update_after_call(114.0, refill_in=NO_REFILL_MS, refill_rate=20, tokens_consumed=386,
                                  reservation=reservation)

        assert manager.estimate_cost("product", 50) == pytest.approx(386)
        assert manager.estimate_cost("product", 10) == pytest.approx(77.2)

    def test_lower_cost_lowers_estimate_slowly(self, make_manager):
        manager = make_manager()
        seed(manager, 500.0)
        for consumed in (20, 4):
            reservation = manager.request_permission_for_call(5, kind="deal")
            manager.update_after_call(400.0, refill_in=NO_REFILL_MS, refill_rate=20, tokens_consumed=consumed,
                                      reservation=reservation)

        assert 4 < manager.estimate_cost("deal") < 20

    def test_unknown_kind_uses_default(self, make_manager):
        manager = make_manager()

        assert manager.estimate_cost("seller", default=7) == 7
        with pytest.raises(ValueError, match="seller"):
            manager.estimate_cost("seller")

    def test_429_teaches_nothing(self, make_manager):
        manager = make_manager()
        seed(manager, 50.0)
        reservation = manager.request_permission_for_call(5, kind="deal")

        manager.update_after_call(0.0, refill_in=1000, refill_rate=20, tokens_consumed=0, reservation=reservation,
                                  status=429)

        assert manager.status().learned_costs == {}
        assert TokenEvent.objects.filter(kind=TokenEvent.Kind.NOT_ENOUGH_TOKENS).count() == 1


@pytest.mark.django_db
def test_audit_row_per_grant(make_manager):
    manager = make_manager(task="audit-test")
    seed(manager, 50.0)

    for cost in (1.5, 2.5, 3.5):
        manager.request_permission_for_call(cost, kind="deal")

    grants = TokenEvent.objects.filter(kind=TokenEvent.Kind.GRANT).order_by("id")
    assert [grant.estimated_cost for grant in grants] == [1.5, 2.5, 3.5]
    assert [grant.balance_after for grant in grants] == [48.5, 46.0, 42.5]
    assert all(grant.task == "audit-test" for grant in grants)
    assert all(grant.worker for grant in grants)
