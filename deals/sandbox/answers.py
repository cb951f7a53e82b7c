"""The sandbox's responses: the token fields, error bodies and the responses of injected faults."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from deals.sandbox.bucket import BucketState

HTML_ERROR_PAGE = (
    "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    "<body><h1>Bad Gateway</h1><p>The upstream server did not answer.</p></body></html>"
)

# The usual error type names Keepa puts in an `error` object, by HTTP status.
ERROR_TYPES = {400: "invalidParameter", 402: "paymentRequired", 404: "notFound", 405: "methodNotAllowed"}


@dataclass
class Answer:
    status: int
    body: bytes = b""
    content_type: str = "application/json;charset=UTF-8"
    # For faults: seconds to hold the connection before closing it, and whether to close it without a response.
    hang_seconds: float = 0.0
    drop: bool = False


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


def token_fields(state: BucketState, consumed: float, started: float) -> dict[str, Any]:
    return {
        "timestamp": state.timestamp or wall_clock_ms(),
        "tokensLeft": state.tokens_left,
        "refillIn": state.refill_in,
        "refillRate": state.refill_rate,
        "tokenFlowReduction": 0.0,
        "tokensConsumed": consumed,
        "processingTimeInMs": int((time.monotonic() - started) * 1000),
    }


def json_answer(status: int, payload: dict[str, Any]) -> Answer:
    return Answer(status, json.dumps(payload, ensure_ascii=False).encode())


def error_answer(
    status: int, message: str, tokens: dict[str, Any] | None = None, error_type: str | None = None
) -> Answer:
    error = {"type": error_type or ERROR_TYPES.get(status, "error"), "message": message}
    return json_answer(status, {**(tokens or {}), "error": error})


def invalid_key_answer(started: float) -> Answer:
    """Return Keepa's response to an unknown key: HTTP 200, an error object and every token field zero."""
    zero_state = BucketState(tokens_left=0, refill_in=0, refill_rate=0)
    tokens = token_fields(zero_state, 0, started)
    return error_answer(200, "Invalid or missing API key.", tokens, error_type="invalidKey")


def bare_server_error(status: int) -> Answer:
    return Answer(status, f"{status} Server Error".encode(), content_type="text/plain")


def html_answer() -> Answer:
    return Answer(200, HTML_ERROR_PAGE.encode(), content_type="text/html")


def truncate(answer: Answer) -> Answer:
    return Answer(answer.status, answer.body[: max(1, len(answer.body) // 2)], answer.content_type)
