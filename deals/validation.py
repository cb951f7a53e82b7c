"""Validation of a Keepa deal selection, the JSON that Keepa's Deals page shows for its filters.

Every problem is reported as a field error on `selection` that names the key,
the value and what is expected, so the admin form and the shell show the same
message.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError

from deals.keepa.domains import DOMAINS
from deals.keepa.price_types import PriceType

KNOWN_DOMAIN_IDS = frozenset(DOMAINS)
MAX_PRICE_TYPE = max(PriceType)
SALES_RANK_PRICE_TYPE = PriceType.SALES

# Node ids are positive and fit a signed 64-bit integer.
MAX_CATEGORY_ID = 2**63 - 1
MAX_INT32 = 2**31 - 1
MAX_TEXT_LENGTH = 500

BOOLEAN_KEYS = frozenset(
    {
        "isLowest",
        "isLowest90",
        "isLowestOffer",
        "isBackInStock",
        "isOutOfStock",
        "isRangeEnabled",
        "isFilterEnabled",
        "filterErotic",
        "hasReviews",
        "isPrimeExclusive",
        "mustHaveAmazonOffer",
        "mustNotHaveAmazonOffer",
        "singleVariation",
        "isRisers",
    }
)
RANGE_KEYS = frozenset({"deltaRange", "deltaPercentRange", "deltaLastRange", "currentRange", "salesRankRange"})
CATEGORY_KEYS = frozenset({"includeCategories", "excludeCategories"})
TEXT_KEYS = frozenset({"titleSearch", "categorySearch"})
INTEGER_KEYS = frozenset({"domainId", "page", "dateRange", "sortType", "minRating"})
LIST_KEYS = frozenset({"priceTypes", "warehouseConditions"})
KNOWN_KEYS = BOOLEAN_KEYS | RANGE_KEYS | CATEGORY_KEYS | TEXT_KEYS | INTEGER_KEYS | LIST_KEYS


def validate_selection(selection: Any) -> dict[str, Any]:
    """Check a deal selection and return it as a dict; raise ValidationError on `selection` otherwise.

    A string is parsed as JSON first, so a selection pasted from Keepa's
    Deals page can be given as text.
    """
    selection = _parse_json_object(selection)
    errors: list[str] = []

    unknown = sorted(set(selection) - KNOWN_KEYS)
    if unknown:
        errors.append(
            f"Unknown keys {', '.join(unknown)}: use only the keys Keepa's Deals page shows "
            f"({', '.join(sorted(KNOWN_KEYS))})."
        )

    if "domainId" not in selection:
        errors.append("Missing domainId: add the Keepa domain id, e.g. 1 for amazon.com.")

    for key, value in selection.items():
        if key in KNOWN_KEYS:
            errors.extend(_check_value(key, value, selection))

    if errors:
        raise ValidationError({"selection": errors})
    return selection


def _parse_json_object(selection: Any) -> dict[str, Any]:
    if isinstance(selection, (str, bytes)):
        try:
            selection = json.loads(selection)
        except ValueError as error:
            raise ValidationError(
                {"selection": f"Invalid JSON ({error}): paste the JSON that Keepa's Deals page shows."}
            ) from None

    if not isinstance(selection, dict):
        raise ValidationError(
            {"selection": f"The selection must be a JSON object, not {type(selection).__name__} {selection!r}."}
        )
    return selection


def _check_value(key: str, value: Any, selection: dict[str, Any]) -> list[str]:
    if key in BOOLEAN_KEYS:
        return [] if isinstance(value, bool) else [f"{key}={value!r} must be true or false."]
    if key in RANGE_KEYS:
        return _check_range(key, value, selection)
    if key in CATEGORY_KEYS:
        return _check_categories(key, value)
    if key in TEXT_KEYS:
        return _check_text(key, value)
    if key in LIST_KEYS:
        return _check_list(key, value)
    return _check_integer(key, value)


def _is_integer(value: Any) -> bool:
    # JSON true and false are ints in Python, but never a valid number here.
    return isinstance(value, int) and not isinstance(value, bool)


def _check_integer(key: str, value: Any) -> list[str]:
    if key == "minRating" and value is None:
        return []
    if not _is_integer(value):
        return [f"{key}={value!r} must be a whole number."]

    problem = INTEGER_CHECKS.get(key, lambda _value: None)(value)
    return [problem] if problem else []


def _domain_problem(value: int) -> str | None:
    if value in KNOWN_DOMAIN_IDS:
        return None
    known = ", ".join(str(domain) for domain in sorted(KNOWN_DOMAIN_IDS))
    return f"domainId={value} is not a known Keepa domain: use one of {known} (1 is amazon.com)."


def _date_range_problem(value: int) -> str | None:
    if 0 <= value <= 3:
        return None
    return f"dateRange={value} is out of range: use 0 (day), 1 (week), 2 (month) or 3 (90 days)."


def _sort_type_problem(value: int) -> str | None:
    if value in (1, 2, 3, 4, -2, -3, -4):
        return None
    return f"sortType={value} is not a Keepa sort type: use 1 to 4, or -2 to -4 to invert."


def _page_problem(value: int) -> str | None:
    return None if value >= 0 else f"page={value} must be 0 or more."


def _min_rating_problem(value: int) -> str | None:
    if -1 <= value <= 50:
        return None
    return f"minRating={value} is out of range: use -1 (off) or 0 to 50 (45 is 4.5 stars)."


INTEGER_CHECKS = {
    "domainId": _domain_problem,
    "dateRange": _date_range_problem,
    "sortType": _sort_type_problem,
    "page": _page_problem,
    "minRating": _min_rating_problem,
}


def _check_list(key: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(_is_integer(item) for item in value):
        return [f"{key}={value!r} must be a list of whole numbers."]

    if key == "priceTypes":
        if len(value) != 1:
            return [f"priceTypes={value!r} must hold exactly one price type, e.g. [0] for Amazon."]
        if not 0 <= value[0] <= MAX_PRICE_TYPE:
            return [f"priceTypes={value!r} is out of range: use a Keepa price type from 0 to {MAX_PRICE_TYPE}."]
    if key == "warehouseConditions":
        bad = [item for item in value if not 1 <= item <= 5]
        if bad:
            return [f"warehouseConditions={value!r} holds {bad!r}: use conditions 1 (new) to 5 (acceptable)."]
    return []


def _check_range(key: str, value: Any, selection: dict[str, Any]) -> list[str]:
    if value is None:
        return []
    if not (isinstance(value, list) and len(value) == 2 and all(_is_integer(item) for item in value)):
        return [f"{key}={value!r} must be a list of two whole numbers [minimum, maximum]."]

    problem = _range_bounds_problem(key, value)
    ranks = selection.get("priceTypes") == [SALES_RANK_PRICE_TYPE]
    if not problem and key == "deltaPercentRange" and not ranks and value[1] > 100:
        problem = f"deltaPercentRange={value!r} is out of range: a price drop in percent goes from 0 to 100."
    return [problem] if problem else []


def _range_bounds_problem(key: str, value: list[int]) -> str | None:
    low, high = value
    # Keepa reads -1 as an open upper bound of the sales rank range.
    open_upper = key == "salesRankRange" and high == -1
    if low < 0 or (high < 0 and not open_upper):
        return f"{key}={value!r} must not be negative."
    if high > MAX_INT32 or low > MAX_INT32:
        return f"{key}={value!r} is out of range: use values up to {MAX_INT32}."
    if not open_upper and low > high:
        return f"{key}={value!r} has its minimum above its maximum: use [minimum, maximum]."
    return None


def _check_categories(key: str, value: Any) -> list[str]:
    if not isinstance(value, list):
        return [f"{key}={value!r} must be a list of category node ids."]
    bad = [item for item in value if not _is_integer(item) or not 0 < item <= MAX_CATEGORY_ID]
    if bad:
        return [f"{key} holds invalid category node ids {bad!r}: use positive whole numbers."]
    return []


def _check_text(key: str, value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, str):
        return [f"{key}={value!r} must be text."]
    if len(value) > MAX_TEXT_LENGTH:
        return [f"{key} is {len(value)} characters long: use at most {MAX_TEXT_LENGTH}."]
    return []
