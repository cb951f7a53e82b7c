"""The ledger's status as status displays show it, read from Redis only."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class LedgerStatus:
    """A snapshot of the ledger. Balances are tokens, the refill rate is tokens per minute.

    `balance` is the stored balance at the last write; `projected_balance`
    adds the refills due since then. Fields are None before the first reading.
    """

    key_prefix: str
    min_token_threshold: float
    max_deficit: float
    balance: float | None
    projected_balance: float | None
    refill_rate: float | None
    refill_interval_ms: float | None
    next_refill_in_ms: float | None
    reading_tokens_left: float | None
    reading_age_seconds: float | None
    last_sync: datetime | None
    in_flight_count: int
    in_flight_total: float
    waiter_count: int
    waiting_total: float
    learned_costs: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["last_sync"] = self.last_sync.isoformat() if self.last_sync else None
        return data


def parse_status(raw: dict[str, str], manager: Any) -> LedgerStatus:
    """Build a LedgerStatus from the field, value pairs of the status script."""
    now_ms = float(raw["now_ms"])
    reading_ms = _number(raw.get("reading_ms"))
    last_sync_ms = _number(raw.get("last_sync_ms"))
    next_refill_ms = _number(raw.get("projected_next_refill_ms"))

    return LedgerStatus(
        key_prefix=manager.key_prefix,
        min_token_threshold=manager.MIN_TOKEN_THRESHOLD,
        max_deficit=manager.MAX_DEFICIT,
        balance=_number(raw.get("balance")),
        projected_balance=_number(raw.get("projected_balance")),
        refill_rate=_number(raw.get("refill_rate")),
        refill_interval_ms=_number(raw.get("refill_interval_ms")),
        next_refill_in_ms=next_refill_ms - now_ms if next_refill_ms is not None else None,
        reading_tokens_left=_number(raw.get("reading_tokens_left")),
        reading_age_seconds=(now_ms - reading_ms) / 1000 if reading_ms is not None else None,
        last_sync=datetime.fromtimestamp(last_sync_ms / 1000, tz=UTC) if last_sync_ms is not None else None,
        in_flight_count=int(float(raw.get("in_flight_count") or 0)),
        in_flight_total=float(raw.get("in_flight_total") or 0),
        waiter_count=int(float(raw.get("waiter_count") or 0)),
        waiting_total=float(raw.get("waiting_total") or 0),
        learned_costs={
            name.removeprefix("cost:"): float(value) for name, value in raw.items() if name.startswith("cost:")
        },
    )


def _number(text: str | None) -> float | None:
    return float(text) if text else None
