"""List filters of the deal admin."""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone


class RootCategoryFilter(admin.SimpleListFilter):
    """Amazon root categories that occur among the stored deals, as Keepa browse node ids."""

    title = "root category"
    parameter_name = "root_category"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        categories = (
            model_admin.model.objects.filter(root_category__isnull=False)
            .order_by("root_category")
            .values_list("root_category", flat=True)
            .distinct()
        )
        return [(str(category), str(category)) for category in categories[:200]]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value is None:
            return queryset
        if not value.isdigit():
            return queryset.none()
        return queryset.filter(root_category=int(value))


class PriceTypePresentFilter(admin.SimpleListFilter):
    """Deals that currently have a price of the chosen type; NULL means no offer."""

    title = "price present"
    parameter_name = "has_price"
    FIELDS: ClassVar[dict[str, tuple[str, str]]] = {
        "amazon": ("Amazon", "current_amazon"),
        "new": ("new", "current_new"),
        "used": ("used", "current_used"),
        "new_fba": ("new, fulfilled by Amazon", "current_new_fba"),
        "buy_box": ("buy box", "current_buy_box"),
        "warehouse": ("warehouse", "current_warehouse"),
    }

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(key, label) for key, (label, _field) in self.FIELDS.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        entry = self.FIELDS.get(self.value() or "")
        if entry is None:
            return queryset
        return queryset.filter(**{f"{entry[1]}__isnull": False})


class DropRangeFilter(admin.SimpleListFilter):
    """Ranges of the percentage drop below the average of the query's date range."""

    title = "drop"
    parameter_name = "drop"
    RANGES: ClassVar[dict[str, tuple[str, int | None, int | None]]] = {
        "lt10": ("under 10 %", None, 10),
        "10-25": ("10 to 25 %", 10, 25),
        "25-50": ("25 to 50 %", 25, 50),
        "50-75": ("50 to 75 %", 50, 75),
        "75+": ("75 % or more", 75, None),
    }

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(key, label) for key, (label, _low, _high) in self.RANGES.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        entry = self.RANGES.get(self.value() or "")
        if entry is None:
            return queryset
        _label, low, high = entry
        condition = Q(drop_percent__isnull=False)
        if low is not None:
            condition &= Q(drop_percent__gte=low)
        if high is not None:
            condition &= Q(drop_percent__lt=high)
        return queryset.filter(condition)


class LightningDealFilter(admin.SimpleListFilter):
    title = "lightning deal"
    parameter_name = "lightning"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("running", "running now"), ("ended", "ended"), ("any", "any lightning deal"), ("no", "no")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        now = timezone.now()
        conditions = {
            "running": Q(lightning_end__gt=now),
            "ended": Q(lightning_end__lte=now),
            "any": Q(lightning_end__isnull=False),
            "no": Q(lightning_end__isnull=True),
        }
        condition = conditions.get(self.value() or "")
        return queryset if condition is None else queryset.filter(condition)


class WarehouseDealFilter(admin.SimpleListFilter):
    title = "warehouse deal"
    parameter_name = "warehouse"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "yes"), ("no", "no")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(warehouse_condition__isnull=False)
        if self.value() == "no":
            return queryset.filter(warehouse_condition__isnull=True)
        return queryset
