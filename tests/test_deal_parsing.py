"""parse_deal: raw Keepa deal objects to Deal field values, and the reasons invalid ones are skipped."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from deals.keepa import encode_image_name, keepa_minutes_to_datetime
from deals.parsing import DealContext, InvalidDeal, display_title, parse_deal

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
CREATED = 8_375_000  # Keepa minutes, before NOW
CONTEXT = DealContext(domain=1, date_range=1, price_type=0, query_id=None, now=NOW)


def raw_deal(**fields) -> dict:
    deal = {
        "asin": "B000TEST01",
        "title": "Plain title",
        "rootCat": 172282,
        "categories": [3000000011, 541966],
        "image": "61k3Lay7JUL.jpg",
        "current": [1999, 2499, -1, 1234, 4999],
        "avg": [[2100, 2600, -1], [2500, 2700, -1, 1500]],
        "delta": [[-101, -101, 0], [-501, -201, 0, -266]],
        "deltaPercent": [[-5, -4, 0], [-20, -7, 0, -18]],
        "creationDate": CREATED,
        "lastUpdate": CREATED + 30,
        "lightningEnd": 0,
        "warehouseCondition": 0,
        "warehouseConditionComment": None,
    }
    deal.update(fields)
    return deal


def skip_reason(raw) -> str:
    with pytest.raises(InvalidDeal) as raised:
        parse_deal(raw, CONTEXT)
    return raised.value.reason


def test_prices_in_cents():
    values = parse_deal(raw_deal(), CONTEXT)

    assert values["current_amazon"] == 1999
    assert values["current_new"] == 2499
    assert values["current_sales_rank"] == 1234
    assert values["current_list_price"] == 4999


def test_no_offer_is_null():
    values = parse_deal(raw_deal(), CONTEXT)

    assert values["current_used"] is None


def test_short_current_array_is_unknown():
    values = parse_deal(raw_deal(current=[1999]), CONTEXT)

    assert values["current_new"] is None
    assert values["current_buy_box"] is None
    assert values["current_rating"] is None


def test_averages_and_drop_for_date_range():
    values = parse_deal(raw_deal(), CONTEXT)

    assert values["averages"] == {"AMAZON": 2500, "NEW": 2700, "SALES": 1500}
    assert values["deltas"]["AMAZON"] == -501
    assert values["drop_amount"] == 501
    assert values["drop_percent"] == 20
    assert values["drop_price_type"] == 0


def test_missing_date_range_row_is_empty():
    context = DealContext(domain=1, date_range=3, price_type=0, query_id=None, now=NOW)

    values = parse_deal(raw_deal(), context)

    assert values["averages"] == {}
    assert values["drop_percent"] is None


def test_keepa_times_are_aware():
    values = parse_deal(raw_deal(lightningEnd=CREATED + 120), CONTEXT)

    assert values["keepa_created_at"] == keepa_minutes_to_datetime(CREATED)
    assert values["keepa_updated_at"] == keepa_minutes_to_datetime(CREATED + 30)
    assert values["lightning_end"] == keepa_minutes_to_datetime(CREATED + 120)
    assert values["keepa_created_at"].tzinfo is not None


def test_keepa_epoch_conversion():
    assert keepa_minutes_to_datetime(0) == datetime(2011, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("root", [0, 2**63 - 1, None])
def test_unknown_root_category(root):
    assert parse_deal(raw_deal(rootCat=root), CONTEXT)["root_category"] is None


def test_large_category_ids_kept():
    values = parse_deal(raw_deal(rootCat=16225007011, categories=[2**31, 0, 2**63 - 1]), CONTEXT)

    assert values["root_category"] == 16225007011
    assert values["category_ids"] == [2**31]


def test_image_from_character_codes():
    values = parse_deal(raw_deal(image=encode_image_name("61k3Lay7JUL.jpg")), CONTEXT)

    assert values["image_url"] == "https://m.media-amazon.com/images/I/61k3Lay7JUL.jpg"


def test_image_from_text():
    values = parse_deal(raw_deal(image="41abcL.jpg"), CONTEXT)

    assert values["image_url"] == "https://m.media-amazon.com/images/I/41abcL.jpg"


def test_overlong_image_name_left_blank():
    values = parse_deal(raw_deal(image="x" * 400 + ".jpg"), CONTEXT)

    assert values["image_url"] == ""
    assert values["raw"]["image"].startswith("xxxx")


def test_missing_image_is_blank():
    assert parse_deal(raw_deal(image=None), CONTEXT)["image_url"] == ""


@pytest.mark.parametrize(
    ("raw_title", "expected"),
    [
        ("<b>Bold</b> Kettle", "Bold Kettle"),
        ("Tom &amp; Jerry &#8211; DVD", "Tom & Jerry – DVD"),
        ("Lamp <script>x</script> 5 W", "Lamp x 5 W"),
        ("日本製  包丁", "日本製 包丁"),
        ("&lt;2.9 inch&gt;", "<2.9 inch>"),
    ],
)
def test_display_title(raw_title, expected):
    assert display_title(raw_title) == expected


def test_raw_title_kept():
    values = parse_deal(raw_deal(title="<i>Slim</i> Vacuum"), CONTEXT)

    assert values["title_raw"] == "<i>Slim</i> Vacuum"
    assert values["title"] == "Slim Vacuum"


def test_warehouse_deal():
    values = parse_deal(raw_deal(warehouseCondition=3, warehouseConditionComment="Box opened"), CONTEXT)

    assert values["warehouse_condition"] == 3
    assert values["warehouse_condition_comment"] == "Box opened"


def test_lowercase_asin_normalized():
    assert parse_deal(raw_deal(asin="b000test01"), CONTEXT)["asin"] == "B000TEST01"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("deal B000TEST01", "not_an_object"),
        (None, "not_an_object"),
        (["B000TEST01"], "not_an_object"),
        (raw_deal(asin="B0-TEST"), "invalid_asin"),
        (raw_deal(asin=12345), "invalid_asin"),
        ({k: v for k, v in raw_deal().items() if k != "asin"}, "invalid_asin"),
        (raw_deal(current="1999,2999"), "invalid_value"),
        (raw_deal(current=[1999, 10**15]), "value_out_of_range"),
        (raw_deal(current=[1999, 2.5]), "invalid_value"),
        (raw_deal(creationDate="yesterday"), "invalid_value"),
        (raw_deal(creationDate=-5), "value_out_of_range"),
        (raw_deal(creationDate=0), "missing_creation_date"),
        (raw_deal(creationDate=CREATED + 10**6), "future_creation_date"),
        (raw_deal(title={"text": "x"}), "invalid_value"),
        (raw_deal(rootCat=-3), "value_out_of_range"),
        (raw_deal(rootCat=2**64), "value_out_of_range"),
        (raw_deal(image=[1, 2, 3]), "invalid_image"),
        (raw_deal(warehouseCondition=9), "value_out_of_range"),
        (raw_deal(current=[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 99]), "value_out_of_range"),
    ],
)
def test_invalid_deal_reason(raw, reason):
    assert skip_reason(raw) == reason


def test_invalid_deal_names_asin():
    with pytest.raises(InvalidDeal) as raised:
        parse_deal(raw_deal(current=[10**15]), CONTEXT)

    assert raised.value.asin == "B000TEST01"
    assert "current[0]" in raised.value.detail
