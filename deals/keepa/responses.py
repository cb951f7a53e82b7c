"""Parsed Keepa responses and the token state that every response carries."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deals.keepa.errors import KeepaError


@dataclass(frozen=True)
class TokenState:
    """The token fields of one Keepa response.

    tokens_left may be fractional and negative (a deficit). refill_in and timestamp are in
    milliseconds, refill_rate is in tokens per minute.
    """

    tokens_left: float
    refill_in: int
    refill_rate: float
    tokens_consumed: float
    token_flow_reduction: float
    timestamp: int

    @classmethod
    def from_body(cls, body: Any) -> TokenState | None:
        """Return the token state of a decoded body, or None when it lacks tokensLeft, refillIn or refillRate.

        tokensConsumed and tokenFlowReduction default to 0 and timestamp to the local clock when absent,
        because they describe the call rather than the balance.
        """
        if not isinstance(body, dict):
            return None
        required = [body.get("tokensLeft"), body.get("refillIn"), body.get("refillRate")]
        if not all(_is_number(value) for value in required):
            return None

        timestamp = body.get("timestamp")
        return cls(
            tokens_left=float(body["tokensLeft"]),
            refill_in=int(body["refillIn"]),
            refill_rate=float(body["refillRate"]),
            tokens_consumed=_number_or_zero(body.get("tokensConsumed")),
            token_flow_reduction=_number_or_zero(body.get("tokenFlowReduction")),
            timestamp=int(timestamp) if _is_number(timestamp) else int(time.time() * 1000),
        )


@dataclass(frozen=True)
class CallOutcome:
    """Outcome of one attempt of a Keepa call, as given to the client's response hook.

    attempt counts from 1. token_state is None when the response carried no token fields
    (a bare 5xx, an HTML page, a timeout, an invalid key).
    """

    endpoint: str
    status: int | None
    token_state: TokenState | None
    error: KeepaError | None
    attempt: int


@dataclass(frozen=True)
class KeepaResponse:
    endpoint: str
    token_state: TokenState
    processing_time_ms: int | None = field(default=None, kw_only=True)

    @property
    def tokens_left(self) -> float:
        return self.token_state.tokens_left

    @property
    def refill_in(self) -> int:
        return self.token_state.refill_in

    @property
    def refill_rate(self) -> float:
        return self.token_state.refill_rate

    @property
    def tokens_consumed(self) -> float:
        return self.token_state.tokens_consumed

    @property
    def token_flow_reduction(self) -> float:
        return self.token_state.token_flow_reduction

    @property
    def timestamp(self) -> int:
        return self.token_state.timestamp


@dataclass(frozen=True)
class TokenResponse(KeepaResponse):
    pass


@dataclass(frozen=True)
class DealResponse(KeepaResponse):
    """One page of deals. `deals` contains the raw `dr` objects, unvalidated: some may be malformed."""

    deals: list[Any]
    category_ids: list[Any]
    category_names: list[Any]
    category_count: list[Any]


@dataclass(frozen=True)
class ProductResponse(KeepaResponse):
    products: list[Any]


def parse_token_response(endpoint: str, body: dict, token_state: TokenState) -> TokenResponse:
    return TokenResponse(endpoint, token_state, processing_time_ms=_processing_time(body))


def parse_deal_response(endpoint: str, body: dict, token_state: TokenState) -> DealResponse | None:
    """Return the page of deals, or None when the body has no `deals` object with a `dr` list."""
    payload = body.get("deals")
    if not isinstance(payload, dict) or not isinstance(payload.get("dr"), list):
        return None
    return DealResponse(
        endpoint,
        token_state,
        deals=payload["dr"],
        category_ids=_list_or_empty(payload.get("categoryIds")),
        category_names=_list_or_empty(payload.get("categoryNames")),
        category_count=_list_or_empty(payload.get("categoryCount")),
        processing_time_ms=_processing_time(body),
    )


def parse_product_response(endpoint: str, body: dict, token_state: TokenState) -> ProductResponse | None:
    """Return the products, or None when the body has no `products` list."""
    products = body.get("products")
    if not isinstance(products, list):
        return None
    return ProductResponse(endpoint, token_state, products=products, processing_time_ms=_processing_time(body))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number_or_zero(value: Any) -> float:
    return float(value) if _is_number(value) else 0.0


def _list_or_empty(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _processing_time(body: dict) -> int | None:
    value = body.get("processingTimeInMs")
    return int(value) if _is_number(value) else None
