"""Print the token ledger's status, read from Redis only (never from Keepa)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from tokens.errors import LedgerError
from tokens.manager import TokenManager


class Command(BaseCommand):
    help = "Print the shared Keepa token ledger: balance, refill rate, reservations in flight, waiters, learned costs."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--json", action="store_true", help="Print the status as one JSON object.")

    def handle(self, *args, **options) -> None:
        try:
            status = TokenManager(task="token_status").status()
        except LedgerError as error:
            raise CommandError(str(error)) from error

        data = status.as_dict()
        if options["json"]:
            self.stdout.write(json.dumps(data, indent=2, sort_keys=True))
            return

        if status.balance is None:
            self.stdout.write("The ledger has no reading of Keepa's balance yet; run `manage.py sync_tokens`.")
        learned = data.pop("learned_costs")
        for name, value in data.items():
            label = "Redis key prefix" if name == "key_prefix" else name.replace("_", " ")
            shown = f"{value:.2f}".rstrip("0").rstrip(".") if isinstance(value, float) else value
            self.stdout.write(f"{label}: {shown}")
        costs = ", ".join(f"{kind} {cost:g}/unit" for kind, cost in learned.items())
        self.stdout.write(f"learned costs: {costs or 'none yet'}")
