"""A reservation of tokens for one Keepa call, usable as a context manager around the call."""

from __future__ import annotations

import contextvars
import logging
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from tokens.errors import LedgerError

if TYPE_CHECKING:
    from tokens.manager import TokenManager

logger = logging.getLogger(__name__)

# The reservation whose Keepa call is running in this thread or task, so that
# the client's response hook can reconcile against it.
active_reservation: contextvars.ContextVar[Reservation | None] = contextvars.ContextVar(
    "active_reservation", default=None
)


@dataclass
class Reservation:
    """Tokens held for one Keepa call, from the grant until the response reconciles the ledger.

    `cost` is the estimated cost that was reserved. balance_before and
    balance_after are the projected balances around the grant.
    """

    manager: TokenManager = field(repr=False)
    id: str
    cost: float
    kind: str = ""
    endpoint: str = ""
    units: float = 1
    balance_before: float | None = None
    balance_after: float | None = None
    in_flight_total: float | None = None
    waited_seconds: float = 0.0
    task: str = ""
    closed: bool = False
    outcomes: list[Any] = field(default_factory=list, repr=False)
    _token: contextvars.Token | None = field(default=None, repr=False)

    def observe(self, outcome: Any) -> None:
        """Take one outcome of this reservation's call from the client's response hook.

        An outcome with token fields reconciles the ledger. The reservation
        closes on a final outcome (success, 429 or a client error); after a
        server error with token fields it stays in flight, because the client
        may try again under it.
        """
        self.outcomes.append(outcome)
        state = getattr(outcome, "token_state", None)
        if state is None or self.closed:
            return

        status = getattr(outcome, "status", None)
        final = getattr(outcome, "error", None) is None or status is None or status < 500
        self.manager.update_after_call(
            state, reservation=self, endpoint=getattr(outcome, "endpoint", "") or self.endpoint,
            status=status, close=final,
        )

    def cancel(self) -> None:
        """Give the tokens back: the call was never sent to Keepa."""
        if not self.closed:
            self.manager.release_reservation(self, refund=True)

    def close_as_spent(self) -> None:
        """Close without a reading; the tokens stay spent because Keepa may have charged the call."""
        if not self.closed:
            self.manager.release_reservation(self, refund=False)

    def __enter__(self) -> Reservation:
        self._token = active_reservation.set(self)
        return self

    def __exit__(
        self,
        error_type: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._token is not None:
            active_reservation.reset(self._token)
            self._token = None
        if self.closed:
            return
        try:
            self.close_as_spent()
        except LedgerError:
            # The reservation expires by itself; the error that ended the call matters more.
            logger.exception("Closing reservation %s failed; it will expire from the ledger.", self.id)
