"""The errors of the token ledger: one hierarchy for every caller to catch."""

from __future__ import annotations


class LedgerError(Exception):
    """Base class of every error raised by the token ledger."""


class LedgerUnavailableError(LedgerError):
    """Redis could not be reached or failed, so no reservation could be made or read.

    Callers must not call Keepa without a reservation, so this fails closed.
    """


class TokenRechargeError(LedgerError):
    """The call may start only after a wait longer than the caller accepts.

    `retry_after` is the number of seconds after which the call is expected to
    be granted; a Celery task retries with that countdown. `ticket` is the
    caller's place in the queue when it asked to keep it, else None.
    """

    def __init__(self, message: str, *, retry_after: float, ticket: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.ticket = ticket


class CostExceedsBudgetError(LedgerError):
    """The cost can never be granted, because even a full balance minus it is below the deficit floor.

    `max_grantable` is the largest cost the ledger can grant at the current refill rate;
    split the call (for example into smaller product batches) to stay under it.
    """

    def __init__(self, message: str, *, cost: float, max_grantable: float) -> None:
        super().__init__(message)
        self.cost = cost
        self.max_grantable = max_grantable


class LedgerEmptyError(LedgerError):
    """The ledger has no reading of Keepa's balance and a sync could not provide one."""
