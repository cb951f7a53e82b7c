"""Soak and fault run: real Celery workers ingest from the Keepa sandbox while faults are injected, then invariants.

    .venv/bin/python bench/soak.py --short                      # about a minute, 2 workers, for CI
    .venv/bin/python bench/soak.py --seconds 600 --workers 4    # the long soak
    .venv/bin/python bench/soak.py --seconds 600 --workers 4 --private-postgres --json soak.json

Redis is always a private redis-server on a free 127.0.0.1 port, because the
run restarts and stops it. The database is a PostgreSQL database created for
the run and dropped after it (on the server of DATABASE_URL, or on a private
cluster with --private-postgres), or a temporary SQLite file when DATABASE_URL
is unset or SQLite. The exit status is 1 when an invariant failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.reliability.servers import PrivatePostgres, PrivateRedis  # noqa: E402

SHORT_SECONDS = 35
SHORT_WORKERS = 2
SHORT_FAULT_INTERVAL = 2.5


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="A short run for CI (about a minute in all).")
    parser.add_argument("--seconds", type=float, default=600, help="Time under load, in seconds (default 600).")
    parser.add_argument("--workers", type=int, default=4, help="Celery worker processes (default 4).")
    parser.add_argument("--fault-interval", type=float, default=8.0, help="Seconds between faults (default 8).")
    parser.add_argument("--no-faults", action="store_true", help="Load only, no fault injection.")
    parser.add_argument("--private-postgres", action="store_true",
                        help="Run PostgreSQL in a private cluster (initdb as the postgres user).")
    parser.add_argument("--json", type=Path, help="Also write the figures to this file.")
    parser.add_argument("--keep-logs", action="store_true", help="Keep the temporary directory with the logs.")
    arguments = parser.parse_args()
    if arguments.short:
        arguments.seconds, arguments.workers, arguments.fault_interval = (
            SHORT_SECONDS, SHORT_WORKERS, SHORT_FAULT_INTERVAL)
    return arguments


def postgres_database(stack: ExitStack, base_url: str) -> str:
    """Create a database for this run next to base_url's and drop it when the stack closes. Return its URL."""
    import psycopg

    parts = urlsplit(base_url)
    name = f"dealsite_soak_{os.getpid()}_{secrets.token_hex(3)}"
    admin = parts._replace(path="/postgres").geturl().replace("postgres://", "postgresql://", 1)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    stack.callback(drop)
    return parts._replace(path=f"/{name}").geturl()


def choose_database(stack: ExitStack, arguments: argparse.Namespace, directory: Path) -> tuple[str, str]:
    """Return the database URL for the run and a description of it for the report."""
    if arguments.private_postgres:
        cluster = PrivatePostgres(directory / "postgres").initdb().start()
        stack.callback(cluster.stop)
        return postgres_database(stack, cluster.url), f"private PostgreSQL cluster on port {cluster.port}"
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://", "pgsql://")):
        return postgres_database(stack, url), "a new database on DATABASE_URL's PostgreSQL server"
    return f"sqlite:///{directory / 'soak.sqlite3'}", "SQLite"


def main() -> int:
    arguments = parse_arguments()
    directory = Path(tempfile.mkdtemp(prefix="dealsite-soak-"))
    with ExitStack() as stack:
        redis = PrivateRedis(directory / "redis").start()
        stack.callback(redis.stop)
        database_url, database = choose_database(stack, arguments, directory)
        prefix = f"dealsite-soak-{secrets.token_hex(4)}"
        os.environ.update({"DATABASE_URL": database_url, "REDIS_URL": redis.url, "DEALSITE_REDIS_PREFIX": prefix,
                           "DEALSITE_VAR_DIR": str(directory), "DJANGO_SETTINGS_MODULE": "dealsite.settings"})
        figures = run(arguments, directory, redis, database_url, prefix)
        figures.values["database"] = database
    if not arguments.keep_logs and not figures.violations:
        import shutil

        shutil.rmtree(directory, ignore_errors=True)
    else:
        print(f"Logs are in {directory}.")
    return report(arguments, figures)


def run(arguments: argparse.Namespace, directory: Path, redis: PrivateRedis, database_url: str, prefix: str):
    import django

    django.setup()
    from django.core.management import call_command

    from tests.reliability.processes import SoakConfig
    from tests.reliability.soak import SoakOptions, run_soak

    call_command("migrate", verbosity=0)
    config = SoakConfig(
        api_key=secrets.token_hex(16), redis_url=redis.url, database_url=database_url, key_prefix=prefix,
        var_dir=directory, catalogue_size=300 if arguments.short else 600, new_deals_per_minute=60,
        refill_rate=1200, refill_interval_ms=200, initial_tokens=40,
    )
    options = SoakOptions(seconds=arguments.seconds, workers=arguments.workers,
                          fault_interval_seconds=arguments.fault_interval, faults=not arguments.no_faults)
    started = time.monotonic()
    figures = run_soak(options, config, redis)
    figures.values.update({
        "wall_seconds": round(time.monotonic() - started, 1),
        "refill_rate_per_minute": config.refill_rate,
        "refill_interval_ms": config.refill_interval_ms,
        "machine": f"{platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    })
    return figures


def report(arguments: argparse.Namespace, figures) -> int:
    values = figures.values
    print(f"Soak: {values.get('duration_seconds')} s under load, {values.get('workers')} workers, "
          f"{values.get('deal_queries')} deal queries, {values.get('database')}.")
    for name in ("deals_stored", "ingestion_runs", "tokens_consumed", "tokens_charged_unanswered",
                 "audit_actual_total", "answers_429", "answers_429_after_change", "answers_429_token_endpoint",
                 "answers_429_avoidable", "lowest_balance", "requests", "refill_tokens_offered",
                 "time_efficiency", "wall_seconds"):
        print(f"  {name}: {values.get(name)}")
    print(f"  faults applied: {len(values.get('faults_applied', []))}")
    for fault in values.get("faults_applied", []):
        print(f"    {fault}")
    if arguments.json:
        arguments.json.write_text(json.dumps({**values, "violations": figures.violations}, indent=2) + "\n")
    if figures.violations:
        print("INVARIANTS FAILED:")
        for violation in figures.violations:
            print(f"  {violation}")
        return 1
    print("All invariants held.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
