"""Faults the sandbox injects into its responses, and their command-line spec.

A spec reads KIND[:ENDPOINT]@WHEN, for example `500@3,7` (requests 3 and 7
return HTTP 500), `timeout@rate=0.05` (5 % of requests, seeded), `html:deal@next=2`
(the next two deal requests). KIND is an HTTP status from 400 to 599 or one of
FAULT_NAMES. Request numbers count the API requests (token, deal, product) from 1.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

FAULT_NAMES = {
    "timeout": "sleep past the client's read timeout, then close the connection without an answer",
    "truncated": "HTTP 200 with the JSON body cut in half",
    "html": "HTTP 200 with an HTML error page",
    "error200": "HTTP 200 with an error object and no payload",
    "nopayload": "HTTP 200 with the token fields but without the endpoint's payload",
    "disconnect": "close the connection without an answer",
}
ENDPOINTS = ("token", "deal", "product")

SPEC_PATTERN = re.compile(r"(?P<kind>[a-z0-9]+)(?::(?P<endpoint>[a-z]+))?@(?P<when>.+)")


@dataclass
class Fault:
    kind: str
    requests: frozenset[int] = frozenset()
    rate: float = 0.0
    remaining: int | None = None
    endpoint: str | None = None
    timeout_seconds: float = 65.0
    rng: random.Random = field(default_factory=lambda: random.Random(0), repr=False)

    def __post_init__(self) -> None:
        validate_kind(self.kind)
        if self.endpoint is not None and self.endpoint not in ENDPOINTS:
            raise ValueError(f"Fault endpoint {self.endpoint!r} is not valid: use one of {', '.join(ENDPOINTS)}.")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"Fault rate {self.rate} is not valid: use a fraction from 0 to 1.")

    @property
    def status(self) -> int | None:
        return int(self.kind) if self.kind.isdigit() else None

    def fires(self, request_number: int, endpoint: str) -> bool:
        """Return whether this fault applies to the request, consuming one use of a `next=N` fault."""
        if self.endpoint is not None and endpoint != self.endpoint:
            return False
        if self.remaining is not None:
            if self.remaining <= 0:
                return False
            self.remaining -= 1
            return True
        if request_number in self.requests:
            return True
        return self.rate > 0 and self.rng.random() < self.rate


def validate_kind(kind: str) -> None:
    if kind.isdigit() and 400 <= int(kind) <= 599:
        return
    if kind not in FAULT_NAMES:
        raise ValueError(
            f"Fault kind {kind!r} is not valid: use an HTTP status from 400 to 599 or one of "
            f"{', '.join(FAULT_NAMES)}."
        )


def parse_fault_spec(spec: str, *, seed: int = 0, timeout_seconds: float = 65.0) -> Fault:
    """Parse KIND[:ENDPOINT]@WHEN, where WHEN is `3,7`, `rate=0.05` or `next=2`. Raises ValueError naming the spec."""
    match = SPEC_PATTERN.fullmatch(spec.strip())
    if match is None:
        raise ValueError(
            f"Fault spec {spec!r} is not valid: write KIND[:ENDPOINT]@WHEN, e.g. 500@3,7, "
            "timeout@rate=0.05 or html:deal@next=2."
        )

    kind, endpoint, when = match["kind"], match["endpoint"], match["when"]
    try:
        if when.startswith("rate="):
            return Fault(kind, rate=float(when[5:]), endpoint=endpoint, timeout_seconds=timeout_seconds,
                         rng=random.Random(f"{seed}:{spec}"))
        if when.startswith("next="):
            return Fault(kind, remaining=int(when[5:]), endpoint=endpoint, timeout_seconds=timeout_seconds)
        numbers = frozenset(int(number) for number in when.split(","))
        if any(number < 1 for number in numbers):
            raise ValueError("request numbers count from 1")
        return Fault(kind, requests=numbers, endpoint=endpoint, timeout_seconds=timeout_seconds)
    except ValueError as exc:
        raise ValueError(f"Fault spec {spec!r} is not valid: {exc}") from None
