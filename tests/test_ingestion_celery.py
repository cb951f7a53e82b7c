"""The Celery tasks in a real worker process, on the real broker, against the sandbox over loopback HTTP.

The worker is `celery -A dealsite worker --pool solo` started with the test's
environment: the same Redis key prefix, and DATABASE_URL pointing at the test
database, which it can see because these tests commit (transactional_db).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from deals.models import Deal, DealQuery, IngestionRun
from deals.tasks import update_recent_deals, update_recent_deals_for_active_queries
from tokens.manager import TokenManager

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("default_deal_query"),
]

ROOT = Path(__file__).resolve().parent.parent
WORKER_START_SECONDS = 30
TASK_SECONDS = 30


def worker_database_url() -> str:
    database = connection.settings_dict
    if database["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{database['NAME']}"
    user = database.get("USER") or "postgres"
    password = f":{database['PASSWORD']}" if database.get("PASSWORD") else ""
    host = database.get("HOST") or "127.0.0.1"
    port = database.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{database['NAME']}"


@pytest.fixture
def celery_worker(keepa_sandbox, ingest_settings, tmp_path):
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "dealsite.settings",
        "DEALSITE_REDIS_PREFIX": settings.REDIS_KEY_PREFIX,
        "REDIS_URL": settings.REDIS_URL,
        "DATABASE_URL": worker_database_url(),
        "KEEPA_API_KEY": keepa_sandbox.api_key,
        "KEEPA_API_URL": keepa_sandbox.url,
        "KEEPA_REFILL_INTERVAL_MS": "200",
        "KEEPA_RETRY_BACKOFF": "0",
        # Any wait for tokens becomes a task retry, so the retry path is exercised.
        "KEEPA_MAX_WAIT_SECONDS": "0",
        "DEALSITE_INGEST_ENRICH": "0",
    }
    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log:
        worker = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "dealsite", "worker", "--pool", "solo",
                "--without-heartbeat", "--without-gossip", "--without-mingle", "--loglevel", "INFO",
            ],
            cwd=ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_worker(worker, log_path)
        yield worker
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=10)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=10)


def wait_for_worker(worker: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + WORKER_START_SECONDS
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            pytest.fail(f"The Celery worker exited with {worker.returncode}:\n{log_path.read_text()}")
        if "ready." in log_path.read_text():
            return
        time.sleep(0.2)
    pytest.fail(f"The Celery worker did not start within {WORKER_START_SECONDS} s:\n{log_path.read_text()}")


def test_task_stores_deals_in_worker(celery_worker, keepa_sandbox):
    result = update_recent_deals.delay("amazon-com-all")

    summary = result.get(timeout=TASK_SECONDS)

    assert summary["status"] == IngestionRun.Status.SUCCEEDED
    assert summary["deals_created"] == len(keepa_sandbox.valid_asins())
    assert set(Deal.objects.values_list("asin", flat=True)) == keepa_sandbox.valid_asins()
    assert IngestionRun.objects.get().trigger == "task"


def test_task_retries_after_token_wait(celery_worker, keepa_sandbox):
    # Below the ledger's minimum, so page 0 has to wait; at 3000 tokens a
    # minute the balance covers every page by the time the retry runs.
    keepa_sandbox.set_refill_rate(3000)
    keepa_sandbox.set_tokens_left(0.5)
    # The worker shares this ledger (same key prefix); make it read the low balance now.
    TokenManager().sync_tokens(force=True)

    summary = update_recent_deals.delay("amazon-com-all").get(timeout=TASK_SECONDS)

    waiting, finished = IngestionRun.objects.order_by("started_at")
    assert waiting.status == IngestionRun.Status.PARTIAL
    assert "Waiting for tokens" in waiting.stop_reason
    assert finished.status == IngestionRun.Status.SUCCEEDED
    assert summary["run_id"] == finished.pk
    # The task retries with a countdown of at least one second, not at once.
    assert (finished.started_at - waiting.finished_at).total_seconds() >= 0.9


def test_beat_task_queues_one_run_per_active_query(celery_worker, keepa_sandbox):
    DealQuery.objects.create(name="inactive", selection={"domainId": 1}, is_active=False)

    names = update_recent_deals_for_active_queries.delay().get(timeout=TASK_SECONDS)

    assert names == ["amazon-com-all"]
    deadline = time.monotonic() + TASK_SECONDS
    while time.monotonic() < deadline and not IngestionRun.objects.filter(status="succeeded").exists():
        time.sleep(0.2)
    assert list(IngestionRun.objects.values_list("query__name", "status")) == [("amazon-com-all", "succeeded")]
