"""KeepaClient against the sandbox over real HTTP on 127.0.0.1."""

from __future__ import annotations

import logging
import math
import random
import socket
import traceback

import pytest
import requests

import dealsite
from deals.keepa import (
    CallOutcome,
    InvalidKeyError,
    InvalidRequestError,
    InvalidResponseError,
    KeepaClient,
    KeepaConnectionError,
    KeepaError,
    KeepaTimeoutError,
    NotEnoughTokensError,
    NotFoundError,
    PaymentRequiredError,
    ServerError,
    TokenState,
    compute_retry_after,
)
from deals.keepa.session import shared_session

SANDBOX_REFILL_INTERVAL_MS = 200


def make_client(sandbox, **overrides) -> KeepaClient:
    api_key = overrides.pop("api_key", sandbox.api_key)
    options = {
        "base_url": sandbox.url,
        "connect_timeout": 1.0,
        "read_timeout": 2.0,
        "max_retries": 2,
        "refill_interval_ms": SANDBOX_REFILL_INTERVAL_MS,
        "sleep": lambda seconds: None,
        **overrides,
    }
    return KeepaClient(api_key, **options)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# Successful calls


def test_token_returns_token_state(keepa_client, keepa_sandbox):
    response = keepa_client.token()

    assert isinstance(response.token_state, TokenState)
    assert response.tokens_left == keepa_sandbox.stats()["tokens_left"]
    assert response.refill_rate == 20.0
    assert response.tokens_consumed == 0.0
    assert 0 <= response.refill_in <= SANDBOX_REFILL_INTERVAL_MS
    assert response.timestamp > 1_700_000_000_000


def test_deal_pages_hold_150_then_the_rest(keepa_client):
    sizes = [len(keepa_client.deal({}, page=page).deals) for page in range(4)]

    assert sizes == [150, 150, 100, 0]


def test_deal_caller_page_overrides_selection(keepa_client):
    from_selection = keepa_client.deal({"page": 2, "sortType": 3}).deals
    first_page = keepa_client.deal({}, page=0, sort_type=1).deals

    assert from_selection == first_page


def test_deal_returns_categories_and_cost(keepa_client):
    response = keepa_client.deal({"dateRange": 1})

    assert response.tokens_consumed == 5
    assert len(response.category_ids) == len(response.category_names) == len(response.category_count)
    assert sum(response.category_count) > 0


def test_deal_domain_changes_catalogue(keepa_client):
    com = keepa_client.deal({}).deals
    germany = keepa_client.deal({}, domain=3).deals
    from_selection = keepa_client.deal({"domainId": 3}).deals

    assert com != germany
    assert germany == from_selection


def test_product_costs_one_token_per_asin(keepa_client, keepa_sandbox):
    asins = sorted(keepa_sandbox.valid_asins())[:3]

    response = keepa_client.product(asins)

    assert [product["asin"] for product in response.products] == asins
    assert response.tokens_consumed == 3


def test_product_offers_cost_six_per_page(keepa_client, keepa_sandbox):
    asins = sorted(keepa_sandbox.valid_asins())[:2]

    response = keepa_client.product(asins, offers=20, buybox=True, rating=True, stats=90)

    # Per ASIN: 1 + 2 offer pages * 6 + 2 for buybox + 1 for rating.
    assert response.tokens_consumed == 2 * 16
    assert "stats" in response.products[0]


# Validation before any request


@pytest.mark.parametrize(
    "asins, named",
    [(["B000000001", "B00SHORT"], "B00SHORT"), (["B0000-0001"], "B0000-0001"), ([""], "''")],
)
def test_product_rejects_invalid_asin(keepa_client, keepa_sandbox, asins, named):
    with pytest.raises(InvalidRequestError) as caught:
        keepa_client.product(asins)

    assert named in str(caught.value)
    assert keepa_sandbox.stats()["requests"] == 0


def test_product_rejects_more_than_100_asins(keepa_client):
    with pytest.raises(InvalidRequestError, match="at most 100"):
        keepa_client.product([f"B{index:09d}" for index in range(101)])


def test_deal_rejects_selection_not_dict(keepa_client):
    with pytest.raises(InvalidRequestError, match="JSON object"):
        keepa_client.deal([1, 2])  # type: ignore[arg-type]


# Error classes


def test_invalid_key_raises_invalid_key_error(keepa_sandbox):
    outcomes: list[CallOutcome] = []
    client = make_client(keepa_sandbox, api_key="wrongkey0123456789", response_hook=outcomes.append)

    with pytest.raises(InvalidKeyError) as caught:
        client.token()

    assert caught.value.status == 200
    assert caught.value.token_state is None
    assert caught.value.retryable is False
    assert outcomes[0].token_state is None
    assert len(outcomes) == 1


@pytest.mark.parametrize(
    "fault, error_class, status",
    [
        ("400", InvalidRequestError, 400),
        ("405", InvalidRequestError, 405),
        ("402", PaymentRequiredError, 402),
        ("404", NotFoundError, 404),
        ("error200", InvalidRequestError, 200),
        ("nopayload", InvalidRequestError, 200),
    ],
)
def test_status_maps_to_error_class(keepa_client, keepa_sandbox, fault, error_class, status):
    keepa_sandbox.inject_fault(fault, next=1)

    with pytest.raises(error_class) as caught:
        keepa_client.deal({})

    assert type(caught.value) is error_class
    assert caught.value.status == status
    assert caught.value.endpoint == "deal"
    assert caught.value.token_state is not None
    assert keepa_sandbox.stats()["requests"] == 1


def test_unknown_path_raises_not_found(keepa_sandbox):
    client = make_client(keepa_sandbox, base_url=keepa_sandbox.url + "/nowhere")

    with pytest.raises(NotFoundError, match="HTTP 404"):
        client.token()


@pytest.mark.parametrize("fault", ["truncated", "html"])
def test_body_not_json_raises_invalid_response(keepa_client, keepa_sandbox, fault):
    keepa_sandbox.inject_fault(fault, next=1)

    with pytest.raises(InvalidResponseError) as caught:
        keepa_client.deal({})

    assert caught.value.status == 200
    assert keepa_sandbox.stats()["requests"] == 1


def test_truncated_deal_is_still_charged(keepa_client, keepa_sandbox):
    keepa_sandbox.set_refill_rate(0)
    before = keepa_sandbox.stats()["tokens_left"]
    keepa_sandbox.inject_fault("truncated", next=1)

    with pytest.raises(InvalidResponseError):
        keepa_client.deal({})

    assert keepa_sandbox.stats()["tokens_left"] == pytest.approx(before - 5, abs=1e-9)


# 429


def test_not_enough_tokens_is_not_retried(keepa_sandbox):
    sleeps: list[float] = []
    outcomes: list[CallOutcome] = []
    client = make_client(keepa_sandbox, sleep=sleeps.append, response_hook=outcomes.append)
    keepa_sandbox.set_refill_rate(0.6)  # 0.002 tokens per 200 ms refill, so the balance stays put
    keepa_sandbox.set_tokens_left(-13)

    with pytest.raises(NotEnoughTokensError) as caught:
        client.deal({})

    error = caught.value
    assert error.status == 429
    assert error.token_state.tokens_left == pytest.approx(-13, abs=0.01)
    assert error.token_state.tokens_consumed == 0
    assert keepa_sandbox.stats()["requests"] == 1
    assert sleeps == []
    assert [outcome.status for outcome in outcomes] == [429]
    assert outcomes[0].token_state == error.token_state


def test_retry_after_counts_refills_to_positive(keepa_sandbox):
    client = make_client(keepa_sandbox)
    keepa_sandbox.set_refill_rate(0.6)
    keepa_sandbox.set_tokens_left(-0.005)

    with pytest.raises(NotEnoughTokensError) as caught:
        client.token()
        client.deal({})

    state = caught.value.token_state
    # 0.002 tokens per refill, the first after refill_in: a deficit of 0.005 takes 3 refills, of 0.003 two.
    refills = math.floor(-state.tokens_left / (0.6 * SANDBOX_REFILL_INTERVAL_MS / 60_000)) + 1
    assert refills >= 1
    expected = state.refill_in / 1000 + (refills - 1) * SANDBOX_REFILL_INTERVAL_MS / 1000
    assert caught.value.retry_after == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "tokens_left, expected",
    [(0, 38.205), (-13, 38.205), (-20, 98.205), (-40.5, 158.205), (5, 38.205)],
)
def test_compute_retry_after_keepa_minute_refills(tokens_left, expected):
    state = TokenState(tokens_left, 38205, 20.0, 0.0, 0.0, 0)

    assert compute_retry_after(state, 60_000) == pytest.approx(expected)


def test_compute_retry_after_without_state():
    assert compute_retry_after(None, 60_000) == 60.0


# Retries


def test_server_errors_retried_then_succeed(keepa_sandbox):
    sleeps: list[float] = []
    outcomes: list[CallOutcome] = []
    client = make_client(keepa_sandbox, sleep=sleeps.append, response_hook=outcomes.append)
    keepa_sandbox.inject_fault(500, next=2)

    response = client.token()

    assert response.tokens_left > 0
    assert len(sleeps) == 2
    assert [outcome.status for outcome in outcomes] == [500, 500, 200]
    assert [outcome.attempt for outcome in outcomes] == [1, 2, 3]
    assert [outcome.token_state is None for outcome in outcomes] == [True, True, False]
    assert all(isinstance(outcome.error, ServerError) for outcome in outcomes[:2])
    assert outcomes[2].error is None


def test_server_errors_exhaust_retries(keepa_sandbox):
    sleeps: list[float] = []
    client = make_client(keepa_sandbox, sleep=sleeps.append, max_retries=3)
    keepa_sandbox.inject_fault(503, next=10)

    with pytest.raises(ServerError) as caught:
        client.token()

    assert caught.value.status == 503
    assert caught.value.token_state is None
    assert caught.value.retryable is True
    assert len(sleeps) == 3
    assert keepa_sandbox.stats()["requests"] == 4


def test_backoff_is_full_jitter_under_cap(keepa_sandbox):
    sleeps: list[float] = []
    client = make_client(
        keepa_sandbox, sleep=sleeps.append, max_retries=5, retry_backoff=0.5, retry_backoff_max=1.5,
        rng=random.Random(7),
    )
    keepa_sandbox.inject_fault(500, next=10)

    with pytest.raises(ServerError):
        client.token()

    ceilings = [0.5, 1.0, 1.5, 1.5, 1.5]
    assert len(sleeps) == 5
    for delay, ceiling in zip(sleeps, ceilings, strict=True):
        assert 0 <= delay <= ceiling
    assert len(set(sleeps)) == 5


def test_retry_settings_come_from_settings(keepa_sandbox, settings):
    settings.KEEPA_MAX_RETRIES = 1
    sleeps: list[float] = []
    client = KeepaClient(keepa_sandbox.api_key, base_url=keepa_sandbox.url, sleep=sleeps.append)
    keepa_sandbox.inject_fault(500, next=5)

    with pytest.raises(ServerError):
        client.token()

    assert len(sleeps) == 1


def test_timeout_retried_and_reported(keepa_sandbox):
    outcomes: list[CallOutcome] = []
    client = make_client(keepa_sandbox, read_timeout=0.5, response_hook=outcomes.append)
    keepa_sandbox.inject_fault("timeout", next=1, timeout_seconds=1.0)
    keepa_sandbox.set_refill_rate(0)  # no refill between the two charges
    before = keepa_sandbox.stats()["tokens_left"]

    response = client.deal({})

    assert len(response.deals) == 150
    assert [outcome.status for outcome in outcomes] == [None, 200]
    assert isinstance(outcomes[0].error, KeepaTimeoutError)
    assert outcomes[0].token_state is None
    # The timed-out request was charged as well: Keepa did the work.
    assert response.tokens_left == pytest.approx(before - 10, abs=1e-9)


def test_timeout_exhausts_retries(keepa_sandbox):
    client = make_client(keepa_sandbox, read_timeout=0.2, max_retries=1)
    keepa_sandbox.inject_fault("timeout", next=2, timeout_seconds=0.6)

    with pytest.raises(KeepaTimeoutError) as caught:
        client.token()

    assert caught.value.status is None
    assert caught.value.token_state is None


def test_disconnect_raises_connection_error(keepa_sandbox):
    outcomes: list[CallOutcome] = []
    client = make_client(keepa_sandbox, response_hook=outcomes.append)
    keepa_sandbox.inject_fault("disconnect", next=3)

    with pytest.raises(KeepaConnectionError):
        client.token()

    assert len(outcomes) == 3
    assert all(isinstance(outcome.error, KeepaConnectionError) for outcome in outcomes)


def test_closed_port_raises_connection_error():
    sleeps: list[float] = []
    client = KeepaClient(
        "closedportkey12345", base_url=f"http://127.0.0.1:{closed_port()}", max_retries=1, sleep=sleeps.append
    )

    with pytest.raises(KeepaConnectionError, match="failed to connect"):
        client.token()

    assert len(sleeps) == 1


def test_broken_hook_does_not_break_call(keepa_sandbox):
    def broken_hook(outcome: CallOutcome) -> None:
        raise RuntimeError("ledger down")

    client = make_client(keepa_sandbox, response_hook=broken_hook)

    assert client.token().tokens_left > 0


# The key never leaks


class TextHandler(logging.Handler):
    """Stores each record's text as emitted on the logger itself.

    The settings attach the key-masking filter to the root console handler, which rewrites records
    in place; a handler on the emitting logger runs before it, so it sees what the code itself emits.
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(record.getMessage())
        if record.exc_info:
            self.texts.append("".join(traceback.format_exception(*record.exc_info)))


@pytest.fixture
def emitted_log_texts(caplog):
    handler = TextHandler()
    names = ["deals", "urllib3.connectionpool", "urllib3.util.retry", "urllib3.connection"]
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="urllib3")  # the settings keep urllib3 at WARNING
    for name in names:
        logging.getLogger(name).addHandler(handler)
    yield handler.texts
    for name in names:
        logging.getLogger(name).removeHandler(handler)


def test_key_never_in_logs_or_errors(keepa_sandbox, caplog, emitted_log_texts):
    secret = keepa_sandbox.api_key
    wrong_secret = "wrongsecretkey987654321"
    errors: list[KeepaError] = []

    client = make_client(keepa_sandbox)
    impatient_client = make_client(keepa_sandbox, read_timeout=0.2)
    client.token()
    # Each fault covers every attempt of its call, so a slow machine cannot turn one into a success.
    phases = [
        ("500", {}, client.token),
        ("timeout", {"timeout_seconds": 0.6}, impatient_client.token),
        ("truncated", {}, lambda: client.deal({})),
    ]
    for kind, options, call in phases:
        keepa_sandbox.clear_faults()
        keepa_sandbox.inject_fault(kind, next=3, **options)
        with pytest.raises(KeepaError) as caught:
            call()
        errors.append(caught.value)
    with pytest.raises(KeepaError) as caught:
        make_client(keepa_sandbox, api_key=wrong_secret).token()
    errors.append(caught.value)
    with pytest.raises(KeepaError) as caught:
        KeepaClient(secret, base_url=f"http://127.0.0.1:{closed_port()}", max_retries=1, sleep=lambda s: None).token()
    errors.append(caught.value)

    urllib3_urls = [record for record in caplog.records if record.name.startswith("urllib3") and "key=" in record.msg]
    assert urllib3_urls, "urllib3 should log request URLs at DEBUG level"
    texts = list(emitted_log_texts)
    texts += [record.getMessage() for record in caplog.records]
    texts += [record.exc_text or "" for record in caplog.records]
    for error in errors:
        texts += [str(error), repr(error), "".join(traceback.format_exception(error))]
    texts.append(repr(client))
    for text in texts:
        assert secret not in text
        assert wrong_secret not in text
    assert any(secret[:4] + "…" in text for text in texts)


# Transport


def test_session_shared_and_named():
    first = KeepaClient("abcdefghijklmnop", base_url="http://127.0.0.1:1")
    second = KeepaClient("abcdefghijklmnop", base_url="http://127.0.0.1:1")

    assert first.session is second.session is shared_session()
    assert first.session.headers["User-Agent"].startswith(f"dealsite/{dealsite.__version__}")
    assert first.session.headers["Accept-Encoding"] == "gzip"


def test_sandbox_gzips_when_asked(keepa_sandbox):
    response = requests.get(
        f"{keepa_sandbox.url}/token", params={"key": keepa_sandbox.api_key}, headers={"Accept-Encoding": "gzip"},
        timeout=2,
    )

    assert response.headers["Content-Encoding"] == "gzip"
    assert response.json()["tokensConsumed"] == 0
