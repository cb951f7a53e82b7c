"""manage.py clean_stale_deals: delete deals Keepa has not reported for a while."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from deals.ingestion.janitor import DELETE_BATCH_SIZE, clean_stale_deals


class Command(BaseCommand):
    help = (
        "Delete deals not seen for --older-than hours, in batches. Deals whose refresh is overdue "
        "(tokens ran short) are kept and reported as backlog."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=float,
            metavar="HOURS",
            help=f"Hours a deal may go unseen before it is deleted (default {settings.DEAL_STALE_AFTER_HOURS:g}, "
            "DEALSITE_DEAL_STALE_AFTER_HOURS).",
        )
        parser.add_argument(
            "--batch-size", type=int, default=DELETE_BATCH_SIZE, help="Deals deleted per DELETE statement."
        )
        parser.add_argument("--dry-run", action="store_true", help="Count the stale deals without deleting them.")

    def handle(self, *args: Any, **options: Any) -> None:
        hours = options["older_than"]
        if hours is not None and hours <= 0:
            raise CommandError(f"--older-than {hours:g} must be a positive number of hours, e.g. 72.")
        if options["batch_size"] < 1:
            raise CommandError(f"--batch-size {options['batch_size']} must be 1 or more, e.g. {DELETE_BATCH_SIZE}.")

        result = clean_stale_deals(hours, batch_size=options["batch_size"], dry_run=options["dry_run"])
        if options["verbosity"] < 1:
            return
        verb = "would delete" if options["dry_run"] else "deleted"
        self.stdout.write(f"{verb} {result.deleted} deals not seen since {result.cutoff:%Y-%m-%d %H:%M UTC}.")
        if result.backlog:
            self.stdout.write(
                f"kept {result.backlog} unseen deals whose refresh is overdue (oldest checked "
                f"{result.oldest_backlog_check:%Y-%m-%d %H:%M UTC}): they need tokens, not deletion."
            )
