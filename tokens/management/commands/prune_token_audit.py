"""Delete token audit rows older than the retention period."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from tokens.models import TokenEvent


class Command(BaseCommand):
    help = "Delete token audit events older than --older-than days (default TOKEN_AUDIT_RETENTION_DAYS)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--older-than", dest="older_than", default=None,
            help="Age in whole days; events older than this are deleted.",
        )

    def handle(self, *args, **options) -> None:
        days = self._days(options["older_than"])
        cutoff = timezone.now() - timedelta(days=days)
        deleted, _ = TokenEvent.objects.filter(created_at__lt=cutoff).delete()
        self.stdout.write(f"Deleted {deleted} token audit event(s) older than {days} day(s).")

    def _days(self, raw: str | int | None) -> int:
        if raw is None:
            return settings.TOKEN_AUDIT_RETENTION_DAYS
        try:
            days = int(str(raw).strip())
        except ValueError:
            raise CommandError(f"--older-than {raw!r} is not a whole number of days: use e.g. 30.") from None
        if days < 1:
            raise CommandError(f"--older-than {raw!r} must be at least 1 day.")
        return days
