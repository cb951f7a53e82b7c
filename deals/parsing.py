"""Conversion of one raw Keepa deal object into the field values of a Deal row.

A deal that cannot be stored raises InvalidDeal with a short reason code
(invalid_asin, not_an_object, value_out_of_range, ...), which the ingestion
run counts; the run goes on with the next deal.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.utils.html import strip_tags

from deals.keepa.images import image_url
from deals.keepa.keepa_time import keepa_minutes_to_datetime
from deals.keepa.price_types import PriceType, price_type_name

ASIN_PATTERN = re.compile(r"^[A-Z0-9]{10}$")

# Keepa sends the largest signed 64-bit integer, or 0, for an unknown category.
UNKNOWN_CATEGORY_IDS = frozenset({0, 2**63 - 1})
MAX_CATEGORY_ID = 2**63 - 1

# Bounds of the integer columns that hold prices, ranks and counts.
MAX_INT32 = 2**31 - 1
MIN_INT32 = -(2**31)

# Length of the Deal.image_url column.
IMAGE_URL_LENGTH = 300

# A Keepa minute later than this is a corrupt value (year 2200 and later).
MAX_KEEPA_MINUTES = 99_000_000

# How far Keepa's clock may run ahead of ours before a creationDate counts as invalid.
MAX_CLOCK_SKEW = timedelta(hours=1)

# Columns that hold a current value, by price type.
CURRENT_FIELDS: dict[PriceType, str] = {
    PriceType.AMAZON: "current_amazon",
    PriceType.NEW: "current_new",
    PriceType.USED: "current_used",
    PriceType.SALES: "current_sales_rank",
    PriceType.LISTPRICE: "current_list_price",
    PriceType.LIGHTNING_DEAL: "current_lightning_deal",
    PriceType.WAREHOUSE: "current_warehouse",
    PriceType.NEW_FBA: "current_new_fba",
    PriceType.RATING: "current_rating",
    PriceType.COUNT_REVIEWS: "current_review_count",
    PriceType.BUY_BOX_SHIPPING: "current_buy_box",
}
RATING_RANGE = (0, 50)


class InvalidDeal(ValueError):
    """A deal that cannot be stored. `reason` is a short code counted per run."""

    def __init__(self, reason: str, detail: str, asin: str | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.asin = asin
        super().__init__(f"{reason}: {detail}")


@dataclass(frozen=True)
class DealContext:
    """Context that a deal's values depend on besides the deal object itself."""

    domain: int
    date_range: int
    price_type: int
    query_id: int | None
    now: datetime


def parse_deal(raw: Any, context: DealContext) -> dict[str, Any]:
    """Return the Deal field values of one raw deal object, or raise InvalidDeal."""
    if not isinstance(raw, dict):
        raise InvalidDeal("not_an_object", f"a deal must be a JSON object, not {type(raw).__name__}")

    asin = parse_asin(raw.get("asin"))
    try:
        return _parse_fields(raw, asin, context)
    except InvalidDeal as error:
        error.asin = asin
        raise


def parse_asin(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidDeal("invalid_asin", f"ASIN {value!r} is not text")
    asin = value.strip().upper()
    if not ASIN_PATTERN.match(asin):
        raise InvalidDeal("invalid_asin", f"ASIN {value!r} is not 10 letters and digits")
    return asin


def _parse_fields(raw: dict[str, Any], asin: str, context: DealContext) -> dict[str, Any]:
    title_raw = _text(raw.get("title"), "title")
    values = {
        "domain": context.domain,
        "asin": asin,
        "parent_asin": _parent_asin(raw.get("parentAsin")),
        "title": display_title(title_raw),
        "title_raw": title_raw,
        "image_url": _image_url(raw.get("image")),
        "root_category": parse_category_id(raw.get("rootCat"), "rootCat"),
        "category_ids": _category_ids(raw.get("categories")),
        "query_id": context.query_id,
        "date_range": context.date_range,
        "lightning_end": _optional_time(raw.get("lightningEnd"), "lightningEnd"),
        "warehouse_condition": _warehouse_condition(raw.get("warehouseCondition")),
        "warehouse_condition_comment": _text(raw.get("warehouseConditionComment"), "warehouseConditionComment"),
        "keepa_created_at": _required_time(raw.get("creationDate"), "creationDate"),
        "keepa_updated_at": _optional_time(raw.get("lastUpdate"), "lastUpdate"),
        "first_seen_at": context.now,
        "last_seen_at": context.now,
        "checked_at": context.now,
        "raw": raw,
    }
    if values["keepa_created_at"] > context.now + MAX_CLOCK_SKEW:
        # A creationDate in the future would carry the watermark past deals not yet found.
        created = values["keepa_created_at"]
        raise InvalidDeal("future_creation_date", f"creationDate {created:%Y-%m-%d %H:%M} is in the future")

    values.update(parse_current_values(raw.get("current")))
    values.update(_range_values(raw, context))
    return values


def display_title(title_raw: str) -> str:
    """Return the title without HTML tags, with entities decoded and runs of whitespace collapsed."""
    text = html.unescape(strip_tags(title_raw))
    return " ".join(text.split())


def parse_current_values(current: Any) -> dict[str, int | None]:
    """Return the current_* columns from a `current` array; -1 (no offer) and missing entries become None."""
    if current is not None and not isinstance(current, list):
        raise InvalidDeal("invalid_value", f"current={str(current)[:40]!r} is not a list")

    values: dict[str, int | None] = {}
    for price_type, field_name in CURRENT_FIELDS.items():
        value = _checked_value(current, price_type, "current")
        if value is not None and value < 0:
            value = None
        if price_type == PriceType.RATING and value is not None and not RATING_RANGE[0] <= value <= RATING_RANGE[1]:
            raise InvalidDeal("value_out_of_range", f"rating {value} is outside 0 to 50")
        values[field_name] = value
    return values


def parse_category_id(value: Any, name: str) -> int | None:
    """Return a category node id, or None for Keepa's unknown markers (0 and 2**63 - 1) and a missing value."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidDeal("invalid_value", f"{name}={value!r} is not a whole number")
    if value in UNKNOWN_CATEGORY_IDS:
        return None
    if not 0 < value <= MAX_CATEGORY_ID:
        raise InvalidDeal("value_out_of_range", f"{name}={value} is not a category node id")
    return value


def _range_values(raw: dict[str, Any], context: DealContext) -> dict[str, Any]:
    """Return averages, deltas and the drop for the query's date range."""
    averages = _row_by_name(raw.get("avg"), context.date_range, "avg")
    deltas = _row_by_name(raw.get("delta"), context.date_range, "delta")
    delta_percents = _row_by_name(raw.get("deltaPercent"), context.date_range, "deltaPercent")
    # A -1 average means no offer during the range, not a price.
    averages = {name: value for name, value in averages.items() if value >= 0}

    name = price_type_name(context.price_type)
    delta = deltas.get(name)
    delta_percent = delta_percents.get(name)
    return {
        "averages": averages,
        "deltas": deltas,
        "delta_percents": delta_percents,
        "drop_price_type": context.price_type,
        # Keepa's delta is the current value minus the average, so a drop is
        # negative there and positive here. 0 means unchanged or unknown.
        "drop_amount": -delta if delta else None,
        "drop_percent": _clamped_percent(-delta_percent) if delta_percent else None,
    }


def _row_by_name(matrix: Any, date_range: int, name: str) -> dict[str, int]:
    if matrix is None:
        return {}
    if not isinstance(matrix, list):
        raise InvalidDeal("invalid_value", f"{name}={str(matrix)[:40]!r} is not a list")

    row = matrix[date_range] if date_range < len(matrix) else None
    if row is not None and not isinstance(row, list):
        raise InvalidDeal("invalid_value", f"{name}[{date_range}]={str(row)[:40]!r} is not a list")

    values = {}
    for index in range(len(row or [])):
        value = _checked_value(row, index, name)
        type_name = price_type_name(index)
        if value is not None and type_name is not None:
            values[type_name] = value
    return values


def _checked_value(values: Any, index: int, name: str) -> int | None:
    if not isinstance(values, list) or index >= len(values):
        return None
    value = values[index]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidDeal("invalid_value", f"{name}[{index}]={value!r} is not a whole number")
    if not MIN_INT32 <= value <= MAX_INT32:
        raise InvalidDeal("value_out_of_range", f"{name}[{index}]={value} does not fit a 32-bit integer")
    return value


def _clamped_percent(value: int) -> int:
    # SmallIntegerField: rank changes can exceed 100 percent.
    return max(-32768, min(32767, value))


def _text(value: Any, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidDeal("invalid_value", f"{name}={str(value)[:40]!r} is not text")
    # PostgreSQL text cannot hold NUL characters.
    return value.replace("\x00", "")


def _parent_asin(value: Any) -> str:
    if value in (None, ""):
        return ""
    try:
        return parse_asin(value)
    except InvalidDeal:
        # A bad parent ASIN does not make the deal unusable.
        return ""


def _image_url(value: Any) -> str:
    try:
        url = image_url(value) or ""
    except ValueError as error:
        raise InvalidDeal("invalid_image", str(error)) from None
    # A name too long for the column is no real image; the deal is kept without one (its raw JSON keeps the name).
    return url if len(url) <= IMAGE_URL_LENGTH else ""


def _category_ids(value: Any) -> list[int]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidDeal("invalid_value", f"categories={str(value)[:40]!r} is not a list")
    ids = [parse_category_id(item, "categories") for item in value]
    return [category_id for category_id in ids if category_id is not None]


def _required_time(value: Any, name: str) -> datetime:
    moment = _optional_time(value, name)
    if moment is None:
        raise InvalidDeal("missing_creation_date", f"{name}={value!r} is missing or zero")
    return moment


def _optional_time(value: Any, name: str) -> datetime | None:
    """Return the datetime of a Keepa minute; None for a missing value, 0 or -1."""
    if value is None or value in (0, -1):
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidDeal("invalid_value", f"{name}={value!r} is not a Keepa minute")
    if not 0 < value <= MAX_KEEPA_MINUTES:
        raise InvalidDeal("value_out_of_range", f"{name}={value} is not a plausible Keepa minute")
    return keepa_minutes_to_datetime(value)


def _warehouse_condition(value: Any) -> int | None:
    # Keepa's conditions are 1 (new) to 5 (acceptable); 0 or -1 mean not a warehouse deal.
    if value is None or value in (0, -1):
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidDeal("invalid_value", f"warehouseCondition={value!r} is not a whole number")
    if not 1 <= value <= 5:
        raise InvalidDeal("value_out_of_range", f"warehouseCondition={value} is outside 1 to 5")
    return value
