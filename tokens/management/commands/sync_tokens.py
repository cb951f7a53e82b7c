"""Set the token ledger from Keepa's token endpoint."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from tokens.errors import LedgerError
from tokens.manager import TokenManager


class Command(BaseCommand):
    help = (
        "Read Keepa's token endpoint and set the shared ledger from it. Without --force the sync is skipped "
        "when another ran within KEEPA_SYNC_INTERVAL_SECONDS."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--force", action="store_true", help="Sync even if another sync ran recently.")

    def handle(self, *args, **options) -> None:
        from deals.keepa import KeepaError

        manager = TokenManager(task="sync_tokens")
        try:
            result = manager.sync_tokens(force=options["force"])
        except (LedgerError, KeepaError) as error:
            raise CommandError(f"The token sync failed: {error}") from error

        if result is None:
            self.stdout.write("Skipped: a sync ran within KEEPA_SYNC_INTERVAL_SECONDS; use --force to sync anyway.")
            return
        if result.outcome == "stale":
            self.stdout.write(
                "Not applied: the ledger already holds a newer reading from a Keepa response in this "
                "refill period. Run token_status to see it."
            )
            return
        status = manager.status()
        self.stdout.write(
            f"Synced: balance {status.balance:g} tokens, refill rate {status.refill_rate:g} per minute, "
            f"{status.in_flight_count} reservation(s) in flight."
        )
