"""The shared Keepa token ledger: one balance in Redis for every worker on every host.

The ledger keeps Keepa's last reported balance with every granted
reservation subtracted, and projects Keepa's refills from the refill rate and
the time of that reading (Redis server time). A call of cost c may start when
the projected balance is at least MIN_TOKEN_THRESHOLD and the balance minus c
stays at or above MAX_DEFICIT; waiters are served first come, first served.
Every Keepa response with token fields reconciles the ledger.

Typical use, with the client's response hook feeding the ledger:

    manager = TokenManager()
    client = KeepaClient(response_hook=manager.observe)
    with manager.reserve(kind="deal", default=5):
        response = client.deal(selection)
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django_redis import get_redis_connection
from redis.exceptions import RedisError

from deals.keepa.errors import NotEnoughTokensError
from tokens.audit import record_event
from tokens.errors import (
    CostExceedsBudgetError,
    LedgerEmptyError,
    LedgerError,
    LedgerUnavailableError,
    TokenRechargeError,
)
from tokens.ledger import Reading, ReconcileResult, RedisLedger
from tokens.models import TokenEvent
from tokens.reservation import Reservation, active_reservation
from tokens.status import LedgerStatus, parse_status

__all__ = [
    "CostExceedsBudgetError",
    "LedgerEmptyError",
    "LedgerError",
    "LedgerUnavailableError",
    "Reservation",
    "TokenManager",
    "TokenRechargeError",
]

logger = logging.getLogger(__name__)

# Costs assumed before the ledger has learned any, in tokens per unit (per
# page for deal, per ASIN for product). They are only starting points.
DEFAULT_COST_PER_UNIT = {"deal": 5.0, "product": 1.0, "token": 0.0}

# A waiter sleeps this much past the computed refill, so that Redis time has
# passed it when the waiter tries again.
WAKE_MARGIN_SECONDS = 0.002
# How long a waiter whose turn has come waits for a waiter ahead of it, due
# at the same refill, to take its grant.
TURN_WAIT_MS = 5
# A reading further than this from the ledger is recorded as drift.
DRIFT_TOLERANCE = 1.0
# Drifts of a few tokens are routine while calls run concurrently (a response
# may count a call whose reservation is still subtracted, or precede a refill),
# so only a drift this large is logged as a warning. Every drift gets an audit row.
LARGE_DRIFT_TOKENS = 50.0
# Syncs of an empty ledger before giving up, when each finds it empty again.
EMPTY_SYNC_ATTEMPTS = 3

WaitCallback = Callable[[float, str], Any]
_USE_SETTING: Any = object()


class TokenManager:
    """The token ledger of one Keepa key, shared through Redis under `key_prefix`.

    `client` is the Keepa client used for syncs (default: a KeepaClient for
    `api_key`). `refill_interval_ms` is the time between Keepa's refills
    (default KEEPA_REFILL_INTERVAL_MS). `task` names the task or command in audit rows.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        key_prefix: str | None = None,
        client: Any = None,
        cache_alias: str = "default",
        refill_interval_ms: int | None = None,
        max_wait_seconds: float | None = None,
        sync_interval_seconds: float | None = None,
        reservation_ttl_seconds: float | None = None,
        ticket_grace_seconds: float | None = None,
        task: str = "",
        audit: bool = True,
    ) -> None:
        self.api_key = api_key or settings.KEEPA_API_KEY
        self.key_prefix = key_prefix or f"{settings.REDIS_KEY_PREFIX}:tokens"
        self.MIN_TOKEN_THRESHOLD = float(settings.KEEPA_MIN_TOKEN_THRESHOLD)
        self.MAX_DEFICIT = float(settings.KEEPA_MAX_DEFICIT)
        self.refill_interval_ms = int(refill_interval_ms or settings.KEEPA_REFILL_INTERVAL_MS)
        self.max_wait_seconds = _pick(max_wait_seconds, settings.KEEPA_MAX_WAIT_SECONDS)
        self.sync_interval_seconds = _pick(sync_interval_seconds, settings.KEEPA_SYNC_INTERVAL_SECONDS)
        self.reservation_ttl_ms = int(1000 * _pick(reservation_ttl_seconds, settings.KEEPA_RESERVATION_TTL_SECONDS))
        self.ticket_grace_ms = int(1000 * _pick(ticket_grace_seconds, settings.KEEPA_TICKET_GRACE_SECONDS))
        self.task = task
        self.audit = audit
        self._client = client

        try:
            redis_client = get_redis_connection(cache_alias)
        except RedisError as error:
            raise LedgerUnavailableError(f"The token ledger's Redis could not be set up: {error}.") from error
        self.ledger = RedisLedger(redis_client, self.key_prefix)

    def __repr__(self) -> str:
        return f"<TokenManager prefix={self.key_prefix!r}>"

    # Asking for tokens

    def has_enough_tokens(self, estimated_cost: float) -> bool:
        """Return whether a call of this cost could be granted now, without reserving anything or waiting."""
        for _ in range(EMPTY_SYNC_ATTEMPTS):
            result = self.ledger.reserve(uuid.uuid4().hex, estimated_cost, grant=False, **self._reserve_limits())
            if result.status != "empty":
                return result.status == "granted"
            self.sync_tokens(force=True)
        return False

    def request_permission_for_call(
        self,
        estimated_cost: float,
        *,
        kind: str = "",
        endpoint: str = "",
        units: float = 1,
        max_wait: float | None = _USE_SETTING,
        on_wait: WaitCallback | None = None,
        ticket: str | None = None,
        task: str | None = None,
    ) -> Reservation:
        """Wait until a call of `estimated_cost` may start, then reserve the cost and return the reservation.

        Waits longer than `max_wait` seconds (default KEEPA_MAX_WAIT_SECONDS;
        None waits as long as needed) raise TokenRechargeError with
        retry_after instead. A caller that passes its own `ticket` id keeps
        its place in the queue across such a retry for the wait plus the
        ticket grace. `on_wait(seconds, reason)` is called before each sleep.
        Raises CostExceedsBudgetError for a cost no balance can cover.
        """
        if estimated_cost < 0:
            raise ValueError(f"estimated_cost={estimated_cost!r} is negative: pass the expected cost in tokens.")
        if max_wait is _USE_SETTING:
            max_wait = self.max_wait_seconds
        reservation_id = ticket or uuid.uuid4().hex
        task = self.task if task is None else task
        waited = 0.0
        empty_syncs = 0

        while True:
            result = self.ledger.reserve(reservation_id, estimated_cost, grant=True, **self._reserve_limits())

            if result.status == "granted":
                reservation = Reservation(
                    self, reservation_id, float(estimated_cost), kind=kind, endpoint=endpoint or kind,
                    units=units, balance_before=result.balance_before, balance_after=result.balance_after,
                    in_flight_total=result.in_flight_total, waited_seconds=waited, task=task,
                )
                self._record_grant(reservation)
                return reservation

            if result.status == "empty":
                empty_syncs += 1
                if empty_syncs > EMPTY_SYNC_ATTEMPTS:
                    raise LedgerEmptyError(
                        f"The token ledger under {self.key_prefix!r} stayed empty after {EMPTY_SYNC_ATTEMPTS} syncs; "
                        "check that Keepa's token endpoint answers."
                    )
                self.sync_tokens(force=True)
                continue

            if result.status == "too_large":
                self._drop_ticket(reservation_id)
                raise CostExceedsBudgetError(
                    f"A call estimated at {estimated_cost:g} tokens can never be granted: the most the ledger can "
                    f"grant is {result.max_grantable:g} (full balance minus the deficit floor "
                    f"{self.MAX_DEFICIT:g}). Split the call into smaller ones.",
                    cost=estimated_cost, max_grantable=result.max_grantable,
                )

            if result.status == "never":
                self._drop_ticket(reservation_id)
                retry_after = max(1.0, self.sync_interval_seconds)
                raise TokenRechargeError(
                    f"The refill rate is 0, so a call of {estimated_cost:g} tokens cannot be granted from the "
                    f"balance {result.balance_before:g}; check the Keepa plan and retry in {retry_after:g} s.",
                    retry_after=retry_after,
                )

            seconds = result.wait_ms / 1000 + WAKE_MARGIN_SECONDS
            reason = (
                f"{estimated_cost:g} tokens for {kind or 'a call'}: balance {result.balance_before:.1f}, "
                f"{result.position} waiter(s) ahead"
            )
            if max_wait is not None and waited + seconds > max_wait:
                self._give_up_waiting(reservation_id, estimated_cost, seconds, reason, keep_ticket=ticket is not None,
                                      task=task, kind=kind)
            self._wait(seconds, reason, on_wait, estimated_cost=estimated_cost, task=task, kind=kind)
            waited += seconds

    def reserve(
        self,
        estimated_cost: float | None = None,
        *,
        kind: str = "",
        units: float = 1,
        default: float | None = None,
        **options: Any,
    ) -> Reservation:
        """Reserve tokens for one call, for use as `with manager.reserve(...) as reservation:`.

        With no `estimated_cost`, the learned estimate for `kind` and `units`
        is used (`default` until one is learned). Inside the block, outcomes
        that reach `observe` through the client's response hook reconcile
        this reservation; on leaving the block an unreconciled reservation is
        closed as spent. Other options go to request_permission_for_call.
        """
        if estimated_cost is None:
            estimated_cost = self.estimate_cost(kind, units, default=default)
        return self.request_permission_for_call(estimated_cost, kind=kind, units=units, **options)

    # Learned costs

    def estimate_cost(self, kind: str, units: float = 1, *, default: float | None = None) -> float:
        """Return the expected cost of a call of `kind` covering `units` (pages, ASINs).

        The estimate comes from the learned cost per unit, which follows any
        higher tokensConsumed at once. Before anything is learned it is
        `default`, or the built-in cost per unit for deal, product and token.
        """
        learned = self.ledger.learned_cost(kind)
        if learned is not None:
            return learned * units
        if default is not None:
            return float(default)
        if kind in DEFAULT_COST_PER_UNIT:
            return DEFAULT_COST_PER_UNIT[kind] * units
        raise ValueError(f"No cost is known for calls of kind {kind!r}: pass default= with the expected cost.")

    def max_grantable_cost(self) -> float:
        """Return the largest cost the ledger can ever grant at the current refill rate.

        A full balance is 60 minutes of refill; a call may take it down to MAX_DEFICIT.
        """
        current = self.status(sync_if_empty=True)
        if current.refill_rate is None:
            raise LedgerEmptyError(f"The token ledger under {self.key_prefix!r} has no reading yet; sync it first.")
        full_balance = max(60 * current.refill_rate, current.projected_balance or 0.0)
        return full_balance - self.MAX_DEFICIT

    # Reconciling

    def observe(self, outcome: Any) -> None:
        """Take one outcome from the Keepa client's response hook.

        Inside `with manager.reserve(...)` the outcome reconciles that
        reservation; elsewhere an outcome with token fields is a reading. An
        outcome without token fields never changes the balance. Ledger errors
        are logged, not raised, because the Keepa call has already happened.
        """
        reservation = active_reservation.get()
        try:
            if reservation is _SYNCING:
                return
            if reservation is not None and not reservation.closed:
                reservation.observe(outcome)
            elif getattr(outcome, "token_state", None) is not None:
                self.update_after_call(outcome.token_state, endpoint=outcome.endpoint, status=outcome.status)
        except LedgerError:
            logger.exception("Reconciling the ledger with a Keepa %s response failed.", outcome.endpoint)

    def update_after_call(
        self,
        tokens_left: Any = None,
        *,
        refill_in: float | None = None,
        refill_rate: float | None = None,
        tokens_consumed: float | None = None,
        timestamp: float | None = None,
        reservation: Reservation | None = None,
        endpoint: str = "",
        status: int | None = None,
        close: bool = True,
        is_sync: bool = False,
    ) -> ReconcileResult:
        """Reconcile the ledger with Keepa's reported balance after a call.

        `tokens_left` is a number, a TokenState, or a response or error with
        `.token_state`; None means the response had no token fields, which
        leaves the balance alone. `reservation` is the reservation the call
        ran under: it is closed (unless close=False) and its kind learns the
        actual cost from tokensConsumed. Other reservations still in flight
        stay subtracted from the new balance.
        """
        reading = _reading(tokens_left, refill_in, refill_rate, tokens_consumed, timestamp)
        learn = reservation is not None and reading is not None and status in (None, 200)

        try:
            if reading is not None and reading.refill_rate is None:
                reading = Reading(reading.tokens_left, reading.refill_in_ms, self.status().refill_rate or 0.0,
                                  reading.timestamp_ms, reading.tokens_consumed)
            result = self.ledger.reconcile(
                reading,
                reservation_id=reservation.id if reservation else "",
                close=close,
                refill_interval_ms=self.refill_interval_ms,
                kind=reservation.kind if learn else "",
                units=reservation.units if reservation else 1,
                tokens_consumed=reading.tokens_consumed if learn else None,
                is_sync=is_sync,
            )
        except LedgerUnavailableError:
            # Keepa has charged the call, so the audit trail keeps its cost even though Redis
            # could not take the reading. The reservation expires from the ledger as spent.
            if reservation is not None and close:
                reservation.closed = True
            self._record(self._reading_kind(status, is_sync), endpoint=endpoint,
                         reservation_id=reservation.id if reservation else "",
                         estimated_cost=reservation.cost if reservation else None,
                         actual_cost=reading.tokens_consumed if reading else None,
                         refill_rate=reading.refill_rate if reading else None,
                         task=reservation.task if reservation else self.task,
                         message="Redis unavailable: the ledger did not take this reading")
            raise
        if reservation is not None and close:
            reservation.closed = True
        self._record_reconcile(result, reading, reservation, endpoint=endpoint, status=status, is_sync=is_sync)
        return result

    def release_reservation(self, reservation: Reservation, *, refund: bool) -> None:
        """Close a reservation without a reading: refund it (never sent) or keep it spent."""
        released, _cost, _balance = self.ledger.release(reservation.id, "refund" if refund else "spent")
        reservation.closed = True
        if released and refund:
            logger.info("Refunded %g tokens of reservation %s: the call was not sent.", reservation.cost,
                        reservation.id)

    # Syncing and status

    def sync_tokens(self, force: bool = False) -> ReconcileResult | None:
        """Read Keepa's token endpoint and set the ledger from it.

        A routine sync runs at most once per KEEPA_SYNC_INTERVAL_SECONDS across
        all workers and returns None when throttled; force=True always runs.
        """
        interval_ms = max(1, int(self.sync_interval_seconds * 1000))
        claimed = self.ledger.claim_sync_slot(interval_ms)
        if not claimed and not force:
            return None

        client = self._keepa_client()
        token = active_reservation.set(_SYNCING)
        try:
            response = client.token()
        except NotEnoughTokensError as error:
            # Keepa may reject even the token endpoint with 429 while the balance
            # is at or below zero. The response still carries the balance to sync to.
            if error.token_state is None:
                raise
            return self.update_after_call(error.token_state, endpoint="token", status=error.status, is_sync=True)
        except Exception as error:
            state = getattr(error, "token_state", None)
            if state is not None:
                self.update_after_call(state, endpoint="token", status=getattr(error, "status", None), is_sync=True)
            raise
        finally:
            active_reservation.reset(token)
        return self.update_after_call(response.token_state, endpoint="token", status=200, is_sync=True)

    def status(self, *, sync_if_empty: bool = False) -> LedgerStatus:
        """Return the ledger as stored in Redis. Never calls Keepa unless sync_if_empty and the ledger is empty."""
        current = parse_status(self.ledger.snapshot(), self)
        if current.balance is None and sync_if_empty:
            self.sync_tokens(force=True)
            current = parse_status(self.ledger.snapshot(), self)
        return current

    # Steps

    def _reserve_limits(self) -> dict[str, Any]:
        return {
            "min_threshold": self.MIN_TOKEN_THRESHOLD,
            "max_deficit": self.MAX_DEFICIT,
            "reservation_ttl_ms": self.reservation_ttl_ms,
            "ticket_grace_ms": self.ticket_grace_ms,
            "turn_wait_ms": TURN_WAIT_MS,
        }

    def _keepa_client(self) -> Any:
        if self._client is None:
            from deals.keepa import KeepaClient

            self._client = KeepaClient(self.api_key, response_hook=self.observe)
        return self._client

    def _drop_ticket(self, reservation_id: str) -> None:
        self.ledger.release(reservation_id, "ticket")

    def _wait(self, seconds: float, reason: str, on_wait: WaitCallback | None, **audit: Any) -> None:
        if on_wait is not None:
            on_wait(seconds, reason)
        if seconds >= 1:
            logger.info("Waiting %.1f s for %s.", seconds, reason)
            self._record(TokenEvent.Kind.RECHARGE_WAIT, message=f"waiting {seconds:.1f} s for {reason}",
                         estimated_cost=audit["estimated_cost"], task=audit["task"], endpoint=audit["kind"])
        time.sleep(seconds)

    def _give_up_waiting(
        self, reservation_id: str, cost: float, seconds: float, reason: str, *, keep_ticket: bool, task: str,
        kind: str,
    ) -> None:
        if not keep_ticket:
            self._drop_ticket(reservation_id)
        self._record(TokenEvent.Kind.RECHARGE_WAIT, message=f"retry in {seconds:.1f} s: {reason}",
                     estimated_cost=cost, task=task, endpoint=kind)
        raise TokenRechargeError(
            f"Waiting for {reason} would take {seconds:.1f} s, more than the {self.max_wait_seconds:g} s allowed; "
            f"retry in {seconds:.1f} s.",
            retry_after=seconds,
            ticket=reservation_id if keep_ticket else None,
        )

    def _record_grant(self, reservation: Reservation) -> None:
        self._record(
            TokenEvent.Kind.GRANT,
            endpoint=reservation.endpoint,
            reservation_id=reservation.id,
            estimated_cost=reservation.cost,
            balance_before=reservation.balance_before,
            balance_after=reservation.balance_after,
            in_flight_total=reservation.in_flight_total,
            task=reservation.task,
            message=f"waited {reservation.waited_seconds:.3f} s" if reservation.waited_seconds else "",
        )

    def _record_reconcile(
        self, result: ReconcileResult, reading: Reading | None, reservation: Reservation | None, *,
        endpoint: str, status: int | None, is_sync: bool,
    ) -> None:
        common = {
            "endpoint": endpoint,
            "reservation_id": reservation.id if reservation else "",
            "estimated_cost": reservation.cost if reservation else None,
            "actual_cost": reading.tokens_consumed if reading else None,
            "balance_before": result.balance_before,
            "balance_after": result.balance_after,
            "refill_rate": reading.refill_rate if reading else result.old_refill_rate,
            "in_flight_total": result.in_flight_total,
            "task": reservation.task if reservation else self.task,
        }
        message = {"applied": "", "stale": "older than the last reading: balance kept",
                   "no_reading": "no token fields: balance kept"}[result.outcome]
        self._record(self._reading_kind(status, is_sync), message=message, **common)

        # A rate change or drift explains the same response; its cost is already on the row above,
        # so the audit trail's actual costs add up to what Keepa charged.
        explanation = {**common, "actual_cost": None}

        if reading and result.old_refill_rate is not None and result.old_refill_rate != reading.refill_rate:
            logger.info("Keepa's refill rate changed from %g to %g tokens per minute.", result.old_refill_rate,
                        reading.refill_rate)
            self._record(TokenEvent.Kind.RATE_CHANGE, **explanation,
                         message=f"refill rate {result.old_refill_rate:g} -> {reading.refill_rate:g} per minute")
        if result.drift is not None and abs(result.drift) > DRIFT_TOLERANCE:
            level = logging.WARNING if abs(result.drift) >= LARGE_DRIFT_TOKENS else logging.DEBUG
            logger.log(level, "The token ledger drifted by %.2f tokens from Keepa's balance; corrected.", result.drift)
            self._record(TokenEvent.Kind.DRIFT_CORRECTED, **explanation,
                         message=f"ledger was {-result.drift:+.2f} tokens off Keepa's balance")

    @staticmethod
    def _reading_kind(status: int | None, is_sync: bool) -> str:
        if is_sync:
            return TokenEvent.Kind.SYNC
        if status == 429:
            return TokenEvent.Kind.NOT_ENOUGH_TOKENS
        return TokenEvent.Kind.RECONCILE

    def _record(self, kind: str, **fields: Any) -> None:
        if self.audit:
            record_event(kind, secrets=(self.api_key,) if self.api_key else (), **fields)


class _Syncing:
    """Marks a running sync, so the client's hook does not reconcile the same response twice."""

    closed = True


_SYNCING: Any = _Syncing()


def _pick(value: float | None, default: float) -> float:
    return float(default if value is None else value)


def _reading(
    source: Any, refill_in: float | None, refill_rate: float | None, tokens_consumed: float | None,
    timestamp: float | None,
) -> Reading | None:
    """Build a Reading from a number, a TokenState, or anything with `.token_state`."""
    if source is not None and hasattr(source, "token_state"):
        source = source.token_state
    if source is None:
        return None
    if isinstance(source, int | float):
        return Reading(float(source), refill_in, refill_rate, timestamp, tokens_consumed)
    return Reading(
        tokens_left=float(source.tokens_left),
        refill_in_ms=float(source.refill_in),
        refill_rate=float(source.refill_rate),
        timestamp_ms=float(source.timestamp) if getattr(source, "timestamp", None) else None,
        tokens_consumed=float(source.tokens_consumed) if source.tokens_consumed is not None else None,
    )
