"""Keepa price types: the indexes into a deal's `current`, `avg`, `delta` and similar arrays.

Keepa sends arrays shorter than the full list when the trailing types are
unknown, so every read goes through `value_at`, which returns None for a
missing index instead of raising IndexError.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

NO_OFFER = -1


class PriceType(IntEnum):
    AMAZON = 0
    NEW = 1
    USED = 2
    SALES = 3  # sales rank, not a price
    LISTPRICE = 4
    COLLECTIBLE = 5
    REFURBISHED = 6
    NEW_FBM_SHIPPING = 7
    LIGHTNING_DEAL = 8
    WAREHOUSE = 9
    NEW_FBA = 10
    COUNT_NEW = 11
    COUNT_USED = 12
    COUNT_REFURBISHED = 13
    COUNT_COLLECTIBLE = 14
    EXTRA_INFO_UPDATES = 15
    RATING = 16  # 0 to 50: 45 means 4.5 stars
    COUNT_REVIEWS = 17
    BUY_BOX_SHIPPING = 18
    USED_NEW_SHIPPING = 19
    USED_VERY_GOOD_SHIPPING = 20
    USED_GOOD_SHIPPING = 21
    USED_ACCEPTABLE_SHIPPING = 22
    COLLECTIBLE_NEW_SHIPPING = 23
    COLLECTIBLE_VERY_GOOD_SHIPPING = 24
    COLLECTIBLE_GOOD_SHIPPING = 25
    COLLECTIBLE_ACCEPTABLE_SHIPPING = 26
    REFURBISHED_SHIPPING = 27
    EBAY_NEW_SHIPPING = 28
    EBAY_USED_SHIPPING = 29
    TRADE_IN = 30
    RENT = 31
    BUY_BOX_USED_SHIPPING = 32
    PRIME_EXCL = 33
    COUNT_NEW_FBA = 34
    COUNT_NEW_FBM = 35


class DateRange(IntEnum):
    """The first index of two-dimensional deal arrays such as `avg[date_range][price_type]`."""

    DAY = 0
    WEEK = 1
    MONTH = 2
    NINETY_DAYS = 3


def price_type_name(index: int) -> str | None:
    try:
        return PriceType(index).name
    except ValueError:
        return None


def value_at(values: Any, price_type: int) -> int | None:
    """Return `values[price_type]`, or None when the array is missing, too short or holds no integer.

    -1 (no offer) is returned as is; use `price_at` to treat it as no price.
    """
    if not isinstance(values, list) or not 0 <= price_type < len(values):
        return None
    value = values[price_type]
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def price_at(values: Any, price_type: int) -> int | None:
    """Return the price in the smallest currency unit, or None when it is unknown or there is no offer."""
    value = value_at(values, price_type)
    if value is None or value < 0:
        return None
    return value


def range_value_at(matrix: Any, date_range: int, price_type: int) -> int | None:
    """Return `matrix[date_range][price_type]` of a two-dimensional deal array, or None when missing."""
    if not isinstance(matrix, list) or not 0 <= date_range < len(matrix):
        return None
    return value_at(matrix[date_range], price_type)
