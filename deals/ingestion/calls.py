"""Keepa calls of an ingestion run, each under a token reservation from the ledger."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from deals.keepa import KeepaError
from deals.locks import QueryLock
from deals.models import IngestionRun
from tokens.errors import LedgerError
from tokens.manager import TokenManager, TokenRechargeError

logger = logging.getLogger(__name__)

Response = TypeVar("Response")

# wait_for_tokens(seconds, reason) is called before each wait starts. The run then
# sleeps for `seconds` itself and extends its lock meanwhile.
WaitCallback = Callable[[float, str], Any]


class TokenGate:
    """The run's door to Keepa: every call is estimated, reserved, made, and counted on the run.

    The client reconciles the ledger from each response through its response
    hook; this class only adds the run's own bookkeeping and the waiting.
    """

    def __init__(
        self,
        manager: TokenManager,
        *,
        lock: QueryLock,
        wait_for_tokens: WaitCallback | None,
        run: IngestionRun,
    ) -> None:
        self.manager = manager
        self.lock = lock
        self.wait_for_tokens = wait_for_tokens
        self.run = run

    def estimate(self, kind: str, units: float, default: float) -> float:
        return float(self.manager.estimate_cost(kind, units=units, default=default))

    def has_enough_tokens(self, cost: float) -> bool:
        return bool(self.manager.has_enough_tokens(cost))

    def call(
        self, kind: str, *, units: float, default: float, call: Callable[[], Response], may_wait: bool = True
    ) -> Response:
        """Make `call` under a reservation of the estimated cost.

        Raise TokenRechargeError when the ledger requires a wait and the run
        may not wait (no wait_for_tokens, or optional work with may_wait False).
        """
        cost = self.estimate(kind, units, default)
        while True:
            try:
                response = self._reserved_call(kind, cost, units, call)
            except TokenRechargeError as error:
                if self.wait_for_tokens is None or not may_wait:
                    raise
                self.wait(error.retry_after, f"{cost:.0f} tokens for a {kind} call")
                continue

            self.run.tokens_estimated += cost
            self.run.tokens_consumed += response.token_state.tokens_consumed
            return response

    def largest_grantable_cost(self) -> float | None:
        """Return the largest cost the ledger can grant at the current refill rate, or None without a reading."""
        try:
            return float(self.manager.max_grantable_cost())
        except LedgerError as error:
            logger.info("The ledger could not tell its largest grantable cost: %s", error)
            return None

    def _reserved_call(self, kind: str, cost: float, units: float, call: Callable[[], Response]) -> Response:
        # Short waits happen inside the ledger (up to KEEPA_MAX_WAIT_SECONDS); a
        # longer one raises TokenRechargeError, handled by the caller.
        options = {"on_wait": self._on_ledger_wait} if self.wait_for_tokens is not None else {}
        try:
            with self.manager.reserve(cost, kind=kind, units=units, **options):
                return call()
        except KeepaError as error:
            if error.token_state is not None:
                self.run.tokens_estimated += cost
                self.run.tokens_consumed += error.token_state.tokens_consumed
            raise

    def wait(self, seconds: float, reason: str) -> None:
        """Wait `seconds` for tokens, extending the ingestion lock so that it outlives the wait."""
        logger.info("Run %s waits %.1f s for %s.", self.run.pk, seconds, reason)
        self.wait_for_tokens(seconds, reason)
        step = max(1.0, self.lock.ttl_seconds / 3)
        remaining = max(0.0, seconds)
        while remaining > 0:
            self.lock.extend()
            chunk = min(step, remaining)
            time.sleep(chunk)
            remaining -= chunk
        self.lock.extend()

    def _on_ledger_wait(self, seconds: float, reason: str) -> None:
        self.lock.extend()
        if self.wait_for_tokens is not None:
            self.wait_for_tokens(seconds, reason)

    def keep_lock(self) -> bool:
        """Extend the ingestion lock after a page. Return False when it was lost (expired, or Redis restarted)."""
        return self.lock.extend()
