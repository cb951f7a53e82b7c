"""manage.py update_recent_deals: fetch and store the deals Keepa found since the last run."""

from __future__ import annotations

import signal
import sys
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from deals.ingestion import IngestionOptions, PageProgress, update_recent_deals
from deals.models import DealQuery, IngestionRun


class Command(BaseCommand):
    help = (
        "Fetch the deals Keepa found since the last run of a deal query (newest first), store them, "
        "and refresh known deals, spending tokens through the shared token ledger."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--query", metavar="NAME", help="Name of the deal query (default: the only active one).")
        parser.add_argument(
            "--max-pages", type=int, metavar="N", help="Read at most N pages of 150 deals (default INGEST_MAX_PAGES)."
        )
        parser.add_argument(
            "--max-deals", type=int, metavar="N", help="Store at most N deals (default INGEST_MAX_DEALS, 0: no limit)."
        )
        parser.add_argument("--dry-run", action="store_true", help="Fetch and parse, but write no deals.")
        parser.add_argument("--no-enrich", action="store_true", help="Make no product calls after the deal pages.")

    def handle(self, *args: Any, **options: Any) -> None:
        check_api_key()
        query = find_query(options["query"])
        run_options = IngestionOptions(
            max_pages=check_limit("--max-pages", options["max_pages"]),
            max_deals=check_limit("--max-deals", options["max_deals"]),
            dry_run=options["dry_run"],
            enrich=False if options["no_enrich"] else None,
            trigger="command",
        )
        self.verbosity = options["verbosity"]
        self.show_progress = self.verbosity >= 1 and (sys.stdout.isatty() or self.verbosity >= 2)
        # SIGTERM ends the run like Ctrl-C: the page in flight is rolled back
        # and the run is recorded as failed, with the watermark unchanged.
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)

        try:
            run = update_recent_deals(
                query, run_options, progress=self.print_progress, wait_for_tokens=self.print_wait
            )
        except DatabaseError as error:
            raise CommandError(
                f"Ingestion of deal query {query.name} stopped on a database error "
                f"({' '.join(str(error).split())}). Pages stored before it are kept and the watermark did not "
                "move; run the command again once the database is reachable."
            ) from error
        self.print_summary(run)
        if run.status == IngestionRun.Status.FAILED:
            raise CommandError(f"Ingestion run {run.pk} failed: {run.error or run.stop_reason}")

    def print_progress(self, progress: PageProgress) -> None:
        if not self.show_progress:
            return
        tokens_left = "?" if progress.tokens_left is None else f"{progress.tokens_left:.0f}"
        self.stdout.write(
            f"page {progress.page}: {progress.deals_on_page} deals | total {progress.pages_fetched} pages, "
            f"{progress.deals_created} created, {progress.deals_updated} updated, {progress.deals_skipped} skipped | "
            f"tokens {progress.tokens_consumed:.0f} spent, {tokens_left} left"
        )

    def print_wait(self, seconds: float, reason: str) -> None:
        if self.verbosity >= 1:
            self.stdout.write(f"waiting {seconds:.1f} s for {reason}")

    def print_summary(self, run: IngestionRun) -> None:
        if run.status == IngestionRun.Status.FAILED or self.verbosity < 1:
            return
        style = self.style.SUCCESS if run.status == IngestionRun.Status.SUCCEEDED else self.style.WARNING
        skipped = ", ".join(f"{reason} {count}" for reason, count in sorted(run.skip_reasons.items()))
        lines = [
            style(f"Run {run.pk} of deal query {run.query.name}: {run.status}{' (dry run)' if run.dry_run else ''}."),
            f"  pages {run.pages_fetched}, deals received {run.deals_received}, created {run.deals_created}, "
            f"updated {run.deals_updated}, skipped {run.deals_skipped}{f' ({skipped})' if skipped else ''}",
            f"  enriched {run.deals_enriched}, refreshed {run.deals_refreshed}",
            f"  tokens estimated {run.tokens_estimated:.0f}, consumed {run.tokens_consumed:.0f}",
            f"  watermark {_moment(run.watermark_before)} -> {_moment(run.watermark_after)}",
        ]
        if run.stop_reason:
            lines.append(f"  {run.stop_reason}")
        if run.error:
            lines.append(f"  error: {run.error}")
        self.stdout.write("\n".join(lines))


def check_api_key() -> None:
    if not settings.KEEPA_API_KEY:
        raise CommandError(
            "KEEPA_API_KEY is not set: set it to your Keepa API key, or run `python3 dev.py run`, "
            "which starts the local Keepa sandbox and runs this command against it."
        )


def find_query(name: str | None) -> DealQuery:
    if name is not None:
        try:
            return DealQuery.objects.get(name=name)
        except DealQuery.DoesNotExist:
            raise CommandError(f"Deal query {name!r} does not exist: use one of {_known_names()}.") from None

    active = list(DealQuery.objects.filter(is_active=True).order_by("name")[:2])
    if len(active) == 1:
        return active[0]
    if not active:
        raise CommandError(f"No deal query is active: pass --query NAME with one of {_known_names()}.")
    raise CommandError(f"Several deal queries are active: pass --query NAME with one of {_known_names()}.")


def check_limit(option: str, value: int | None) -> int | None:
    if value is not None and value < 0:
        raise CommandError(f"{option} {value} is negative: pass 0 for no limit or a positive number.")
    return value


def _known_names() -> str:
    names = list(DealQuery.objects.order_by("name").values_list("name", flat=True))
    return ", ".join(names) if names else "(none: run `manage.py migrate` to create the default query)"


def _moment(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "none"


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
