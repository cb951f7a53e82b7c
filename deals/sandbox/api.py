"""The sandbox's request handling and state, independent of the HTTP server around it.

Order of checks for an API request: route, method, key, injected faults,
latency, parameters, token balance. A request is numbered (from 1) once its
route is known, so fault request numbers count every API request.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import Counter
from typing import Any

from deals.keepa.domains import DOMAINS
from deals.sandbox import answers, costs
from deals.sandbox.answers import Answer
from deals.sandbox.bucket import TokenBucket
from deals.sandbox.catalogue import DealCatalogue, page_of, query_deals
from deals.sandbox.faults import Fault, parse_fault_spec
from deals.sandbox.products import product_object

logger = logging.getLogger(__name__)

API_METHODS = {"token": {"GET"}, "deal": {"GET", "POST"}, "product": {"GET", "POST"}}
CONTROL_PATHS = {"/_sandbox/state": "GET", "/_sandbox/control": "POST"}
ASIN_PATTERN = re.compile(r"[A-Za-z0-9]{10}")
SORT_TYPES = {1, 2, 3, 4, -1, -2, -3, -4}
MAX_ASINS = 100


class InvalidParameter(ValueError):
    pass


class SandboxApi:
    def __init__(
        self,
        api_key: str,
        *,
        refill_rate: float,
        refill_interval_ms: int,
        initial_tokens: float | None,
        seed: int,
        catalogue_size: int,
        new_deals_per_minute: float,
        cost_multiplier: float,
        latency_ms: int,
        faults: list[Fault],
        anchor_ms: int,
        stop_event: threading.Event,
    ) -> None:
        if cost_multiplier < 0:
            raise ValueError(f"Cost multiplier {cost_multiplier} is negative: use 0 or more.")
        self.api_key = api_key
        self.seed = seed
        self.bucket = TokenBucket(refill_rate, refill_interval_ms=refill_interval_ms, initial_tokens=initial_tokens)
        self.catalogue = DealCatalogue(
            seed=seed, anchor_ms=anchor_ms, size=catalogue_size, new_deals_per_minute=new_deals_per_minute
        )
        self.cost_multiplier = float(cost_multiplier)
        self.latency_ms = latency_ms
        self.faults = list(faults)
        self._stop_event = stop_event
        self._lock = threading.Lock()
        self.request_count = 0
        self.answers_429 = 0
        self.answers_429_by_endpoint: Counter[str] = Counter()
        self.faults_injected = 0
        # Tokens charged for answers the client never got whole (timeout and truncated faults);
        # no client can report them, so an audit trail falls short of tokens_consumed_total by this much.
        self.tokens_charged_unanswered = 0.0
        self.requests_by_endpoint: Counter[str] = Counter()

    # Control

    def add_fault(self, fault: Fault) -> None:
        with self._lock:
            self.faults.append(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def set_cost_multiplier(self, multiplier: float) -> None:
        if multiplier < 0:
            raise ValueError(f"Cost multiplier {multiplier} is negative: use 0 or more.")
        with self._lock:
            self.cost_multiplier = float(multiplier)

    def stats(self) -> dict[str, Any]:
        state = self.bucket.state()
        with self._lock:
            return {
                "tokens_left": state.tokens_left,
                "refill_in": state.refill_in,
                "refill_rate": state.refill_rate,
                "refill_interval_ms": self.bucket.refill_interval_ms,
                "cost_multiplier": self.cost_multiplier,
                "tokens_consumed_total": self.bucket.total_consumed,
                "lowest_balance": self.bucket.lowest_balance,
                "requests": self.request_count,
                "answers_429": self.answers_429,
                "answers_429_by_endpoint": dict(self.answers_429_by_endpoint),
                "faults_injected": self.faults_injected,
                "tokens_charged_unanswered": self.tokens_charged_unanswered,
                "requests_by_endpoint": dict(self.requests_by_endpoint),
                "active_faults": len(self.faults),
            }

    # Requests

    def handle(self, method: str, path: str, params: dict[str, str], body: bytes) -> Answer:
        started = time.monotonic()
        if path in CONTROL_PATHS:
            return self._handle_control(method, path, params, body)

        endpoint = path.strip("/")
        if endpoint not in API_METHODS:
            return answers.error_answer(404, f"No endpoint at {path}: use /token, /deal or /product.")
        request_number = self._count_request(endpoint)
        if method not in API_METHODS[endpoint]:
            return answers.error_answer(405, f"{method} is not allowed on /{endpoint}.")
        if params.get("key") != self.api_key:
            return answers.invalid_key_answer(started)

        fault = self._firing_fault(request_number, endpoint)
        if fault is not None:
            return self._fault_answer(fault, endpoint, params, body, started)

        if self.latency_ms:
            self._stop_event.wait(self.latency_ms / 1000)
        return self._serve(endpoint, params, body, started)

    def _count_request(self, endpoint: str) -> int:
        with self._lock:
            self.request_count += 1
            self.requests_by_endpoint[endpoint] += 1
            return self.request_count

    def _firing_fault(self, request_number: int, endpoint: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.fires(request_number, endpoint):
                    self.faults_injected += 1
                    return fault
        return None

    def _serve(self, endpoint: str, params: dict[str, str], body: bytes, started: float) -> Answer:
        try:
            cost, build_payload = self._plan(endpoint, params, body)
        except InvalidParameter as exc:
            return answers.error_answer(400, str(exc), self._tokens(0, started))

        cost *= self.cost_multiplier
        accepted, state = self.bucket.try_charge(cost)
        if not accepted:
            with self._lock:
                self.answers_429 += 1
                self.answers_429_by_endpoint[endpoint] += 1
            tokens = answers.token_fields(state, 0, started)
            return answers.error_answer(429, "Not enough tokens.", tokens, error_type="notEnoughToken")

        payload = build_payload()
        return answers.json_answer(200, {**answers.token_fields(state, cost, started), **payload})

    def _tokens(self, consumed: float, started: float) -> dict[str, Any]:
        return answers.token_fields(self.bucket.state(), consumed, started)

    def _fault_answer(self, fault: Fault, endpoint: str, params: dict, body: bytes, started: float) -> Answer:
        logger.info("Sandbox injects fault %s into a %s request.", fault.kind, endpoint)
        status = fault.status
        if status == 429:
            with self._lock:
                self.answers_429 += 1
                self.answers_429_by_endpoint[endpoint] += 1
            return answers.error_answer(429, "Not enough tokens.", self._tokens(0, started), "notEnoughToken")
        if status is not None and status >= 500:
            return answers.bare_server_error(status)
        if status is not None:
            return answers.error_answer(status, f"Injected HTTP {status}.", self._tokens(0, started))
        return self._named_fault_answer(fault, endpoint, params, body, started)

    def _named_fault_answer(self, fault: Fault, endpoint: str, params: dict, body: bytes, started: float) -> Answer:
        if fault.kind == "html":
            return answers.html_answer()
        if fault.kind == "error200":
            return answers.error_answer(200, "Injected invalid parameter.", self._tokens(0, started))
        if fault.kind == "nopayload":
            return answers.json_answer(200, self._tokens(0, started))
        if fault.kind == "disconnect":
            return Answer(0, drop=True)
        if fault.kind == "timeout":
            # Keepa did the work and charged for it, so only the response is lost.
            self._count_unanswered(self._serve(endpoint, params, body, started))
            return Answer(0, drop=True, hang_seconds=fault.timeout_seconds)
        return answers.truncate(self._count_unanswered(self._serve(endpoint, params, body, started)))

    def _count_unanswered(self, answer: Answer) -> Answer:
        """Add the tokens charged by `answer` to tokens_charged_unanswered, because its client will not read them."""
        try:
            charged = float(json.loads(answer.body).get("tokensConsumed") or 0)
        except (ValueError, AttributeError):
            charged = 0.0
        with self._lock:
            self.tokens_charged_unanswered += charged
        return answer

    # Endpoints: each returns its cost before the multiplier and a function building the payload.

    def _plan(self, endpoint: str, params: dict[str, str], body: bytes) -> tuple[float, Any]:
        if endpoint == "token":
            return 0, dict
        if endpoint == "deal":
            return self._plan_deal(params, body)
        return self._plan_product(params)

    def _plan_deal(self, params: dict[str, str], body: bytes) -> tuple[float, Any]:
        selection = parse_selection(params, body)
        domain_id = parse_domain(selection.get("domainId", params.get("domain", 1)))
        page = selection.get("page", 0)
        if isinstance(page, bool) or not isinstance(page, int) or page < 0:
            raise InvalidParameter(f"page {page!r} is not valid: pages count from 0.")
        sort_type = selection.get("sortType", 1)
        if sort_type not in SORT_TYPES:
            raise InvalidParameter(f"sortType {sort_type!r} is not valid: use 1 to 4 or -1 to -4.")

        def build() -> dict[str, Any]:
            entries = self.catalogue.entries(domain_id, answers.wall_clock_ms())
            matching = query_deals(entries, {**selection, "sortType": sort_type})
            return {"deals": deals_payload([entry.deal for entry in page_of(matching, page)])}

        return costs.DEAL_PAGE_COST, build

    def _plan_product(self, params: dict[str, str]) -> tuple[float, Any]:
        domain_id = parse_domain(params.get("domain", 1))
        asins = [asin for asin in params.get("asin", "").split(",") if asin]
        if not asins:
            raise InvalidParameter("asin is missing: pass up to 100 comma-separated ASINs.")
        if len(asins) > MAX_ASINS:
            raise InvalidParameter(f"{len(asins)} ASINs given: at most {MAX_ASINS} per request.")
        for asin in asins:
            if not ASIN_PATTERN.fullmatch(asin):
                raise InvalidParameter(f"asin {asin!r} is not valid: an ASIN is 10 letters or digits.")

        offers = parse_optional_int(params, "offers")
        options = {
            "history": params.get("history", "1") != "0",
            "stats": "stats" in params,
            "offers": offers,
            "buybox": params.get("buybox") == "1",
        }
        rating = params.get("rating") == "1"
        cost = costs.product_cost(len(asins), offers=offers, buybox=options["buybox"], rating=rating)

        def build() -> dict[str, Any]:
            now = answers.wall_clock_ms()
            products = [
                product_object(asin, self.catalogue.find(asin, domain_id, now), domain_id, **options)
                for asin in asins
            ]
            return {"products": products}

        return cost, build

    # Control over HTTP

    def _handle_control(self, method: str, path: str, params: dict[str, str], body: bytes) -> Answer:
        if method != CONTROL_PATHS[path]:
            return answers.error_answer(405, f"{method} is not allowed on {path}: use {CONTROL_PATHS[path]}.")
        if params.get("key") != self.api_key:
            return answers.error_answer(403, "Invalid or missing sandbox key.", error_type="invalidKey")
        if path == "/_sandbox/state":
            return answers.json_answer(200, self._state_payload(params))
        try:
            self.apply_control(json.loads(body or b"{}"))
        except (ValueError, TypeError) as exc:
            return answers.error_answer(400, str(exc))
        return answers.json_answer(200, self._state_payload(params))

    def _state_payload(self, params: dict[str, str]) -> dict[str, Any]:
        domain_id = parse_domain(params.get("domain", 1))
        entries = self.catalogue.entries(domain_id, answers.wall_clock_ms())
        state = {**self.stats(), "deals": len(entries), "valid_deals": sum(entry.valid for entry in entries)}
        if params.get("include") == "asins":
            state["valid_asins"] = sorted(entry.asin for entry in entries if entry.valid)
        return state

    def apply_control(self, command: Any) -> None:
        """Apply a control document with any of the fields add_deals, domain, refill_rate, cost_multiplier,
        tokens_left, faults (a list of specs) and clear_faults."""
        if not isinstance(command, dict):
            raise ValueError("The control body must be a JSON object.")
        known = {"add_deals", "domain", "refill_rate", "cost_multiplier", "tokens_left", "faults", "clear_faults"}
        unknown = set(command) - known
        if unknown:
            raise ValueError(f"Unknown control fields {sorted(unknown)}: use {sorted(known)}.")

        if command.get("clear_faults"):
            self.clear_faults()
        for spec in command.get("faults", []):
            self.add_fault(parse_fault_spec(spec, seed=self.seed))
        if "refill_rate" in command:
            self.bucket.set_refill_rate(float(command["refill_rate"]))
        if "cost_multiplier" in command:
            self.set_cost_multiplier(float(command["cost_multiplier"]))
        if "tokens_left" in command:
            self.bucket.set_balance(float(command["tokens_left"]))
        if command.get("add_deals"):
            domain_id = parse_domain(command.get("domain", 1))
            self.catalogue.add_deals(int(command["add_deals"]), domain_id, answers.wall_clock_ms())


def parse_selection(params: dict[str, str], body: bytes) -> dict[str, Any]:
    raw = body if body.strip() else params.get("selection", "").encode()
    if not raw.strip():
        raise InvalidParameter("selection is missing: send the deal query JSON as the POST body or `selection`.")
    try:
        selection = json.loads(raw)
    except ValueError:
        raise InvalidParameter("selection is not valid JSON.") from None
    if not isinstance(selection, dict):
        raise InvalidParameter(f"selection must be a JSON object, not {type(selection).__name__}.")
    return selection


def parse_domain(value: Any) -> int:
    try:
        domain_id = int(value)
    except (TypeError, ValueError):
        domain_id = None
    if domain_id not in DOMAINS:
        raise InvalidParameter(f"domain {value!r} is not valid: use one of {sorted(DOMAINS)}.")
    return domain_id


def parse_optional_int(params: dict[str, str], name: str) -> int | None:
    if name not in params:
        return None
    try:
        return int(params[name])
    except ValueError:
        raise InvalidParameter(f"{name} {params[name]!r} is not a whole number.") from None


def deals_payload(deal_objects: list[Any]) -> dict[str, Any]:
    counts: Counter[int] = Counter()
    for deal in deal_objects:
        if isinstance(deal, dict) and isinstance(deal.get("rootCat"), int):
            counts[deal["rootCat"]] += 1
    category_ids = sorted(counts)
    return {
        "dr": deal_objects,
        "categoryIds": category_ids,
        "categoryNames": [f"Category {category_id}" for category_id in category_ids],
        "categoryCount": [counts[category_id] for category_id in category_ids],
    }
