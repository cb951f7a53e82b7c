"""Keepa time, domains, price types, images and money formatting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from deals.keepa import (
    DOMAINS,
    NO_OFFER,
    DateRange,
    PriceType,
    datetime_to_keepa_minutes,
    decode_image_name,
    encode_image_name,
    format_price,
    get_domain,
    image_url,
    keepa_minutes_to_datetime,
    keepa_minutes_to_unix_ms,
    price_at,
    price_type_name,
    range_value_at,
    unix_ms_to_keepa_minutes,
    value_at,
)

# Keepa time


def test_keepa_epoch_is_minute_zero():
    assert keepa_minutes_to_datetime(0) == datetime(2011, 1, 1, tzinfo=UTC)


def test_keepa_minutes_match_unix_formula():
    keepa_minutes = 7_654_321

    assert keepa_minutes_to_datetime(keepa_minutes).timestamp() == (keepa_minutes + 21_564_000) * 60


@pytest.mark.parametrize("keepa_minutes", [0, 1, 4_000_000, 8_376_236, 12_345_678])
def test_keepa_minutes_round_trip(keepa_minutes):
    moment = keepa_minutes_to_datetime(keepa_minutes)

    assert moment.tzinfo is not None
    assert datetime_to_keepa_minutes(moment) == keepa_minutes
    assert unix_ms_to_keepa_minutes(keepa_minutes_to_unix_ms(keepa_minutes)) == keepa_minutes


def test_keepa_minutes_from_other_timezone():
    berlin_summer = timezone(timedelta(hours=2))
    moment = datetime(2026, 7, 1, 14, 30, 59, tzinfo=berlin_summer)

    assert datetime_to_keepa_minutes(moment) == datetime_to_keepa_minutes(datetime(2026, 7, 1, 12, 30, tzinfo=UTC))


def test_keepa_minutes_reject_naive_datetime():
    with pytest.raises(ValueError, match="naive"):
        datetime_to_keepa_minutes(datetime(2026, 1, 1))


# Domains


def test_domains_have_host_and_currency():
    assert sorted(DOMAINS) == [1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12]
    assert get_domain(2).host == "www.amazon.co.uk"
    assert get_domain(5).currency == "JPY"
    assert get_domain(12).host == "www.amazon.com.br"


@pytest.mark.parametrize("domain_id", [7, 0, 13, "de", None])
def test_unknown_domain_raises(domain_id):
    with pytest.raises(ValueError, match=repr(domain_id)):
        get_domain(domain_id)


# Price types


def test_price_type_indexes():
    assert PriceType.AMAZON == 0
    assert PriceType.SALES == 3
    assert PriceType.RATING == 16
    assert PriceType.COUNT_NEW_FBM == 35
    assert len(PriceType) == 36
    assert price_type_name(9) == "WAREHOUSE"
    assert price_type_name(36) is None


def test_value_at_short_array_is_unknown():
    current = [1999, -1, 1500]

    assert value_at(current, PriceType.AMAZON) == 1999
    assert value_at(current, PriceType.NEW) == NO_OFFER
    assert value_at(current, PriceType.WAREHOUSE) is None
    assert value_at(None, PriceType.AMAZON) is None
    assert value_at("1999", PriceType.AMAZON) is None
    assert value_at([True], PriceType.AMAZON) is None


def test_price_at_treats_no_offer_as_none():
    assert price_at([1999, -1], PriceType.AMAZON) == 1999
    assert price_at([1999, -1], PriceType.NEW) is None
    assert price_at([1999], PriceType.USED) is None


def test_range_value_at_two_dimensions():
    delta = [[-100, -200], [-300]]

    assert range_value_at(delta, DateRange.DAY, PriceType.NEW) == -200
    assert range_value_at(delta, DateRange.WEEK, PriceType.NEW) is None
    assert range_value_at(delta, DateRange.NINETY_DAYS, PriceType.AMAZON) is None


# Images


def test_image_character_codes_decode():
    codes = [54, 49, 107, 51, 76, 97, 121, 55, 74, 85, 76, 46, 106, 112, 103]

    assert decode_image_name(codes) == "61k3Lay7JUL.jpg"
    assert image_url(codes) == "https://m.media-amazon.com/images/I/61k3Lay7JUL.jpg"


def test_image_string_and_round_trip():
    assert image_url("61k3Lay7JUL.jpg") == "https://m.media-amazon.com/images/I/61k3Lay7JUL.jpg"
    assert decode_image_name(encode_image_name("41abc.png")) == "41abc.png"


@pytest.mark.parametrize("empty", [None, "", []])
def test_image_missing_is_none(empty):
    assert image_url(empty) is None


@pytest.mark.parametrize("bad", [[54, "a"], [54, 10], {"name": "x"}, 12])
def test_image_invalid_raises(bad):
    with pytest.raises(ValueError, match="image field"):
        decode_image_name(bad)


# Money


@pytest.mark.parametrize(
    "amount, domain_id, expected",
    [
        (123456, 1, "$1,234.56"),
        (5, 1, "$0.05"),
        (1999, 2, "£19.99"),
        (123456, 3, "1.234,56 €"),
        (123456, 4, "1\u202f234,56 €"),
        (123456, 5, "￥123,456"),
        (98, 5, "￥98"),
        (123456789, 10, "₹12,34,567.89"),
        (100000, 12, "R$ 1.000,00"),
        (0, 1, "$0.00"),
    ],
)
def test_format_price(amount, domain_id, expected):
    assert format_price(amount, domain_id) == expected


@pytest.mark.parametrize("amount", [None, -1, -5])
def test_format_price_no_offer(amount):
    assert format_price(amount, 1) is None
