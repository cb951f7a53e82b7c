"""Report the health of dealsite: database, Redis, Celery, Keepa and ingestion."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from dealsite import health


class Command(BaseCommand):
    help = (
        "Check the database, Redis, the Celery worker and beat, the Keepa token ledger, the watermark of each "
        "active deal query and the last ingestion run. Prints PASS, WARN or FAIL per check and exits with "
        "status 1 when any check fails."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--json", action="store_true", help="Print the report as one JSON document.")
        parser.add_argument(
            "--redis-url",
            default="",
            help="Check this Redis instead of REDIS_URL, e.g. redis://127.0.0.1:6379/0.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        results = health.run_checks(redis_url=options["redis_url"] or None)
        if options["json"]:
            self.stdout.write(json.dumps(health.report_document(results), indent=2))
        else:
            self._write_table(results)

        if health.overall_status(results) == health.FAIL:
            failed = sum(result.status == health.FAIL for result in results)
            raise CommandError(f"{failed} health check(s) failed.", returncode=1)

    def _write_table(self, results: list[health.CheckResult]) -> None:
        width = max(len(result.name) for result in results)
        styles = {health.PASS: self.style.SUCCESS, health.WARN: self.style.WARNING, health.FAIL: self.style.ERROR}
        for result in results:
            status = styles[result.status](result.status)
            self.stdout.write(f"{status}  {result.name.ljust(width)}  {result.reason}")
        self.stdout.write(f"Overall: {health.overall_status(results)}")
