"""Fixtures shared by the whole suite.

Tests use the real Redis named by REDIS_URL (or the embedded one) under a key
prefix unique to this run (see tests/settings.py), and delete only keys under that prefix.
"""

from __future__ import annotations

import pytest
from django.conf import settings


@pytest.fixture(scope="session")
def redis_key_prefix() -> str:
    return settings.REDIS_KEY_PREFIX


@pytest.fixture(scope="session", autouse=True)
def _delete_test_keys_at_exit(redis_key_prefix):
    yield
    from django_redis import get_redis_connection

    client = get_redis_connection("default")
    for key in client.scan_iter(match=f"{redis_key_prefix}:*", count=1000):
        client.delete(key)


# Keepa sandbox and client. Refills come every 200 ms so that refill tests finish quickly.

SANDBOX_REFILL_INTERVAL_MS = 200


@pytest.fixture
def keepa_sandbox():
    import secrets

    from deals.sandbox.server import SandboxServer

    server = SandboxServer(
        secrets.token_hex(16), port=0, refill_interval_ms=SANDBOX_REFILL_INTERVAL_MS, catalogue_size=400
    )
    with server:
        yield server


def sandbox_client(sandbox, **options):
    """Return a KeepaClient for `sandbox` with short timeouts; `options` override the defaults."""
    from deals.keepa import KeepaClient

    defaults = {
        "base_url": sandbox.url,
        "domain": 1,
        "connect_timeout": 1.0,
        "read_timeout": 2.0,
        "refill_interval_ms": SANDBOX_REFILL_INTERVAL_MS,
    }
    return KeepaClient(sandbox.api_key, **{**defaults, **options})


@pytest.fixture
def keepa_client(keepa_sandbox):
    return sandbox_client(keepa_sandbox, max_retries=2, sleep=lambda seconds: None)


@pytest.fixture
def plain_static_storage(settings):
    """Static files without the manifest, which only exists after collectstatic; for tests that render pages."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


# Ingestion: a token ledger under its own key prefix, a client that feeds it,
# and `ingest`, which runs update_recent_deals against the sandbox with both.

@pytest.fixture
def ingest_settings(keepa_sandbox, settings):
    settings.KEEPA_API_KEY = keepa_sandbox.api_key
    settings.KEEPA_API_URL = keepa_sandbox.url
    settings.KEEPA_REFILL_INTERVAL_MS = SANDBOX_REFILL_INTERVAL_MS
    settings.KEEPA_RETRY_BACKOFF = 0.0
    settings.KEEPA_MAX_RETRIES = 1
    settings.KEEPA_READ_TIMEOUT = 2.0
    settings.INGEST_MAX_PAGES = 0
    settings.INGEST_MAX_DEALS = 0
    settings.INGEST_ENRICH = False
    yield settings

    # The command and the Celery worker use the default ledger prefix; leave it
    # empty for the next test, as every test finds it.
    from django_redis import get_redis_connection

    redis = get_redis_connection("default")
    for key in redis.scan_iter(match=f"{settings.REDIS_KEY_PREFIX}:tokens:*"):
        redis.delete(key)


@pytest.fixture
def token_manager(ingest_settings):
    import uuid

    from django_redis import get_redis_connection

    from tokens.manager import TokenManager

    prefix = f"{ingest_settings.REDIS_KEY_PREFIX}:tokens-{uuid.uuid4().hex[:8]}"
    manager = TokenManager(key_prefix=prefix, refill_interval_ms=SANDBOX_REFILL_INTERVAL_MS)
    yield manager
    redis = get_redis_connection("default")
    for key in redis.scan_iter(match=f"{prefix}:*"):
        redis.delete(key)


@pytest.fixture
def ingest_client(keepa_sandbox, token_manager):
    return sandbox_client(keepa_sandbox, max_retries=1, retry_backoff=0.0, response_hook=token_manager.observe)


@pytest.fixture
def deal_query(db):
    from deals.models import DealQuery

    return DealQuery.objects.get(name="amazon-com-all")


@pytest.fixture
def ingest(deal_query, ingest_client, token_manager):
    """Run update_recent_deals against the sandbox with the test's client and ledger."""
    from deals.ingestion import IngestionOptions, update_recent_deals

    def run(query=None, progress=None, wait_for_tokens=None, **options):
        return update_recent_deals(
            query or deal_query,
            IngestionOptions(**options),
            client=ingest_client,
            manager=token_manager,
            progress=progress,
            wait_for_tokens=wait_for_tokens,
        )

    return run


@pytest.fixture
def celery_queue(redis_key_prefix):
    """The Redis list of the default Celery queue, emptied after the test.

    Tasks that a test queues without a worker would otherwise wait there and
    run in the worker that a later test starts.
    """
    from django_redis import get_redis_connection

    redis = get_redis_connection("default")
    queue_key = f"{redis_key_prefix}:celery:celery"
    yield redis, queue_key
    redis.delete(queue_key)


@pytest.fixture
def default_deal_query(transactional_db):
    """The deal query that the data migration ships, for transactional tests.

    The flush that ends a transactional test deletes it, so the next one
    creates it again. (serialized_rollback would do the same, but it fails on
    content types that an earlier flush made anew.)
    """
    from importlib import import_module

    from deals.models import DealQuery

    migration = import_module("deals.migrations.0002_default_deal_query")
    query, _ = DealQuery.objects.get_or_create(
        name=migration.DEFAULT_QUERY_NAME, defaults={"selection": migration.DEFAULT_SELECTION, "is_active": True}
    )
    return query
