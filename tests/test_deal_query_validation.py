"""DealQuery validation: every bad selection is a field error on `selection` that names the value."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from deals.models import DealQuery
from deals.validation import validate_selection

pytestmark = pytest.mark.django_db


def selection_errors(selection) -> list[str]:
    with pytest.raises(ValidationError) as raised:
        validate_selection(selection)
    return raised.value.message_dict["selection"]


def test_default_query_ships_with_migrations():
    query = DealQuery.objects.get(name="amazon-com-all")

    assert query.is_active
    assert query.domain == 1
    assert query.selection["priceTypes"] == [0]
    assert query.selection["dateRange"] == 0


def test_valid_selection_saved_with_domain():
    query = DealQuery.objects.create(name="de-used", selection={"domainId": 3, "priceTypes": [2], "dateRange": 1})

    assert query.domain == 3
    assert query.date_range == 1
    assert query.price_types == [2]


def test_selection_as_json_text_parsed():
    query = DealQuery.objects.create(name="text", selection='{"domainId": 2, "priceTypes": [1]}')

    assert query.selection == {"domainId": 2, "priceTypes": [1]}
    assert query.domain == 2


def test_invalid_json_rejected():
    errors = selection_errors('{"domainId": 1,')

    assert "Invalid JSON" in errors[0]


def test_json_array_rejected():
    errors = selection_errors("[1, 2]")

    assert "must be a JSON object" in errors[0]
    assert "[1, 2]" in errors[0]


def test_unknown_key_named():
    errors = selection_errors({"domainId": 1, "priceType": [0]})

    assert "priceType" in errors[0]
    assert "Unknown keys" in errors[0]


def test_missing_domain_rejected():
    errors = selection_errors({"priceTypes": [0]})

    assert "Missing domainId" in errors[0]


@pytest.mark.parametrize("domain", [0, 7, 13, -1])
def test_unknown_domain_named(domain):
    errors = selection_errors({"domainId": domain})

    assert f"domainId={domain}" in errors[0]
    assert "1 is amazon.com" in errors[0]


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("domainId", "1", "domainId='1' must be a whole number"),
        ("domainId", True, "domainId=True must be a whole number"),
        ("dateRange", 4, "dateRange=4 is out of range"),
        ("priceTypes", 0, "priceTypes=0 must be a list"),
        ("priceTypes", [0, 1], "exactly one price type"),
        ("priceTypes", [36], "priceTypes=[36] is out of range"),
        ("deltaPercentRange", [20, 150], "deltaPercentRange=[20, 150] is out of range"),
        ("deltaPercentRange", [50, 10], "minimum above its maximum"),
        ("currentRange", [-5, 100], "must not be negative"),
        ("currentRange", [0, 2**40], "is out of range"),
        ("currentRange", [1, 2, 3], "must be a list of two whole numbers"),
        ("isFilterEnabled", "yes", "isFilterEnabled='yes' must be true or false"),
        ("includeCategories", [0, 172282], "invalid category node ids [0]"),
        ("excludeCategories", "172282", "must be a list of category node ids"),
        ("titleSearch", 42, "titleSearch=42 must be text"),
        ("sortType", 9, "sortType=9 is not a Keepa sort type"),
        ("page", -1, "page=-1 must be 0 or more"),
        ("minRating", 60, "minRating=60 is out of range"),
        ("warehouseConditions", [1, 9], "warehouseConditions=[1, 9] holds [9]"),
    ],
)
def test_bad_value_named(key, value, expected):
    errors = selection_errors({"domainId": 1, key: value})

    assert any(expected in error for error in errors), errors


def test_open_sales_rank_range_accepted():
    selection = {"domainId": 1, "salesRankRange": [5000, -1], "includeCategories": [16225007011]}

    assert validate_selection(selection) == selection


def test_every_error_reported_at_once():
    errors = selection_errors({"domainId": 99, "dateRange": 9, "bogus": 1})

    assert len(errors) == 3


def test_save_rejects_bad_selection():
    with pytest.raises(ValidationError) as raised:
        DealQuery(name="bad", selection={"domainId": 7}).save()

    assert "selection" in raised.value.message_dict
    assert not DealQuery.objects.filter(name="bad").exists()


def test_full_clean_reports_field_errors():
    query = DealQuery(name="bad name!", selection={"domainId": 1, "dateRange": -1})

    with pytest.raises(ValidationError) as raised:
        query.full_clean()

    assert set(raised.value.message_dict) == {"name", "selection"}
