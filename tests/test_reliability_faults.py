"""Faults one at a time, each with the outcome an operator expects written down.

Keepa faults run ingestion in this process against the sandbox; the worker
faults start real Celery workers on a private Redis that the test may kill.
"""

from __future__ import annotations

import secrets
import time

import pytest
from django.conf import settings

from deals.models import Deal, IngestionRun
from tests.reliability.invariants import audit_actual_total

# Each fault hits the next deal request (page 0); the run must end failed with the watermark where it was,
# and the run after it must complete the catalogue once.
KEEPA_FAULTS = ["500", "503", "timeout", "truncated", "html", "error200", "disconnect"]


@pytest.mark.django_db
@pytest.mark.parametrize("fault", KEEPA_FAULTS)
def test_keepa_fault_ends_run_failed_and_next_run_completes(ingest, keepa_sandbox, deal_query, fault):
    ingest(max_pages=1)
    deal_query.refresh_from_db()
    watermark = deal_query.watermark
    keepa_sandbox.add_deals(5)
    # One attempt and its one retry both fail, so the fault reaches the run.
    keepa_sandbox.inject_fault(fault, next=2, endpoint="deal", timeout_seconds=3)

    failed = ingest()
    deal_query.refresh_from_db()

    assert failed.status == IngestionRun.Status.FAILED
    assert failed.error.startswith("Page 0:")
    assert deal_query.watermark == watermark

    keepa_sandbox.clear_faults()  # the client retries only some kinds, so a second firing may be left
    completed = ingest()

    assert completed.status == IngestionRun.Status.SUCCEEDED
    assert set(Deal.objects.values_list("asin", flat=True)) == keepa_sandbox.valid_asins()
    assert Deal.objects.count() == len(keepa_sandbox.valid_asins())


@pytest.mark.django_db
def test_audit_matches_tokens_charged_across_faults(ingest, keepa_sandbox):
    keepa_sandbox.inject_fault("truncated", next=2, endpoint="deal")
    ingest()
    keepa_sandbox.set_refill_rate(600)  # a plan change, recorded as a rate change row
    ingest()

    stats = keepa_sandbox.stats()

    assert stats["tokens_charged_unanswered"] == 10.0
    assert audit_actual_total() == stats["tokens_consumed_total"] - stats["tokens_charged_unanswered"]


@pytest.mark.django_db
def test_invalid_key_stops_run_without_retrying(deal_query, keepa_sandbox, token_manager):
    from deals.ingestion import IngestionOptions, update_recent_deals
    from deals.keepa import KeepaClient

    client = KeepaClient("wrong" + secrets.token_hex(8), base_url=keepa_sandbox.url, max_retries=3,
                         retry_backoff=0.0, response_hook=token_manager.observe)

    run = update_recent_deals(deal_query, IngestionOptions(), client=client, manager=token_manager)

    assert run.status == IngestionRun.Status.FAILED
    assert "key" in run.error.lower()
    assert keepa_sandbox.stats()["requests_by_endpoint"]["deal"] == 1


@pytest.mark.django_db
def test_costs_four_times_estimate_stay_above_deficit_floor(ingest, keepa_sandbox, token_manager):
    keepa_sandbox.set_tokens_left(30)
    keepa_sandbox.set_refill_rate(6000)
    keepa_sandbox.set_cost_multiplier(4)
    token_manager.sync_tokens(force=True)

    run = ingest(wait_for_tokens=lambda seconds, reason: None)
    stats = keepa_sandbox.stats()

    assert run.status == IngestionRun.Status.SUCCEEDED
    assert stats["lowest_balance"] >= token_manager.MAX_DEFICIT
    assert stats["answers_429"] == 0
    assert run.tokens_consumed == stats["tokens_consumed_total"]


@pytest.mark.django_db
def test_malformed_deals_skipped_by_reason_and_never_stored(ingest, keepa_sandbox):
    from deals.sandbox.answers import wall_clock_ms

    malformed = keepa_sandbox.catalogue.malformed_entries(1, wall_clock_ms())

    run = ingest()

    assert malformed
    assert run.deals_skipped >= len(malformed) - 1  # at most one malformed object is a duplicate ASIN
    assert set(run.skip_reasons) >= {"not_an_object", "invalid_asin"}
    assert not Deal.objects.exclude(asin__in=keepa_sandbox.valid_asins()).exists()


# Worker faults: real Celery workers on a private Redis.


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_worker_killed_holding_lock_and_reservation(tmp_path, default_deal_query):
    """SIGKILL while a deal call is in flight: the lock and the reservation expire, the run is closed as
    failed by the next run, which continues from the watermark and stores the rest once."""
    from tests.reliability.processes import SandboxProcess, SoakConfig, TaskSchedule, WorkerProcess, wait_until
    from tests.reliability.servers import PrivateRedis

    redis = PrivateRedis(tmp_path / "redis").start()
    prefix = f"{settings.REDIS_KEY_PREFIX}-kill"
    config = SoakConfig(
        api_key=secrets.token_hex(16), redis_url=redis.url, database_url=_database_url(), key_prefix=prefix,
        var_dir=tmp_path, catalogue_size=300, new_deals_per_minute=0, refill_rate=6000, refill_interval_ms=200,
        initial_tokens=100, extra_environment={"KEEPA_READ_TIMEOUT": "30"},
    )
    sandbox = SandboxProcess(config)
    workers: list[WorkerProcess] = []
    client = redis.client()
    try:
        sandbox.start()
        workers.append(WorkerProcess("first", config, sandbox.url).start())
        workers[0].wait_ready()
        schedule = TaskSchedule(config)
        schedule.queue(["amazon-com-all"], max_queued=1)
        wait_until(lambda: IngestionRun.objects.filter(status="succeeded").exists(), 30, None, "first run")
        watermark = _watermark()
        sandbox.control(add_deals=20, faults=["timeout:deal@next=1"])

        schedule.queue(["amazon-com-all"], max_queued=1)
        lock_key = f"{prefix}:deals:ingestion-lock:{default_deal_query.pk}"
        in_flight_key = f"{prefix}:tokens:in_flight"
        wait_until(lambda: client.exists(lock_key) and client.zcard(in_flight_key) == 1, 30, None,
                   "a run holding the lock and a reservation")
        workers[0].sigkill()

        assert 0 < client.pttl(lock_key) <= 8000
        wait_until(lambda: not client.exists(lock_key), 10, None, "the lock to expire")
        wait_until(lambda: client.zcount(in_flight_key, int(time.time() * 1000), "+inf") == 0, 10, None,
                   "the reservation to expire")
        workers.append(WorkerProcess("second", config, sandbox.url).start())
        workers[1].wait_ready()
        schedule.queue(["amazon-com-all"], max_queued=1)
        wait_until(lambda: IngestionRun.objects.filter(status="succeeded").count() == 2, 30, None, "the next run")

        abandoned, resumed = IngestionRun.objects.exclude(status="succeeded").get(), _last_succeeded()
        assert abandoned.status == IngestionRun.Status.FAILED
        assert "Abandoned" in abandoned.stop_reason
        assert resumed.watermark_before == watermark
        assert resumed.pages_fetched == 1  # page 0 contains the 20 new deals and reaches the old watermark
        valid = set(sandbox.state(asins=True)["valid_asins"])
        assert set(Deal.objects.values_list("asin", flat=True)) == valid
        assert Deal.objects.count() == len(valid)
        assert client.zcard(in_flight_key) == 0
    finally:
        for worker in workers:
            worker.stop()
        sandbox.stop()
        redis.stop()


def _database_url() -> str:
    from tests.test_ingestion_celery import worker_database_url

    return worker_database_url()


def _watermark():
    from deals.models import DealQuery

    return DealQuery.objects.get(name="amazon-com-all").watermark


def _last_succeeded() -> IngestionRun:
    return IngestionRun.objects.filter(status="succeeded").order_by("-started_at").first()

