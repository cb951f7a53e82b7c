"""Keepa time: whole minutes since 2011-01-01 00:00 UTC."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

KEEPA_EPOCH = datetime(2011, 1, 1, tzinfo=UTC)

# Minutes between the Unix epoch and the Keepa epoch: unix_seconds = (keepa_minutes + OFFSET) * 60.
KEEPA_EPOCH_OFFSET_MINUTES = 21_564_000


def keepa_minutes_to_datetime(keepa_minutes: int) -> datetime:
    """Return the timezone-aware UTC datetime of a Keepa minute."""
    return KEEPA_EPOCH + timedelta(minutes=int(keepa_minutes))


def datetime_to_keepa_minutes(moment: datetime) -> int:
    """Return the Keepa minute that contains `moment`, which must be timezone-aware."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment!r} is a naive datetime: pass a timezone-aware one, e.g. with tzinfo=UTC.")
    return int((moment - KEEPA_EPOCH) // timedelta(minutes=1))


def unix_ms_to_keepa_minutes(unix_ms: float) -> int:
    return int(unix_ms // 60_000) - KEEPA_EPOCH_OFFSET_MINUTES


def keepa_minutes_to_unix_ms(keepa_minutes: int) -> int:
    return (int(keepa_minutes) + KEEPA_EPOCH_OFFSET_MINUTES) * 60_000


def keepa_minutes_now() -> int:
    return unix_ms_to_keepa_minutes(time.time() * 1000)
