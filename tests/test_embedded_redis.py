"""The embedded Redis server: started once, shared, and found again by later processes."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import redis

from dealsite.embedded_redis import ensure_embedded_redis, running_url, stop_embedded_redis


def test_embedded_redis_starts_once_and_is_shared(tmp_path):
    directory = tmp_path / "redis"
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            urls = set(pool.map(lambda _: ensure_embedded_redis(directory), range(4)))

        assert len(urls) == 1
        url = urls.pop()
        assert url.startswith("redis://127.0.0.1:")
        assert running_url(directory) == url

        client = redis.Redis.from_url(url)
        client.set("dealsite-embedded-probe", "54.5")
        assert client.incrbyfloat("dealsite-embedded-probe", -55) == -0.5
        client.close()
    finally:
        assert stop_embedded_redis(directory)

    assert running_url(directory) == ""


def test_embedded_redis_found_by_another_process(tmp_path):
    directory = tmp_path / "redis"
    try:
        url = ensure_embedded_redis(directory)
        code = (
            "import sys; from pathlib import Path;"
            "from dealsite.embedded_redis import ensure_embedded_redis;"
            "print(ensure_embedded_redis(Path(sys.argv[1])))"
        )
        completed = subprocess.run(
            [sys.executable, "-c", code, str(directory)], capture_output=True, text=True, check=True, timeout=60
        )

        assert completed.stdout.strip() == url
    finally:
        stop_embedded_redis(directory)
