"""The Keepa API client: every call dealsite makes to Keepa goes through KeepaClient."""

from __future__ import annotations

import json
import logging
import math
import random
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from deals.keepa import errors
from deals.keepa.domains import get_domain
from deals.keepa.responses import (
    CallOutcome,
    DealResponse,
    ProductResponse,
    TokenResponse,
    TokenState,
    parse_deal_response,
    parse_product_response,
    parse_token_response,
)
from deals.keepa.session import mask_urllib3_logs, shared_session
from dealsite.masking import mask_key, mask_secrets

logger = logging.getLogger(__name__)

MAX_ASINS_PER_CALL = 100
ASIN_PATTERN = re.compile(r"[A-Za-z0-9]{10}")
SORT_TYPES = {1, 2, 3, 4, -1, -2, -3, -4}

# The client repeats only failures after which a second attempt is likely to succeed and
# cannot make things worse: a 429 is left to the token ledger.
RETRIED_ERRORS = (errors.KeepaTimeoutError, errors.KeepaConnectionError, errors.ServerError)

ResponseHook = Callable[[CallOutcome], None]
Parser = Callable[[str, dict, TokenState], Any]


class KeepaClient:
    """A Keepa API client. Arguments left as None come from the KEEPA_* settings.

    max_retries counts repeats after the first attempt. Between attempts the client sleeps a
    random time between 0 and min(retry_backoff_max, retry_backoff * 2 ** (attempt - 1)) seconds.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        domain: int | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        max_retries: int | None = None,
        retry_backoff: float | None = None,
        retry_backoff_max: float | None = None,
        refill_interval_ms: int | None = None,
        response_hook: ResponseHook | None = None,
        sleep: Callable[[float], Any] = time.sleep,
        rng: random.Random | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self._api_key = api_key or settings.KEEPA_API_KEY
        if not self._api_key:
            raise ImproperlyConfigured("KEEPA_API_KEY is not set: set it to your Keepa API key.")

        self.base_url = (base_url or settings.KEEPA_API_URL).rstrip("/")
        self.domain = get_domain(domain if domain is not None else settings.KEEPA_DOMAIN).id
        self.timeout = (
            _or_setting(connect_timeout, "KEEPA_CONNECT_TIMEOUT"),
            _or_setting(read_timeout, "KEEPA_READ_TIMEOUT"),
        )
        self.max_retries = _or_setting(max_retries, "KEEPA_MAX_RETRIES")
        self.retry_backoff = _or_setting(retry_backoff, "KEEPA_RETRY_BACKOFF")
        self.retry_backoff_max = _or_setting(retry_backoff_max, "KEEPA_RETRY_BACKOFF_MAX")
        self.refill_interval_ms = _or_setting(refill_interval_ms, "KEEPA_REFILL_INTERVAL_MS")
        self.response_hook = response_hook
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._session = session
        mask_urllib3_logs()

    def __repr__(self) -> str:
        return f"KeepaClient(base_url={self.base_url!r}, key={mask_key(self._api_key)!r}, domain={self.domain})"

    @property
    def session(self) -> requests.Session:
        return self._session or shared_session()

    # Endpoints

    def token(self) -> TokenResponse:
        """Return the token state. The call costs no tokens."""
        return self._call("token", "GET", {}, None, parse_token_response)

    def deal(self, selection: dict, *, page: int = 0, sort_type: int = 1, domain: int | None = None) -> DealResponse:
        """Return one page of at most 150 deals for a deal query `selection` (Keepa's JSON filter).

        page and sort_type replace the selection's own; domain, when given, replaces its domainId.
        """
        if not isinstance(selection, dict):
            raise errors.InvalidRequestError(
                f"The deal selection must be a JSON object (dict), not {type(selection).__name__}: "
                "copy the query JSON from Keepa's Deals page.",
                endpoint="deal",
            )
        if isinstance(page, bool) or not isinstance(page, int) or page < 0:
            raise errors.InvalidRequestError(f"Deal page {page!r} is not valid: pages count from 0.", endpoint="deal")
        if sort_type not in SORT_TYPES:
            raise errors.InvalidRequestError(
                f"Deal sortType {sort_type!r} is not valid: use 1 to 4, or -1 to -4 to invert.", endpoint="deal"
            )

        domain_id = self._domain_for(domain, selection.get("domainId"))
        body = {**selection, "page": page, "sortType": sort_type, "domainId": domain_id}
        return self._call("deal", "POST", {}, body, parse_deal_response)

    def product(
        self,
        asins: str | Iterable[str],
        *,
        stats: int | str | None = None,
        history: bool = True,
        offers: int | None = None,
        days: int | None = None,
        update: int | None = None,
        buybox: bool = False,
        rating: bool = False,
        domain: int | None = None,
    ) -> ProductResponse:
        """Return the products for up to 100 ASINs. offers, buybox and rating raise the token cost."""
        asin_list = validate_asins(asins)
        params: dict[str, Any] = {
            "domain": self._domain_for(domain, None),
            "asin": ",".join(asin_list),
            "history": 1 if history else 0,
        }
        optional = {"stats": stats, "offers": offers, "days": days, "update": update}
        params.update({name: value for name, value in optional.items() if value is not None})
        if buybox:
            params["buybox"] = 1
        if rating:
            params["rating"] = 1
        return self._call("product", "GET", params, None, parse_product_response)

    # One call with its retries

    def _call(self, endpoint: str, method: str, params: dict, body: dict | None, parse: Parser) -> Any:
        for attempt in range(1, self.max_retries + 2):
            result, outcome = self._attempt(endpoint, method, params, body, parse, attempt=attempt)
            self._notify(outcome)

            error = outcome.error
            if error is None:
                return result
            if not isinstance(error, RETRIED_ERRORS) or attempt > self.max_retries:
                # Raised outside any except block, so no requests exception (with the key in
                # its URL) rides along as __context__.
                raise error

            delay = self._backoff_delay(attempt)
            logger.warning(
                "Keepa %s attempt %d of %d failed (%s); retrying in %.2f s.",
                endpoint, attempt, self.max_retries + 1, error, delay,
            )
            self._sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _attempt(
        self, endpoint: str, method: str, params: dict, body: dict | None, parse: Parser, *, attempt: int
    ) -> tuple[Any, CallOutcome]:
        response, error = self._send(endpoint, method, params, body)
        if response is None:
            return None, CallOutcome(endpoint, None, None, error, attempt)

        token_state = None
        result = None
        try:
            result = self._interpret(endpoint, response, parse)
            token_state = result.token_state
        except errors.KeepaError as caught:
            error = caught
            token_state = caught.token_state
        return result, CallOutcome(endpoint, response.status_code, token_state, error, attempt)

    def _send(
        self, endpoint: str, method: str, params: dict, body: dict | None
    ) -> tuple[requests.Response | None, errors.KeepaError | None]:
        url = f"{self.base_url}/{endpoint}"
        query = {"key": self._api_key, **params}
        if endpoint != "product" and "domain" not in params:
            query["domain"] = self.domain
        try:
            response = self.session.request(method, url, params=query, json=body, timeout=self.timeout)
        except requests.Timeout as exc:
            return None, errors.KeepaTimeoutError(
                f"Keepa {endpoint} timed out ({self._describe(exc)}); Keepa may still have charged tokens. "
                "Try again later or raise KEEPA_READ_TIMEOUT.",
                endpoint=endpoint,
            )
        except requests.RequestException as exc:
            return None, errors.KeepaConnectionError(
                f"Keepa {endpoint} failed to connect or the connection broke ({self._describe(exc)}). "
                f"Check that {self.base_url} is reachable and try again.",
                endpoint=endpoint,
            )
        return response, None

    def _describe(self, exc: Exception) -> str:
        return mask_secrets(f"{type(exc).__name__}: {exc}", (self._api_key,))

    # Turning an HTTP response into a result or an error

    def _interpret(self, endpoint: str, response: requests.Response, parse: Parser) -> Any:
        status = response.status_code
        body = _decode_json(response)
        token_state = TokenState.from_body(body)
        context = {"endpoint": endpoint, "status": status, "token_state": token_state}

        if status != 200:
            raise self._status_error(endpoint, status, body, context)
        if body is None:
            raise errors.InvalidResponseError(
                f"Keepa {endpoint} returned HTTP 200 with a body that is not JSON "
                f"({_body_kind(response)}); try again later.",
                **context,
            )
        if not isinstance(body, dict):
            raise errors.InvalidResponseError(
                f"Keepa {endpoint} returned HTTP 200 with JSON that is not an object; try again later.", **context
            )
        if "error" in body:
            raise self._error_object(endpoint, body["error"], context)
        if token_state is None:
            raise errors.InvalidResponseError(
                f"Keepa {endpoint} returned HTTP 200 without the token fields (tokensLeft, refillIn, refillRate).",
                **context,
            )

        result = parse(endpoint, body, token_state)
        if result is None:
            raise errors.InvalidRequestError(
                f"Keepa {endpoint} returned HTTP 200 without the expected {_payload_name(endpoint)!r} payload; "
                "check the request parameters.",
                **context,
            )
        return result

    def _status_error(self, endpoint: str, status: int, body: Any, context: dict) -> errors.KeepaError:
        token_state = context["token_state"]
        detail = self._keepa_message(body)
        if status == 429:
            retry_after = compute_retry_after(token_state, self.refill_interval_ms)
            return errors.NotEnoughTokensError(
                f"Keepa {endpoint} returned HTTP 429: not enough tokens "
                f"(tokens left {token_state.tokens_left if token_state else 'unknown'}); "
                f"wait {retry_after:.1f} s before the next call.",
                retry_after=retry_after,
                **context,
            )
        if status >= 500:
            return errors.ServerError(
                f"Keepa {endpoint} returned HTTP {status}{detail}; Keepa is failing, try again later.", **context
            )
        if 400 <= status < 500:
            return self._client_error(endpoint, status, detail, context)
        return errors.InvalidResponseError(f"Keepa {endpoint} returned unexpected HTTP {status}.", **context)

    def _client_error(self, endpoint: str, status: int, detail: str, context: dict) -> errors.KeepaError:
        if status == 402:
            return errors.PaymentRequiredError(
                f"Keepa {endpoint} returned HTTP 402{detail}: the account has no active plan; renew it at keepa.com.",
                **context,
            )
        if status == 404:
            return errors.NotFoundError(
                f"Keepa {endpoint} returned HTTP 404{detail}: check KEEPA_API_URL ({self.base_url}).", **context
            )
        if status in (401, 403):
            return errors.InvalidKeyError(
                f"Keepa {endpoint} returned HTTP {status}{detail}: check KEEPA_API_KEY "
                f"({mask_key(self._api_key)}).",
                **context,
            )
        return errors.InvalidRequestError(
            f"Keepa {endpoint} rejected the request with HTTP {status}{detail}; check the parameters.", **context
        )

    def _error_object(self, endpoint: str, error: Any, context: dict) -> errors.KeepaError:
        error_type = str(error.get("type", "")) if isinstance(error, dict) else ""
        detail = self._keepa_message({"error": error})
        if "key" in error_type.lower():
            # Keepa sends all token fields as zero for an unknown key. Those zeros describe no
            # account, so they must not reach the ledger as a balance.
            return errors.InvalidKeyError(
                f"Keepa {endpoint} rejected the API key {mask_key(self._api_key)} with HTTP 200{detail}: "
                "check KEEPA_API_KEY.",
                **{**context, "token_state": None},
            )
        return errors.InvalidRequestError(
            f"Keepa {endpoint} returned HTTP 200 with an error{detail}; check the parameters.", **context
        )

    def _keepa_message(self, body: Any) -> str:
        if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
            return ""
        error = body["error"]
        parts = [str(error.get(name)) for name in ("type", "message") if error.get(name)]
        return f" ({mask_secrets(': '.join(parts), (self._api_key,))[:300]})" if parts else ""

    # Helpers

    def _domain_for(self, explicit: int | None, from_selection: Any) -> int:
        if explicit is not None:
            return get_domain(explicit).id
        if from_selection is not None:
            return get_domain(from_selection).id
        return self.domain

    def _backoff_delay(self, attempt: int) -> float:
        ceiling = min(self.retry_backoff_max, self.retry_backoff * 2 ** (attempt - 1))
        return self._rng.uniform(0, ceiling)

    def _notify(self, outcome: CallOutcome) -> None:
        if self.response_hook is None:
            return
        try:
            self.response_hook(outcome)
        except Exception:
            # The Keepa call itself succeeded or failed on its own; a broken hook must not change that.
            logger.exception("The Keepa response hook failed for %s attempt %d.", outcome.endpoint, outcome.attempt)


def validate_asins(asins: str | Iterable[str]) -> list[str]:
    """Return the ASINs upper-cased, or raise InvalidRequestError naming the first invalid one."""
    asin_list = [asins] if isinstance(asins, str) else list(asins)
    if not asin_list:
        raise errors.InvalidRequestError("No ASIN given: pass between 1 and 100 ASINs.", endpoint="product")
    if len(asin_list) > MAX_ASINS_PER_CALL:
        raise errors.InvalidRequestError(
            f"{len(asin_list)} ASINs given: Keepa takes at most {MAX_ASINS_PER_CALL} per product call; split them.",
            endpoint="product",
        )
    for asin in asin_list:
        if not isinstance(asin, str) or not ASIN_PATTERN.fullmatch(asin):
            raise errors.InvalidRequestError(
                f"ASIN {asin!r} is not valid: an ASIN is 10 letters or digits, such as B00EXAMPLE.",
                endpoint="product",
            )
    return [asin.upper() for asin in asin_list]


def compute_retry_after(token_state: TokenState | None, refill_interval_ms: int) -> float:
    """Return the seconds until the balance is positive again, from refillIn, refillRate and tokens left.

    Keepa adds refill_rate * interval / 1 minute tokens at each refill, the first one refill_in ms from now.
    """
    interval_seconds = refill_interval_ms / 1000
    if token_state is None or token_state.refill_rate <= 0:
        return interval_seconds

    first_refill = max(token_state.refill_in, 0) / 1000
    per_refill = token_state.refill_rate * refill_interval_ms / 60_000
    deficit = max(-token_state.tokens_left, 0.0)
    # The balance must end strictly above zero, so a deficit of exactly n refills needs n + 1.
    refills_needed = math.floor(deficit / per_refill) + 1
    return first_refill + (refills_needed - 1) * interval_seconds


def _or_setting(value: Any, setting_name: str) -> Any:
    return value if value is not None else getattr(settings, setting_name)


def _decode_json(response: requests.Response) -> Any:
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None


def _body_kind(response: requests.Response) -> str:
    content_type = response.headers.get("Content-Type", "unknown content type")
    size = len(response.content)
    if "html" in content_type.lower() or response.content.lstrip()[:1] == b"<":
        return f"an HTML page, {size} bytes"
    return f"{content_type}, {size} bytes, possibly truncated"


def _payload_name(endpoint: str) -> str:
    return {"deal": "deals", "product": "products"}.get(endpoint, endpoint)
