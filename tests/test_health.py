"""Health checks, the health_report command and /healthz, against the real database and Redis."""

from __future__ import annotations

import json
import socket
import time
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from django_redis import get_redis_connection

from deals.models import Deal, DealQuery, IngestionRun
from dealsite import health, heartbeats

SECRET_KEY_VALUE = "k3Yq9SECRETvalue0123456789abcdefABCDEF0123456789abcdefABCDEF0123"


def closed_port_url() -> str:
    """Return a Redis URL on 127.0.0.1 whose port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


@pytest.fixture
def redis_client():
    return get_redis_connection("default")


@pytest.fixture
def clean_heartbeats(redis_client):
    redis_client.delete(heartbeats.workers_key(), heartbeats.beat_key())
    yield redis_client
    redis_client.delete(heartbeats.workers_key(), heartbeats.beat_key())


@pytest.fixture
def seeded_ledger(settings):
    """A ledger under the run's default token prefix with a balance of 250 tokens and a refill rate of 20."""
    from tokens.manager import TokenManager

    settings.KEEPA_API_KEY = SECRET_KEY_VALUE
    manager = TokenManager()
    manager.update_after_call(250.0, refill_rate=20.0, refill_in=30_000, tokens_consumed=5.0, endpoint="deal",
                              status=200)
    yield manager
    get_redis_connection("default").delete(*manager.ledger.all_keys())


@pytest.fixture
def healthy_system(db, settings, clean_heartbeats, seeded_ledger):
    """Every check passes: live worker and beat, a key, recent deals, a fresh watermark and a good run."""
    heartbeats.record_worker_heartbeat("celery@test-host", clean_heartbeats)
    heartbeats.record_beat_heartbeat(clean_heartbeats)
    now = timezone.now()
    DealQuery.objects.update(is_active=False)
    query = DealQuery.objects.create(name="health-query", selection={"domainId": 1}, watermark=now)
    make_deal(query, "B0HEALTH01", "Kettle <script>alert('x')</script>")
    IngestionRun.objects.create(query=query, status=IngestionRun.Status.SUCCEEDED, started_at=now,
                                finished_at=now, deals_created=1)
    return query


def make_deal(query: DealQuery, asin: str, title: str, **fields) -> Deal:
    now = timezone.now()
    values = {"domain": 1, "asin": asin, "title": title, "query": query, "keepa_created_at": now,
              "current_new": 1999, **fields}
    return Deal.objects.create(**values)


def by_name(results: list[health.CheckResult]) -> dict[str, health.CheckResult]:
    return {result.name: result for result in results}


# Redis and Celery


def test_redis_check_passes_on_real_redis(redis_client):
    result = health.check_redis(redis_client)

    assert result.status == health.PASS
    assert result.details["latency_ms"] >= 0


def test_redis_check_fails_on_closed_port():
    result = health.check_redis(health.redis_client(closed_port_url()))

    assert result.status == health.FAIL
    assert "unreachable" in result.reason


@pytest.mark.django_db
def test_run_checks_with_redis_down_fails_celery_and_keepa(settings):
    settings.KEEPA_API_KEY = SECRET_KEY_VALUE

    results = by_name(health.run_checks(redis_url=closed_port_url()))

    assert results["redis"].status == health.FAIL
    assert results["celery_worker"].status == health.FAIL
    assert results["celery_beat"].status == health.FAIL
    assert results["keepa"].status == health.FAIL
    assert results["database"].status == health.PASS


def test_worker_check_fails_without_heartbeat(clean_heartbeats):
    result = health.check_celery_worker(clean_heartbeats)

    assert result.status == health.FAIL
    assert "no worker is running" in result.reason


def test_worker_check_passes_after_heartbeat(clean_heartbeats):
    heartbeats.record_worker_heartbeat("celery@host-a", clean_heartbeats)

    result = health.check_celery_worker(clean_heartbeats)

    assert result.status == health.PASS
    assert result.details["workers"] == ["celery@host-a"]


def test_worker_check_fails_on_stale_heartbeat(clean_heartbeats):
    long_ago = time.time() - heartbeats.stale_after() - 30
    heartbeats.record_worker_heartbeat("celery@host-b", clean_heartbeats, now=long_ago)

    result = health.check_celery_worker(clean_heartbeats)

    assert result.status == health.FAIL
    assert "no worker seen for" in result.reason


def test_forgotten_worker_leaves_set(clean_heartbeats):
    heartbeats.record_worker_heartbeat("celery@host-c", clean_heartbeats)
    heartbeats.forget_worker("celery@host-c", clean_heartbeats)

    assert heartbeats.live_workers(clean_heartbeats) == {}


def test_beat_check_paths(clean_heartbeats):
    assert health.check_celery_beat(clean_heartbeats).status == health.FAIL

    heartbeats.record_beat_heartbeat(clean_heartbeats)
    assert health.check_celery_beat(clean_heartbeats).status == health.PASS

    heartbeats.record_beat_heartbeat(clean_heartbeats, now=time.time() - heartbeats.stale_after() - 5)
    assert health.check_celery_beat(clean_heartbeats).status == health.FAIL


def test_worker_bootstep_writes_heartbeat_on_timer(clean_heartbeats):
    from celery.utils.timer2 import Timer

    class FakeWorkerShell:
        """The two attributes the bootstep reads from a Celery worker."""

        hostname = "celery@bootstep-test"
        timer = Timer()

    worker = FakeWorkerShell()
    step = heartbeats.WorkerHeartbeat(worker)
    step.start(worker)
    try:
        assert "celery@bootstep-test" in heartbeats.live_workers(clean_heartbeats)
    finally:
        step.stop(worker)
        worker.timer.stop()

    assert "celery@bootstep-test" not in heartbeats.live_workers(clean_heartbeats)


# Database, deals, watermarks and runs


@pytest.mark.django_db
def test_database_and_migrations_pass():
    assert health.check_database().status == health.PASS
    assert health.check_migrations().status == health.PASS


@pytest.mark.django_db
def test_deals_check_warns_without_deals():
    Deal.objects.all().delete()

    assert health.check_deals().status == health.WARN


@pytest.mark.django_db
def test_deals_check_ages(settings):
    query = DealQuery.objects.create(name="ages", selection={"domainId": 1})
    deal = make_deal(query, "B0AGE00001", "Lamp")

    assert health.check_deals().status == health.PASS

    Deal.objects.filter(pk=deal.pk).update(last_seen_at=timezone.now() - timedelta(hours=2))
    assert health.check_deals().status == health.WARN

    Deal.objects.filter(pk=deal.pk).update(last_seen_at=timezone.now() - timedelta(days=3))
    result = health.check_deals()
    assert result.status == health.FAIL
    assert "3.0 d ago" in result.reason


@pytest.mark.django_db
def test_watermark_checks_per_active_query():
    DealQuery.objects.update(is_active=False)
    now = timezone.now()
    DealQuery.objects.create(name="fresh", selection={"domainId": 1}, watermark=now - timedelta(minutes=5))
    DealQuery.objects.create(name="stale", selection={"domainId": 1}, watermark=now - timedelta(hours=3))
    DealQuery.objects.create(name="dead", selection={"domainId": 1}, watermark=now - timedelta(days=2))
    DealQuery.objects.create(name="new", selection={"domainId": 1})
    DealQuery.objects.create(name="off", selection={"domainId": 1}, is_active=False)

    results = by_name(health.check_watermarks())

    assert results["watermark:fresh"].status == health.PASS
    assert results["watermark:stale"].status == health.WARN
    assert results["watermark:dead"].status == health.FAIL
    assert results["watermark:new"].status == health.WARN
    assert "watermark:off" not in results


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (IngestionRun.Status.SUCCEEDED, health.PASS),
        (IngestionRun.Status.PARTIAL, health.WARN),
        (IngestionRun.Status.SKIPPED, health.WARN),
        (IngestionRun.Status.FAILED, health.FAIL),
    ],
)
def test_last_ingestion_run_status(status, expected, settings):
    settings.KEEPA_API_KEY = SECRET_KEY_VALUE
    query = DealQuery.objects.create(name="runs", selection={"domainId": 1})
    IngestionRun.objects.create(query=query, status=status, started_at=timezone.now() - timedelta(minutes=1),
                                error=f"Keepa said no to https://api.keepa.com/deal?key={SECRET_KEY_VALUE}")

    result = health.check_last_ingestion_run()

    assert result.status == expected
    assert SECRET_KEY_VALUE not in result.reason


@pytest.mark.django_db
def test_last_ingestion_run_stuck_running_warns(settings):
    query = DealQuery.objects.create(name="stuck", selection={"domainId": 1})
    started = timezone.now() - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 60)
    IngestionRun.objects.create(query=query, status=IngestionRun.Status.RUNNING, started_at=started)

    result = health.check_last_ingestion_run()

    assert result.status == health.WARN
    assert "worker probably died" in result.reason


# Keepa


@pytest.mark.django_db
def test_keepa_check_fails_without_key(settings):
    settings.KEEPA_API_KEY = ""

    result = health.check_keepa()

    assert result.status == health.FAIL
    assert "KEEPA_API_KEY is not set" in result.reason


@pytest.mark.django_db
def test_keepa_check_reads_ledger(seeded_ledger):
    result = health.check_keepa()

    assert result.status == health.PASS, result.reason
    assert result.details["refill_rate"] == 20.0
    assert 240 <= result.details["tokens_left"] <= 1450
    assert SECRET_KEY_VALUE not in json.dumps(result.as_dict())


@pytest.mark.django_db
def test_keepa_check_warns_on_empty_ledger(settings, redis_client):
    from tokens.manager import TokenManager

    settings.KEEPA_API_KEY = SECRET_KEY_VALUE
    redis_client.delete(*TokenManager().ledger.all_keys())

    assert health.check_keepa().status == health.WARN


# The command


@pytest.mark.django_db
def test_health_report_exits_nonzero_on_fail(settings, clean_heartbeats):
    settings.KEEPA_API_KEY = ""
    output = StringIO()

    with pytest.raises(CommandError) as caught:
        call_command("health_report", stdout=output)

    assert caught.value.returncode == 1
    text = output.getvalue()
    assert "FAIL" in text
    assert "celery_worker" in text
    assert "Overall: FAIL" in text


@pytest.mark.django_db
def test_health_report_json_on_redis_down(settings):
    settings.KEEPA_API_KEY = SECRET_KEY_VALUE
    output = StringIO()

    with pytest.raises(CommandError):
        call_command("health_report", "--json", "--redis-url", closed_port_url(), stdout=output)

    document = json.loads(output.getvalue())
    statuses = {check["name"]: check["status"] for check in document["checks"]}
    assert document["status"] == "FAIL"
    assert statuses["redis"] == "FAIL"
    assert SECRET_KEY_VALUE not in output.getvalue()


def test_health_report_passes_on_healthy_system(healthy_system):
    output = StringIO()

    call_command("health_report", stdout=output)

    text = output.getvalue()
    assert "Overall: PASS" in text, text
    assert "FAIL" not in text


def test_health_report_warn_exits_zero(healthy_system):
    DealQuery.objects.filter(pk=healthy_system.pk).update(watermark=timezone.now() - timedelta(hours=2))
    output = StringIO()

    call_command("health_report", "--json", stdout=output)

    document = json.loads(output.getvalue())
    assert document["status"] == "WARN"


# /healthz


def test_healthz_200_when_healthy_and_leaks_nothing(client, healthy_system):
    response = client.get("/healthz")

    body = response.content.decode()
    assert response.status_code == 200, body
    assert response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"]
    assert json.loads(body)["status"] == "PASS"
    assert SECRET_KEY_VALUE not in body
    assert SECRET_KEY_VALUE[:4] not in body
    assert "B0HEALTH01" not in body
    assert "Kettle" not in body


@pytest.mark.django_db
def test_healthz_503_when_a_check_fails(client, settings, clean_heartbeats):
    settings.KEEPA_API_KEY = SECRET_KEY_VALUE

    response = client.get("/healthz")

    assert response.status_code == 503
    assert json.loads(response.content)["status"] == "FAIL"
    assert SECRET_KEY_VALUE not in response.content.decode()


@pytest.mark.django_db
def test_healthz_503_when_redis_down(client, settings):
    settings.REDIS_URL = closed_port_url()

    response = client.get("/healthz")

    statuses = {check["name"]: check["status"] for check in json.loads(response.content)["checks"]}
    assert response.status_code == 503
    assert statuses["redis"] == "FAIL"


@pytest.mark.django_db
def test_healthz_rejects_post(client):
    assert client.post("/healthz").status_code == 405
