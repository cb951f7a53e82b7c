"""PostgreSQL going down in the middle of an ingestion run, on a private cluster that the test may restart.

The run fails cleanly: the command exits with a one-line error, the pages
committed before the outage stay whole and the watermark does not move. Once
PostgreSQL is back, the next run closes the interrupted run as failed and
completes the catalogue without duplicates. (A restart that is over before the
run's next write goes unnoticed: writes outside a page's transaction retry once
on a new connection.)
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from django.conf import settings

from deals.sandbox.server import SandboxServer
from tests.reliability.servers import PrivatePostgres, postgres_binaries

ROOT = Path(__file__).resolve().parent.parent
REFILL_INTERVAL_MS = 200
# Each deal call waits this long in the sandbox, so the outage starts between pages.
LATENCY_MS = 400
COMMAND_SECONDS = 90

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(postgres_binaries() is None, reason="PostgreSQL's initdb is not installed"),
    pytest.mark.skipif(os.geteuid() == 0 and shutil.which("runuser") is None,
                       reason="runuser is needed to run PostgreSQL as the postgres user"),
]


def query_one(database_url: str, sql: str):
    import psycopg

    with psycopg.connect(database_url.replace("postgres://", "postgresql://"), connect_timeout=5) as connection:
        return connection.execute(sql).fetchone()


def ingest_command(environment: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "update_recent_deals", "--no-enrich"],
        cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_for(condition, seconds: float, description: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {seconds} s waiting for {description}.")
        time.sleep(0.05)


@pytest.fixture
def postgres_directory():
    # Outside pytest's tmp_path, whose parents only root may enter: the postgres user must reach it.
    directory = Path(tempfile.mkdtemp(prefix="dealsite-postgres-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_postgres_outage_fails_run_cleanly_and_next_succeeds(tmp_path, postgres_directory):
    postgres = PrivatePostgres(postgres_directory / "cluster").initdb().start()
    api_key = secrets.token_hex(16)
    sandbox = SandboxServer(api_key, refill_rate=6000, refill_interval_ms=REFILL_INTERVAL_MS,
                            catalogue_size=1000, latency_ms=LATENCY_MS)
    try:
        database_url = postgres.create_database("dealsite_restart")
        sandbox.start()
        environment = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "dealsite.settings",
            "DATABASE_URL": database_url,
            "REDIS_URL": settings.REDIS_URL,
            "DEALSITE_VAR_DIR": str(tmp_path / "var"),
            # Under this run's prefix, so the suite's cleanup deletes these keys too.
            "DEALSITE_REDIS_PREFIX": f"{settings.REDIS_KEY_PREFIX}:postgres-restart",
            "KEEPA_API_KEY": api_key,
            "KEEPA_API_URL": sandbox.url,
            "KEEPA_REFILL_INTERVAL_MS": str(REFILL_INTERVAL_MS),
            "KEEPA_MAX_RETRIES": "0",
            "DJANGO_LOG_LEVEL": "WARNING",
        }
        subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "--verbosity", "0"],
                       cwd=ROOT, env=environment, check=True, timeout=COMMAND_SECONDS)

        first = ingest_command(environment)
        wait_for(lambda: query_one(database_url, "SELECT count(*) FROM deals_deal")[0] > 0, 30,
                 "the first page to be committed")
        postgres.stop()
        _, errors = first.communicate(timeout=COMMAND_SECONDS)
        postgres.start()

        assert first.returncode == 1
        assert errors.strip().splitlines()[-1].startswith("CommandError: Ingestion of deal query amazon-com-all "
                                                          "stopped on a database error"), errors
        status, pages, created = query_one(
            database_url, "SELECT status, pages_fetched, deals_created FROM deals_ingestionrun ORDER BY id LIMIT 1"
        )
        assert status == "running"  # PostgreSQL was down when the run ended, so its end could not be saved
        assert pages >= 1
        stored = query_one(database_url, "SELECT count(*) FROM deals_deal")[0]
        assert stored == created  # the pages committed before the outage, each whole
        assert query_one(database_url, "SELECT watermark FROM deals_dealquery WHERE name = 'amazon-com-all'")[0] is None

        second = ingest_command(environment)
        output, errors = second.communicate(timeout=COMMAND_SECONDS)

        assert second.returncode == 0, errors
        assert "succeeded" in output
        interrupted_status, reason = query_one(
            database_url, "SELECT status, stop_reason FROM deals_ingestionrun ORDER BY id LIMIT 1"
        )
        assert interrupted_status == "failed"
        assert reason.startswith("Abandoned")
        valid = sandbox.valid_asins()
        assert query_one(database_url, "SELECT count(*), count(DISTINCT asin) FROM deals_deal") == (
            len(valid), len(valid)
        )
        assert query_one(database_url, "SELECT count(*) FROM deals_ingestionrun WHERE status = 'running'")[0] == 0
    finally:
        sandbox.stop()
        postgres.stop()
