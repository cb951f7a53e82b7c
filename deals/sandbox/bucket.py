"""Keepa's token rules for one account.

Tokens arrive in discrete refills: every refill interval the balance gains
refill_rate * interval / 1 minute tokens, up to 60 minutes of refill. A request
is accepted while the balance is above zero and its cost is deducted
afterwards, so the balance may go negative. Times are in milliseconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

CAP_MINUTES = 60


def monotonic_ms() -> float:
    return time.monotonic() * 1000


@dataclass(frozen=True)
class BucketState:
    tokens_left: float
    refill_in: int
    refill_rate: float
    # Wall-clock ms of this snapshot. A response carries it as `timestamp`, so
    # that the timestamp and the balance describe the same moment.
    timestamp: int = 0


class TokenBucket:
    def __init__(
        self,
        refill_rate: float,
        *,
        refill_interval_ms: int = 60_000,
        initial_tokens: float | None = None,
        clock: Callable[[], float] = monotonic_ms,
    ) -> None:
        if refill_rate < 0:
            raise ValueError(f"Refill rate {refill_rate} is negative: use 0 or more tokens per minute.")
        if refill_interval_ms < 1:
            raise ValueError(f"Refill interval {refill_interval_ms} ms is not valid: use 1 ms or more.")
        self._lock = threading.Lock()
        self._clock = clock
        self.refill_rate = float(refill_rate)
        self.refill_interval_ms = int(refill_interval_ms)
        self.balance = float(self.cap if initial_tokens is None else initial_tokens)
        self.lowest_balance = self.balance
        self.total_consumed = 0.0
        self._last_refill_ms = clock()

    @property
    def cap(self) -> float:
        return CAP_MINUTES * self.refill_rate

    @property
    def tokens_per_refill(self) -> float:
        return self.refill_rate * self.refill_interval_ms / 60_000

    def state(self) -> BucketState:
        with self._lock:
            return self._state(self._refill())

    def try_charge(self, cost: float) -> tuple[bool, BucketState]:
        """Deduct `cost` if the balance is above zero. Returns whether it was accepted and the state after."""
        with self._lock:
            now = self._refill()
            if self.balance <= 0:
                return False, self._state(now)
            self._deduct(cost)
            return True, self._state(now)

    def charge(self, cost: float) -> BucketState:
        """Deduct `cost` whatever the balance, for work already done (a request that timed out)."""
        with self._lock:
            now = self._refill()
            self._deduct(cost)
            return self._state(now)

    def set_refill_rate(self, refill_rate: float) -> None:
        with self._lock:
            self._refill()
            self.refill_rate = float(refill_rate)

    def set_balance(self, tokens_left: float) -> None:
        with self._lock:
            self._refill()
            self.balance = float(tokens_left)
            self.lowest_balance = min(self.lowest_balance, self.balance)

    def _deduct(self, cost: float) -> None:
        self.balance -= cost
        self.total_consumed += cost
        self.lowest_balance = min(self.lowest_balance, self.balance)

    def _refill(self) -> float:
        now = self._clock()
        refills = int((now - self._last_refill_ms) // self.refill_interval_ms)
        if refills > 0:
            self._last_refill_ms += refills * self.refill_interval_ms
            # Tokens above the cap expire; a balance already above it (a large initial balance) is kept.
            if self.balance < self.cap:
                self.balance = min(self.cap, self.balance + refills * self.tokens_per_refill)
        return now

    def _state(self, now: float) -> BucketState:
        refill_in = max(0, round(self._last_refill_ms + self.refill_interval_ms - now))
        return BucketState(self.balance, refill_in, self.refill_rate, int(time.time() * 1000))
