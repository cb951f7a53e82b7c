"""The Keepa sandbox: token rules, catalogue, paging, faults and control, over real HTTP."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from deals.keepa.keepa_time import datetime_to_keepa_minutes
from deals.sandbox.bucket import TokenBucket
from deals.sandbox.catalogue import DealCatalogue
from deals.sandbox.deal_generator import UNKNOWN_ROOT_CATEGORY
from deals.sandbox.faults import parse_fault_spec
from deals.sandbox.server import SandboxServer, check_loopback

KEY = "sandboxtestkey0123456789"
TOKEN_FIELDS = {"timestamp", "tokensLeft", "refillIn", "refillRate", "tokenFlowReduction", "tokensConsumed",
                "processingTimeInMs"}


def get(server: SandboxServer, endpoint: str, **params) -> requests.Response:
    return requests.get(f"{server.url}/{endpoint}", params={"key": server.api_key, **params}, timeout=5)


def post_deal(server: SandboxServer, selection) -> requests.Response:
    return requests.post(f"{server.url}/deal", params={"key": server.api_key}, json=selection, timeout=5)


@pytest.fixture
def slow_refill_sandbox():
    """A sandbox with a known balance of 100 that does not refill during a test."""
    with SandboxServer(KEY, refill_rate=20, refill_interval_ms=3_600_000, initial_tokens=100, catalogue_size=200) as s:
        yield s


# Token rules, with a fake clock


class FakeClock:
    def __init__(self) -> None:
        self.now_ms = 1_000_000.0

    def __call__(self) -> float:
        return self.now_ms


def test_bucket_refills_in_discrete_steps():
    clock = FakeClock()
    bucket = TokenBucket(20, refill_interval_ms=60_000, initial_tokens=10, clock=clock)

    clock.now_ms += 59_999
    assert bucket.state().tokens_left == 10
    assert bucket.state().refill_in == 1

    clock.now_ms += 1
    assert bucket.state().tokens_left == 30
    assert bucket.state().refill_in == 60_000

    clock.now_ms += 150_000
    assert bucket.state().tokens_left == 70
    assert bucket.state().refill_in == 30_000


def test_bucket_short_interval_adds_fraction():
    clock = FakeClock()
    bucket = TokenBucket(30, refill_interval_ms=100, initial_tokens=0, clock=clock)

    clock.now_ms += 300
    assert bucket.state().tokens_left == pytest.approx(0.15, abs=1e-9)


def test_bucket_caps_at_one_hour_of_refill():
    clock = FakeClock()
    bucket = TokenBucket(20, refill_interval_ms=60_000, initial_tokens=1195, clock=clock)

    clock.now_ms += 5 * 60_000
    assert bucket.state().tokens_left == 1200
    assert bucket.cap == 1200


def test_bucket_default_balance_is_cap():
    assert TokenBucket(5).state().tokens_left == 300


def test_bucket_accepts_while_positive_then_goes_negative():
    clock = FakeClock()
    bucket = TokenBucket(20, initial_tokens=0.5, clock=clock)

    accepted, state = bucket.try_charge(6.5)
    assert accepted is True
    assert state.tokens_left == pytest.approx(-6.0, abs=1e-9)

    accepted, state = bucket.try_charge(1)
    assert accepted is False
    assert state.tokens_left == pytest.approx(-6.0, abs=1e-9)
    assert bucket.lowest_balance == pytest.approx(-6.0, abs=1e-9)


def test_bucket_rejects_at_exactly_zero():
    bucket = TokenBucket(20, initial_tokens=5, clock=FakeClock())

    assert bucket.try_charge(5)[0] is True
    assert bucket.try_charge(5)[0] is False


def test_bucket_deficit_recovers_after_refills():
    clock = FakeClock()
    bucket = TokenBucket(20, initial_tokens=-30, clock=clock)

    clock.now_ms += 60_000
    assert bucket.try_charge(1)[0] is False
    clock.now_ms += 60_000
    assert bucket.try_charge(1) == (True, bucket.state())
    assert bucket.state().tokens_left == pytest.approx(9, abs=1e-9)


# Token rules over HTTP


def test_fractional_costs_with_multiplier(slow_refill_sandbox):
    sandbox = slow_refill_sandbox
    sandbox.set_cost_multiplier(1.3)
    asins = sorted(sandbox.valid_asins())[:3]

    bodies = [post_deal(sandbox, {}).json() for _ in range(3)]
    product = get(sandbox, "product", domain=1, asin=",".join(asins), offers=20).json()

    assert [body["tokensConsumed"] for body in bodies] == pytest.approx([6.5, 6.5, 6.5], abs=1e-9)
    assert bodies[-1]["tokensLeft"] == pytest.approx(80.5, abs=1e-9)
    # (1 + 2 offer pages * 6) per ASIN, times 3 ASINs, times 1.3.
    assert product["tokensConsumed"] == pytest.approx(50.7, abs=1e-9)
    assert product["tokensLeft"] == pytest.approx(29.8, abs=1e-9)
    assert sandbox.stats()["tokens_consumed_total"] == pytest.approx(70.2, abs=1e-9)


def test_negative_balance_then_429(slow_refill_sandbox):
    sandbox = slow_refill_sandbox
    sandbox.set_tokens_left(3)

    accepted = post_deal(sandbox, {})
    rejected = post_deal(sandbox, {})

    assert accepted.status_code == 200
    assert accepted.json()["tokensLeft"] == pytest.approx(-2, abs=1e-9)
    assert rejected.status_code == 429
    assert rejected.json()["tokensLeft"] == pytest.approx(-2, abs=1e-9)
    assert rejected.json()["tokensConsumed"] == 0
    assert rejected.json().keys() >= TOKEN_FIELDS
    stats = sandbox.stats()
    assert stats["answers_429"] == 1
    assert stats["lowest_balance"] == pytest.approx(-2, abs=1e-9)
    assert stats["requests_by_endpoint"] == {"deal": 2}


def test_token_endpoint_answers_429_in_deficit(slow_refill_sandbox):
    slow_refill_sandbox.set_tokens_left(-5)

    response = get(slow_refill_sandbox, "token")

    assert response.status_code == 429
    assert response.json()["tokensLeft"] == -5
    assert slow_refill_sandbox.stats()["answers_429_by_endpoint"] == {"token": 1}


def test_refill_over_http():
    with SandboxServer(KEY, refill_rate=60, refill_interval_ms=100, initial_tokens=0, catalogue_size=10) as sandbox:
        first = get(sandbox, "token").json()
        assert first["tokensLeft"] == 0
        assert 0 <= first["refillIn"] <= 100

        time.sleep((first["refillIn"] + 30) / 1000)
        second = get(sandbox, "token").json()

    refills = round(second["tokensLeft"] / 0.1)
    assert refills >= 1
    assert second["tokensLeft"] == pytest.approx(refills * 0.1, abs=1e-9)


def test_every_answer_carries_token_fields(keepa_sandbox):
    asin = sorted(keepa_sandbox.valid_asins())[0]

    responses = [get(keepa_sandbox, "token"), post_deal(keepa_sandbox, {}), get(keepa_sandbox, "product", asin=asin)]

    for response in responses:
        assert response.status_code == 200
        assert response.json().keys() >= TOKEN_FIELDS


# Key


@pytest.mark.parametrize("params", [{"key": "wrong"}, {}])
def test_wrong_key_is_error_with_zero_tokens(keepa_sandbox, params):
    body = requests.get(f"{keepa_sandbox.url}/token", params=params, timeout=5).json()

    assert body["error"]["type"] == "invalidKey"
    assert body["tokensLeft"] == body["refillIn"] == body["refillRate"] == body["tokensConsumed"] == 0
    assert keepa_sandbox.stats()["tokens_consumed_total"] == 0


# Catalogue and deals


def all_deals(server: SandboxServer, selection: dict | None = None) -> list:
    deals = []
    for page in range(100):
        page_deals = post_deal(server, {**(selection or {}), "page": page}).json()["deals"]["dr"]
        deals += page_deals
        if len(page_deals) < 150:
            return deals
    raise AssertionError("paging did not end")


def test_paging_covers_catalogue_once(keepa_sandbox):
    deals = all_deals(keepa_sandbox)
    asins = [deal["asin"] for deal in deals if isinstance(deal, dict) and isinstance(deal.get("asin"), str)]

    assert len(deals) == 400
    assert len(asins) == len(set(asins))
    assert keepa_sandbox.valid_asins() <= set(asins)
    assert 0 < 400 - len(keepa_sandbox.valid_asins()) < 40


def test_sort_type_1_newest_first_and_inverted(keepa_sandbox):
    valid = keepa_sandbox.valid_asins()
    newest = all_deals(keepa_sandbox, {"sortType": 1})
    oldest = all_deals(keepa_sandbox, {"sortType": -1})

    dates = [deal["creationDate"] for deal in newest if isinstance(deal, dict) and deal.get("asin") in valid]
    assert len(dates) == len(valid)
    assert dates == sorted(dates, reverse=True)
    assert oldest == newest[::-1]


def test_sort_type_3_sales_rank_ascending(keepa_sandbox):
    deals = post_deal(keepa_sandbox, {"sortType": 3}).json()["deals"]["dr"]
    ranks = [deal["current"][3] for deal in deals if isinstance(deal, dict) and len(deal.get("current", [])) > 3
             and isinstance(deal["current"][3], int) and deal["current"][3] > 0]

    assert len(ranks) > 10
    assert ranks == sorted(ranks)


def test_added_deals_come_first(keepa_sandbox):
    added = keepa_sandbox.add_deals(3)

    first_page = post_deal(keepa_sandbox, {"sortType": 1}).json()["deals"]["dr"]

    assert {deal["asin"] for deal in first_page[:3] if isinstance(deal, dict)} == {entry.asin for entry in added if
                                                                                   entry.valid}
    assert {entry.asin for entry in added if entry.valid} <= keepa_sandbox.valid_asins()


def test_selection_as_get_parameter_matches_post(keepa_sandbox):
    selection = {"sortType": 4, "page": 1, "dateRange": 2}

    by_get = get(keepa_sandbox, "deal", selection=json.dumps(selection)).json()["deals"]
    by_post = post_deal(keepa_sandbox, selection).json()["deals"]

    assert by_get == by_post


def test_category_filter(keepa_sandbox):
    deals = all_deals(keepa_sandbox, {"includeCategories": [283155]})

    assert deals
    assert all(deal["rootCat"] == 283155 or 283155 in deal["categories"] for deal in deals)


@pytest.mark.parametrize(
    "raw, message",
    [(b"[1, 2]", "JSON object"), (b"{not json", "not valid JSON"), (b'{"sortType": 9}', "sortType"),
     (b'{"domainId": 7}', "domain")],
)
def test_bad_selection_rejected(keepa_sandbox, raw, message):
    response = requests.post(f"{keepa_sandbox.url}/deal", params={"key": keepa_sandbox.api_key}, data=raw, timeout=5)

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalidParameter"
    assert message in response.json()["error"]["message"]
    assert response.json()["tokensConsumed"] == 0


def test_catalogue_has_every_quirk():
    anchor_ms = 1_790_000_000_000
    catalogue = DealCatalogue(seed=3, anchor_ms=anchor_ms, size=400)
    entries = catalogue.entries(1, anchor_ms)
    deals = [entry.deal for entry in entries if entry.valid]
    titles = " ".join(deal["title"] for deal in deals)

    for fragment in ("<b>", "<script>alert(1)</script>", "&amp;", "é", "日本", "💡"):
        assert fragment in titles
    assert any(-1 in deal["current"] for deal in deals)
    assert any(len(deal["current"]) < 36 for deal in deals)
    assert any(len(deal["avg"]) < 4 for deal in deals)
    assert any(isinstance(deal["image"], str) for deal in deals)
    assert any(isinstance(deal["image"], list) for deal in deals)
    assert any(category > 2**31 for deal in deals for category in deal["categories"])
    assert any(deal["rootCat"] == UNKNOWN_ROOT_CATEGORY for deal in deals)
    assert any(deal["rootCat"] == 0 for deal in deals)
    assert any(deal["lightningEnd"] > 0 for deal in deals)
    assert any(deal["warehouseCondition"] and "<" in deal["warehouseConditionComment"] for deal in deals)
    assert all(deal["lastUpdate"] >= deal["creationDate"] for deal in deals)
    assert max(deal["creationDate"] for deal in deals) == datetime_to_keepa_minutes(
        datetime.fromtimestamp(anchor_ms / 1000, UTC)
    )

    malformed = [entry.deal for entry in entries if not entry.valid]
    assert any(not isinstance(deal, dict) for deal in malformed)
    assert any(isinstance(deal, dict) and "asin" not in deal for deal in malformed)
    assert any(isinstance(deal, dict) and isinstance(deal.get("asin"), int) for deal in malformed)
    assert all(entry.asin not in catalogue.valid_asins(1, anchor_ms) for entry in entries if not entry.valid)


def test_catalogue_is_function_of_seed_and_anchor():
    anchor_ms = 1_790_000_000_000

    def snapshot(seed: int) -> str:
        catalogue = DealCatalogue(seed=seed, anchor_ms=anchor_ms, size=60)
        return json.dumps([entry.deal for entry in catalogue.entries(1, anchor_ms)])

    assert snapshot(1) == snapshot(1)
    assert snapshot(1) != snapshot(2)


def test_new_deals_appear_over_time_reproducibly():
    anchor = datetime.now(UTC) - timedelta(minutes=10)
    options = {"seed": 5, "catalogue_size": 20, "new_deals_per_minute": 2, "anchor": anchor}

    with SandboxServer(KEY, **options) as first:
        first_deals = post_deal(first, {}).json()["deals"]["dr"]
    with SandboxServer(KEY, **options) as restarted:
        restarted_deals = post_deal(restarted, {}).json()["deals"]["dr"]

    assert len(first_deals) == 40
    assert restarted_deals == first_deals


def test_domain_catalogues_differ(keepa_sandbox):
    com = post_deal(keepa_sandbox, {"domainId": 1}).json()["deals"]["dr"]
    japan = post_deal(keepa_sandbox, {"domainId": 5}).json()["deals"]["dr"]

    assert com != japan


def test_product_returns_catalogue_deal(keepa_sandbox):
    asin = sorted(keepa_sandbox.valid_asins())[0]

    body = get(keepa_sandbox, "product", asin=asin, stats=30, history=0).json()

    assert body["products"][0]["asin"] == asin
    assert body["products"][0]["csv"] is None
    assert "stats" in body["products"][0]


# Faults and control


def test_fault_at_request_numbers():
    with SandboxServer(KEY, faults=["500@2,3"], catalogue_size=10) as sandbox:
        statuses = [get(sandbox, "token").status_code for _ in range(4)]

    assert statuses == [200, 500, 500, 200]


def test_fault_rate_is_seeded():
    def statuses(seed: int) -> list[int]:
        with SandboxServer(KEY, seed=seed, faults=["503:token@rate=0.5"], catalogue_size=10) as sandbox:
            return [get(sandbox, "token").status_code for _ in range(20)]

    first = statuses(1)
    assert first == statuses(1)
    assert 0 < first.count(503) < 20


@pytest.mark.parametrize("spec", ["500", "boom@1", "500@0", "timeout@rate=2", "html:nowhere@1", "500@x"])
def test_bad_fault_spec_named(spec):
    with pytest.raises(ValueError, match="not valid") as caught:
        parse_fault_spec(spec)

    assert repr(spec) in str(caught.value) or "not valid" in str(caught.value)


def test_fault_spec_forms():
    assert parse_fault_spec("500@3,7").requests == {3, 7}
    assert parse_fault_spec("timeout@rate=0.05").rate == 0.05
    assert parse_fault_spec("html:deal@next=2").remaining == 2
    assert parse_fault_spec("html:deal@next=2").endpoint == "deal"


def test_control_over_http(keepa_sandbox):
    control = f"{keepa_sandbox.url}/_sandbox/control"
    state_url = f"{keepa_sandbox.url}/_sandbox/state"

    forbidden = requests.get(state_url, timeout=5)
    changed = requests.post(
        control, params={"key": keepa_sandbox.api_key}, timeout=5,
        json={"faults": ["429@next=1"], "cost_multiplier": 2.5, "tokens_left": 50, "add_deals": 2},
    )
    forced = get(keepa_sandbox, "token")
    charged = post_deal(keepa_sandbox, {})
    state = requests.get(state_url, params={"key": keepa_sandbox.api_key, "include": "asins"}, timeout=5).json()
    unknown = requests.post(control, params={"key": keepa_sandbox.api_key}, json={"explode": 1}, timeout=5)

    assert forbidden.status_code == 403
    assert changed.status_code == 200
    assert forced.status_code == 429
    assert charged.json()["tokensConsumed"] == 12.5
    assert state["answers_429"] == 1
    assert state["deals"] == 402
    assert set(state["valid_asins"]) == keepa_sandbox.valid_asins()
    assert unknown.status_code == 400
    assert "explode" in unknown.json()["error"]["message"]


def test_method_not_allowed(keepa_sandbox):
    response = requests.post(f"{keepa_sandbox.url}/token", params={"key": keepa_sandbox.api_key}, timeout=5)

    assert response.status_code == 405


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "::1", "example.com"])  # noqa: S104 (must be rejected)
def test_non_loopback_host_rejected(host):
    with pytest.raises(ValueError, match="loopback"):
        check_loopback(host)
