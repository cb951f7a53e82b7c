"""Health checks of dealsite, shared by `manage.py health_report` and `/healthz`.

Each check returns one CheckResult: PASS, WARN or FAIL with a one-line reason
and a few figures. Checks read only the database, Redis and the token ledger,
never Keepa, so every check is cheap enough for a health endpoint polled
every few seconds. No check returns the Keepa key or any deal data.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Max
from django.utils import timezone
from redis import Redis
from redis.exceptions import RedisError

from dealsite import heartbeats
from dealsite.masking import configured_keys, mask_secrets

logger = logging.getLogger(__name__)

PASS = "PASS"  # noqa: S105 (a check status, not a password)
WARN = "WARN"
FAIL = "FAIL"
SEVERITY = {PASS: 0, WARN: 1, FAIL: 2}

# Seconds a health check waits for Redis before it reports it unreachable.
REDIS_TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "reason": self.reason, "details": self.details}


def overall_status(results: list[CheckResult]) -> str:
    """Return the worst status among `results`: FAIL over WARN over PASS."""
    return max((result.status for result in results), key=SEVERITY.__getitem__, default=PASS)


def run_checks(redis_url: str | None = None) -> list[CheckResult]:
    """Run every check in order. `redis_url` replaces settings.REDIS_URL for the Redis-based checks."""
    client = redis_client(redis_url or settings.REDIS_URL)
    results = [check_database(), check_migrations()]
    database_ok = results[0].status != FAIL
    redis_result = check_redis(client)
    redis_ok = redis_result.status != FAIL

    if database_ok:
        results.append(check_deals())
    results.append(redis_result)
    results.append(check_celery_worker(client if redis_ok else None))
    results.append(check_celery_beat(client if redis_ok else None))
    results.append(check_keepa(redis_ok, database_ok))
    if database_ok:
        results.extend(check_watermarks())
        results.append(check_last_ingestion_run())
    return results


def report_document(results: list[CheckResult]) -> dict[str, Any]:
    """Return the machine-readable report: the overall status, when it was made and every check."""
    return {
        "status": overall_status(results),
        "checked_at": timezone.now().isoformat(),
        "checks": [result.as_dict() for result in results],
    }


@functools.lru_cache(maxsize=8)
def redis_client(url: str) -> Redis:
    """Return a client for `url` with short timeouts, one connection pool per URL and process."""
    return Redis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS, socket_timeout=REDIS_TIMEOUT_SECONDS)


# Database


def check_database() -> CheckResult:
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as error:
        logger.warning("Health check: the database is unreachable: %s", error)
        return CheckResult("database", FAIL, f"unreachable ({type(error).__name__}: {_first_line(error)})")

    latency_ms = (time.perf_counter() - started) * 1000
    vendor = connection.vendor
    return CheckResult("database", PASS, f"{vendor} reachable in {latency_ms:.1f} ms",
                       {"vendor": vendor, "latency_ms": round(latency_ms, 1)})


def check_migrations() -> CheckResult:
    try:
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError as error:
        return CheckResult("migrations", FAIL, f"cannot read the migration table ({_first_line(error)})")

    if plan:
        names = [f"{migration.app_label}.{migration.name}" for migration, _backwards in plan]
        return CheckResult(
            "migrations", FAIL,
            f"{len(names)} migrations not applied (first: {names[0]}): run manage.py migrate",
            {"unapplied": names},
        )
    return CheckResult("migrations", PASS, "all migrations applied")


def check_deals(now: datetime | None = None) -> CheckResult:
    """Check that deals exist and that the most recently seen one is recent."""
    from deals.models import Deal

    now = now or timezone.now()
    summary = Deal.objects.aggregate(newest=Max("last_seen_at"))
    count = Deal.objects.count()
    if not count:
        return CheckResult("deals", WARN, "no deals stored yet: run update_recent_deals or start a worker and beat",
                           {"count": 0})

    age = (now - summary["newest"]).total_seconds()
    details = {"count": count, "newest_seen_seconds_ago": round(age)}
    status = _age_status(age)
    reason = f"{count} deals, the newest seen {format_age(age)} ago"
    if status != PASS:
        reason += f" (over {format_age(_age_limit(status))}): check the worker and the last ingestion runs"
    return CheckResult("deals", status, reason, details)


# Redis and Celery


def check_redis(client: Redis) -> CheckResult:
    started = time.perf_counter()
    try:
        client.ping()
    except RedisError as error:
        logger.warning("Health check: Redis is unreachable: %s", error)
        return CheckResult("redis", FAIL, f"unreachable ({type(error).__name__}): check that Redis runs and REDIS_URL")

    latency_ms = (time.perf_counter() - started) * 1000
    details = {"latency_ms": round(latency_ms, 2)}
    if latency_ms > settings.HEALTH_REDIS_LATENCY_WARN_MS:
        return CheckResult("redis", WARN, f"reachable but slow: ping took {latency_ms:.1f} ms "
                           f"(over {settings.HEALTH_REDIS_LATENCY_WARN_MS:.0f} ms)", details)
    return CheckResult("redis", PASS, f"reachable, ping {latency_ms:.1f} ms", details)


def check_celery_worker(client: Redis | None, now: float | None = None) -> CheckResult:
    """Check that at least one worker wrote a heartbeat within the last three heartbeat intervals."""
    if client is None:
        return CheckResult("celery_worker", FAIL, "unknown: Redis, which holds the heartbeats, is unreachable")

    try:
        workers = heartbeats.live_workers(client, now)
        latest = heartbeats.latest_worker_heartbeat(client)
    except RedisError as error:
        return CheckResult("celery_worker", FAIL, f"cannot read heartbeats ({type(error).__name__})")

    if workers:
        newest = min(workers.values())
        return CheckResult(
            "celery_worker", PASS, f"{len(workers)} worker(s) seen, the latest {newest:.0f} s ago",
            {"workers": sorted(workers), "count": len(workers)},
        )
    if latest is None:
        # A worker that stops cleanly removes its heartbeat, so none may be left at all.
        return CheckResult("celery_worker", FAIL, "no worker is running: start one with celery -A dealsite worker")
    age = (now or time.time()) - latest
    return CheckResult("celery_worker", FAIL, f"no worker seen for {format_age(age)}: "
                       "start one with celery -A dealsite worker", {"last_seen_seconds_ago": round(age)})


def check_celery_beat(client: Redis | None) -> CheckResult:
    if client is None:
        return CheckResult("celery_beat", FAIL, "unknown: Redis, which holds the heartbeats, is unreachable")

    try:
        latest = heartbeats.beat_heartbeat(client)
    except RedisError as error:
        return CheckResult("celery_beat", FAIL, f"cannot read the heartbeat ({type(error).__name__})")

    if latest is None:
        return CheckResult("celery_beat", FAIL, "beat not seen recently: start it with celery -A dealsite beat "
                           "(one beat for the whole deployment)")
    age = max(0.0, time.time() - latest)
    if age > heartbeats.stale_after():
        return CheckResult("celery_beat", FAIL, f"beat not seen for {format_age(age)}",
                           {"last_seen_seconds_ago": round(age)})
    return CheckResult("celery_beat", PASS, f"beat seen {age:.0f} s ago", {"last_seen_seconds_ago": round(age)})


# Keepa, read from the token ledger and its audit trail


def check_keepa(redis_ok: bool = True, database_ok: bool = True) -> CheckResult:
    if not settings.KEEPA_API_KEY:
        return CheckResult("keepa", FAIL, "KEEPA_API_KEY is not set: set it to the key of your Keepa plan")
    if not redis_ok:
        return CheckResult("keepa", FAIL, "API key set, but the token ledger is unreachable because Redis is down")

    from tokens.errors import LedgerError
    from tokens.manager import TokenManager

    try:
        status = TokenManager().status()
    except LedgerError as error:
        return CheckResult("keepa", FAIL, f"API key set, but the token ledger failed ({type(error).__name__})")

    last_call = last_successful_call() if database_ok else None
    return keepa_result(status, last_call)


def keepa_result(status: Any, last_call: datetime | None, now: datetime | None = None) -> CheckResult:
    """Judge the ledger's status (a LedgerStatus) and the time of the last successful Keepa call."""
    now = now or timezone.now()
    balance = status.projected_balance if status.projected_balance is not None else status.balance
    refill_rate = status.refill_rate
    details = {
        "tokens_left": balance,
        "refill_rate": refill_rate,
        "last_successful_call": last_call.isoformat() if last_call else None,
    }
    if balance is None:
        return CheckResult("keepa", WARN, "API key set, but the ledger has no balance yet: run manage.py sync_tokens",
                           details)

    figures = f"{balance:.1f} tokens left, refill {refill_rate or 0:g}/min"
    if last_call is None:
        return CheckResult("keepa", WARN, f"{figures}, no successful Keepa call recorded", details)

    age = (now - last_call).total_seconds()
    details["last_successful_call_seconds_ago"] = round(age)
    figures += f", last successful call {format_age(age)} ago"
    if balance < 0:
        return CheckResult("keepa", WARN, f"{figures}: the balance is in deficit, calls wait for the refill", details)
    if age > settings.HEALTH_DATA_AGE_WARN_SECONDS:
        return CheckResult("keepa", WARN, f"{figures}: no call for over "
                           f"{format_age(settings.HEALTH_DATA_AGE_WARN_SECONDS)}", details)
    return CheckResult("keepa", PASS, figures, details)


def last_successful_call() -> datetime | None:
    """Return the time of the newest audit event written from a Keepa response that carried a token state."""
    from tokens.models import TokenEvent

    # NOTE: a 5xx response that carries token fields is recorded the same way, so it counts here too.
    kinds = [TokenEvent.Kind.RECONCILE, TokenEvent.Kind.SYNC]
    events = TokenEvent.objects.filter(kind__in=kinds, balance_after__isnull=False, actual_cost__isnull=False)
    return events.aggregate(
        newest=Max("created_at")
    )["newest"]


# Ingestion


def check_watermarks(now: datetime | None = None) -> list[CheckResult]:
    """Check the watermark age of every active deal query, one result per query."""
    from deals.models import DealQuery

    now = now or timezone.now()
    results = []
    for query in DealQuery.objects.filter(is_active=True).only("name", "watermark"):
        results.append(_watermark_result(query.name, query.watermark, now))
    if not results:
        results.append(CheckResult("watermarks", WARN, "no active deal query: nothing is ingested"))
    return results


def _watermark_result(name: str, watermark: datetime | None, now: datetime) -> CheckResult:
    check_name = f"watermark:{name}"
    if watermark is None:
        return CheckResult(check_name, WARN, "no complete run yet, so no watermark")

    age = (now - watermark).total_seconds()
    status = _age_status(age)
    reason = f"watermark {format_age(age)} old"
    if status != PASS:
        reason += f" (over {format_age(_age_limit(status))}): check the ingestion runs of this query"
    return CheckResult(check_name, status, reason, {"watermark": watermark.isoformat(), "age_seconds": round(age)})


def check_last_ingestion_run(now: datetime | None = None) -> CheckResult:
    from deals.models import IngestionRun

    now = now or timezone.now()
    run = IngestionRun.objects.select_related("query").order_by("-started_at").first()
    if run is None:
        return CheckResult("last_ingestion_run", WARN, "no ingestion run yet")

    age = (now - run.started_at).total_seconds()
    details = {"query": run.query.name, "status": run.status, "started_seconds_ago": round(age),
               "deals_created": run.deals_created, "deals_updated": run.deals_updated}
    described = f"{run.status} for {run.query.name}, started {format_age(age)} ago"
    Status = IngestionRun.Status
    if run.status == Status.FAILED:
        return CheckResult("last_ingestion_run", FAIL, f"{described}: {_first_line(run.error) or 'no error text'}",
                           details)
    if run.status == Status.RUNNING and age > settings.CELERY_TASK_TIME_LIMIT:
        return CheckResult("last_ingestion_run", WARN, f"{described}, longer than the task time limit: "
                           "its worker probably died", details)
    if run.status in (Status.PARTIAL, Status.SKIPPED):
        return CheckResult("last_ingestion_run", WARN, f"{described}: {run.stop_reason or 'no reason recorded'}",
                           details)
    return CheckResult("last_ingestion_run", PASS, described, details)


# Helpers


def _age_status(age_seconds: float) -> str:
    if age_seconds > settings.HEALTH_DATA_AGE_FAIL_SECONDS:
        return FAIL
    if age_seconds > settings.HEALTH_DATA_AGE_WARN_SECONDS:
        return WARN
    return PASS


def _age_limit(status: str) -> int:
    return settings.HEALTH_DATA_AGE_FAIL_SECONDS if status == FAIL else settings.HEALTH_DATA_AGE_WARN_SECONDS


def format_age(seconds: float) -> str:
    """Return a duration in seconds as the largest sensible unit: 45 s, 12 min, 3.5 h, 2.0 d."""
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _first_line(error: object) -> str:
    # Error texts come from drivers and from ingestion, so any Keepa key in them is masked.
    text = mask_secrets(str(error), configured_keys()).strip()
    return text.splitlines()[0][:200] if text else ""
