"""The Redis side of the token ledger: keys, script calls and their parsed results.

Every method is one atomic script call (one Redis round trip). Redis errors
are raised as LedgerUnavailableError.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from redis import Redis
from redis.exceptions import RedisError

from tokens.errors import LedgerUnavailableError
from tokens.scripts import script

Result = TypeVar("Result")


def _number(raw: Any) -> float | None:
    if raw is None:
        return None
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return float(text) if text else None


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


@dataclass(frozen=True)
class ReserveResult:
    """Decision of the reserve script. `status` is granted, wait, empty, too_large or never."""

    status: str
    balance_before: float | None = None
    balance_after: float | None = None
    in_flight_total: float | None = None
    wait_ms: int = 0
    position: int = 0
    max_grantable: float | None = None


@dataclass(frozen=True)
class ReconcileResult:
    """Effect of one reading on the ledger. `outcome` is applied, stale or no_reading."""

    outcome: str
    balance_before: float | None
    balance_after: float | None
    drift: float | None
    old_refill_rate: float | None
    in_flight_total: float | None
    reserved_cost: float | None


@dataclass(frozen=True)
class Reading:
    """Keepa's token state from one response."""

    tokens_left: float
    refill_in_ms: float | None
    refill_rate: float
    timestamp_ms: float | None = None
    tokens_consumed: float | None = None


class RedisLedger:
    """The ledger's keys under one prefix, and the scripts that change them."""

    def __init__(self, client: Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.state_key = f"{prefix}:state"
        self.in_flight_key = f"{prefix}:in_flight"
        self.in_flight_cost_key = f"{prefix}:in_flight_cost"
        self.queue_key = f"{prefix}:queue"
        self.ticket_cost_key = f"{prefix}:ticket_cost"
        self.ticket_expiry_key = f"{prefix}:ticket_expiry"
        self.ticket_sequence_key = f"{prefix}:ticket_sequence"
        self.learned_cost_key = f"{prefix}:learned_cost"
        self.sync_throttle_key = f"{prefix}:sync_throttle"

    def all_keys(self) -> list[str]:
        return [
            self.state_key, self.in_flight_key, self.in_flight_cost_key, self.queue_key, self.ticket_cost_key,
            self.ticket_expiry_key, self.ticket_sequence_key, self.learned_cost_key, self.sync_throttle_key,
        ]

    def reserve(
        self,
        reservation_id: str,
        cost: float,
        *,
        grant: bool,
        min_threshold: float,
        max_deficit: float,
        reservation_ttl_ms: int,
        ticket_grace_ms: int,
        turn_wait_ms: int,
    ) -> ReserveResult:
        keys = [
            self.state_key, self.in_flight_key, self.in_flight_cost_key, self.queue_key,
            self.ticket_cost_key, self.ticket_expiry_key, self.ticket_sequence_key,
        ]
        arguments = [
            "grant" if grant else "check", reservation_id, repr(float(cost)), repr(float(min_threshold)),
            repr(float(max_deficit)), reservation_ttl_ms, ticket_grace_ms, turn_wait_ms,
        ]
        raw = self._run("reserve", keys, arguments)
        status = _text(raw[0])

        if status == "granted":
            return ReserveResult(status, _number(raw[1]), _number(raw[2]), _number(raw[3]))
        if status == "wait":
            return ReserveResult(status, balance_before=_number(raw[2]), wait_ms=int(raw[1]), position=int(raw[3]))
        if status == "too_large":
            return ReserveResult(status, max_grantable=_number(raw[1]))
        if status == "never":
            return ReserveResult(status, balance_before=_number(raw[1]))
        return ReserveResult(status)

    def reconcile(
        self,
        reading: Reading | None,
        *,
        reservation_id: str = "",
        close: bool = True,
        refill_interval_ms: int,
        kind: str = "",
        units: float = 1,
        tokens_consumed: float | None = None,
        is_sync: bool = False,
    ) -> ReconcileResult:
        keys = [self.state_key, self.in_flight_key, self.in_flight_cost_key, self.learned_cost_key]
        arguments = [
            reservation_id,
            "1" if close else "0",
            "1" if reading else "0",
            _argument(reading.tokens_left if reading else None),
            _argument(reading.refill_in_ms if reading else None),
            _argument(reading.refill_rate if reading else None),
            _argument(reading.timestamp_ms if reading else None),
            refill_interval_ms,
            kind,
            _argument(units),
            _argument(tokens_consumed),
            "1" if is_sync else "0",
        ]
        raw = self._run("reconcile", keys, arguments)
        return ReconcileResult(_text(raw[0]), *(_number(value) for value in raw[1:7]))

    def release(self, reservation_id: str, mode: str) -> tuple[bool, float | None, float | None]:
        """Close a reservation ("refund" or "spent") or remove a ticket ("ticket")."""
        keys = [
            self.state_key, self.in_flight_key, self.in_flight_cost_key,
            self.queue_key, self.ticket_cost_key, self.ticket_expiry_key,
        ]
        raw = self._run("release", keys, [reservation_id, mode])
        return _text(raw[0]) == "1", _number(raw[1]), _number(raw[2])

    def snapshot(self) -> dict[str, str]:
        keys = [
            self.state_key, self.in_flight_key, self.in_flight_cost_key, self.queue_key,
            self.ticket_cost_key, self.ticket_expiry_key, self.learned_cost_key,
        ]
        raw = self._run("status", keys, [])
        return {_text(raw[index]): _text(raw[index + 1]) for index in range(0, len(raw), 2)}

    def learned_cost(self, kind: str) -> float | None:
        return self._call(lambda: _number(self.client.hget(self.learned_cost_key, kind)))

    def claim_sync_slot(self, interval_ms: int) -> bool:
        """Take the right to a routine sync for `interval_ms`; false when another sync took it."""
        return self._call(lambda: bool(self.client.set(self.sync_throttle_key, "1", nx=True, px=interval_ms)))

    def _run(self, name: str, keys: list[str], arguments: list[Any]) -> list[Any]:
        registered = script(name, self.client)
        return self._call(lambda: registered(keys=keys, args=arguments, client=self.client))

    def _call(self, operation: Callable[[], Result]) -> Result:
        try:
            return operation()
        except RedisError as error:
            raise LedgerUnavailableError(
                f"The token ledger's Redis failed ({type(error).__name__}: {error}); no Keepa call may start "
                "without a reservation. Check that Redis is running and REDIS_URL points at it."
            ) from error


def _argument(value: float | None) -> str:
    return "" if value is None else repr(float(value))
