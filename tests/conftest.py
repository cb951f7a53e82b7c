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
