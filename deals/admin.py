"""The Django admin of deals, deal queries and ingestion runs.

Titles and warehouse comments come from Keepa and may contain HTML and script,
so every value built into markup here goes through format_html, which escapes it.
"""

from __future__ import annotations

import json
import logging
from typing import Any, ClassVar

from django import forms
from django.contrib import admin, messages
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator

from deals import task_queue
from deals.admin_filters import (
    DropRangeFilter,
    LightningDealFilter,
    PriceTypePresentFilter,
    RootCategoryFilter,
    WarehouseDealFilter,
)
from deals.csv_export import deals_csv_response
from deals.keepa.domains import DOMAINS, product_url
from deals.keepa.money import format_price
from deals.models import Deal, DealQuery, IngestionRun

logger = logging.getLogger(__name__)

# Ingestion runs shown on a deal query's page; the rest are one click away in the run list.
RECENT_RUNS = 10
TITLE_LENGTH = 90


def keepa_product_url(asin: str, domain_id: int) -> str:
    return f"https://keepa.com/#!product/{domain_id}-{asin}"


def pretty_json(value: Any) -> str:
    return format_html("<pre class=\"deals-json\">{}</pre>", json.dumps(value, indent=2, sort_keys=True,
                                                                      ensure_ascii=False))


# Deals


@admin.register(Deal)
class DealAdmin(admin.ModelAdmin):
    list_display = (
        "thumbnail",
        "title_display",
        "asin_links",
        "domain",
        "new_price",
        "used_price",
        "amazon_price",
        "drop_display",
        "current_sales_rank",
        "lightning_end",
        "last_seen_at",
    )
    list_display_links = ("title_display",)
    list_filter = (
        "domain",
        RootCategoryFilter,
        PriceTypePresentFilter,
        DropRangeFilter,
        LightningDealFilter,
        WarehouseDealFilter,
        "first_seen_at",
        "query",
    )
    search_fields = ("=asin", "=parent_asin", "title")
    date_hierarchy = "first_seen_at"
    ordering = ("-keepa_created_at",)
    list_select_related = ("query",)
    list_per_page = 100
    # Counting every deal on each page load is slow on large tables; the filtered count is still shown.
    show_full_result_count = False
    actions = ("export_csv", "refresh_from_keepa")

    fieldsets = (
        (None, {"fields": ("image_preview", "title", "asin_links", "parent_asin", "domain", "query")}),
        ("Prices and rank", {"fields": (
            "amazon_price", "new_price", "used_price", "drop_display", "drop_amount_display", "drop_price_type",
            "date_range", "current_sales_rank", "current_rating", "current_review_count",
        )}),
        ("Lightning and warehouse", {"fields": (
            "lightning_end", "warehouse_condition", "warehouse_condition_comment",
        )}),
        ("Category", {"fields": ("root_category", "category_ids")}),
        ("Times", {"fields": (
            "keepa_created_at", "keepa_updated_at", "first_seen_at", "last_seen_at", "checked_at", "refreshed_at",
        )}),
        ("As Keepa sent it", {"classes": ("collapse",), "fields": (
            "title_raw", "averages_json", "deltas_json", "delta_percents_json", "raw_json",
        )}),
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Deal | None = None) -> list[str]:
        # Deals are Keepa's data: the admin shows them and never edits them.
        return [name for fieldset in self.fieldsets for name in fieldset[1]["fields"]]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Deal | None = None) -> bool:
        return False

    def has_refresh_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("deals.change_deal")

    # Columns

    @admin.display(description="")
    def thumbnail(self, deal: Deal) -> str:
        if not deal.image_url.startswith("https://"):
            return ""
        return format_html('<img src="{}" alt="" loading="lazy" class="deals-thumbnail">', deal.image_url)

    @admin.display(description="image")
    def image_preview(self, deal: Deal) -> str:
        if not deal.image_url.startswith("https://"):
            return "no image"
        return format_html('<img src="{}" alt="" class="deals-image">', deal.image_url)

    @admin.display(description="title", ordering="title")
    def title_display(self, deal: Deal) -> str:
        title = deal.title or deal.asin
        return format_html('<span title="{}">{}</span>', title, Truncator(title).chars(TITLE_LENGTH))

    @admin.display(description="ASIN", ordering="asin")
    def asin_links(self, deal: Deal) -> str:
        if deal.domain not in DOMAINS:
            return deal.asin
        return format_html(
            '<a href="{}" target="_blank" rel="noopener noreferrer">{}</a> '
            '<a href="{}" target="_blank" rel="noopener noreferrer" class="deals-keepa-link">Keepa</a>',
            product_url(deal.asin, deal.domain), deal.asin, keepa_product_url(deal.asin, deal.domain),
        )

    @admin.display(description="new", ordering="current_new")
    def new_price(self, deal: Deal) -> str | None:
        return _price(deal.current_new, deal.domain)

    @admin.display(description="used", ordering="current_used")
    def used_price(self, deal: Deal) -> str | None:
        return _price(deal.current_used, deal.domain)

    @admin.display(description="Amazon", ordering="current_amazon")
    def amazon_price(self, deal: Deal) -> str | None:
        return _price(deal.current_amazon, deal.domain)

    @admin.display(description="drop", ordering="-drop_percent")
    def drop_display(self, deal: Deal) -> str | None:
        return None if deal.drop_percent is None else f"{deal.drop_percent} %"

    @admin.display(description="drop amount")
    def drop_amount_display(self, deal: Deal) -> str | None:
        return _price(deal.drop_amount, deal.domain)

    @admin.display(description="averages")
    def averages_json(self, deal: Deal) -> str:
        return pretty_json(deal.averages)

    @admin.display(description="deltas")
    def deltas_json(self, deal: Deal) -> str:
        return pretty_json(deal.deltas)

    @admin.display(description="deltas in percent")
    def delta_percents_json(self, deal: Deal) -> str:
        return pretty_json(deal.delta_percents)

    @admin.display(description="raw deal JSON")
    def raw_json(self, deal: Deal) -> str:
        return pretty_json(deal.raw)

    # Actions

    @admin.action(description="Export the selected deals to CSV", permissions=["view"])
    def export_csv(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse:
        return deals_csv_response(queryset)

    @admin.action(description="Refresh the selected deals from Keepa", permissions=["refresh"])
    def refresh_from_keepa(self, request: HttpRequest, queryset: QuerySet) -> None:
        deal_ids = list(queryset.values_list("pk", flat=True))
        try:
            task_ids = task_queue.queue_deal_refresh(deal_ids)
        except task_queue.TaskQueueError as error:
            self.message_user(request, str(error), messages.ERROR)
            return
        self.message_user(
            request,
            f"Queued a Keepa refresh of {len(deal_ids)} deals in {len(task_ids)} task(s); a worker spends "
            "tokens from the ledger for it and updates the deals when Keepa responds.",
            messages.SUCCESS,
        )

    class Media:
        css: ClassVar[dict] = {"all": ("deals/admin.css",)}


def _price(amount: int | None, domain_id: int) -> str | None:
    if domain_id not in DOMAINS:
        return None if amount is None else str(amount)
    return format_price(amount, domain_id)


# Deal queries


class PrettyJSONField(forms.JSONField):
    """A JSON form field that shows its value indented, one key per line."""

    def prepare_value(self, value: Any) -> str:
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False, cls=self.encoder)


class DealQueryForm(forms.ModelForm):
    selection = PrettyJSONField(
        widget=forms.Textarea(attrs={"rows": 14, "cols": 80, "class": "deals-json-input"}),
        help_text=DealQuery._meta.get_field("selection").help_text,
    )

    class Meta:
        model = DealQuery
        fields = ("name", "selection", "is_active")


class RunColumns:
    """List columns shared by the ingestion run admin and the runs inline of a deal query."""

    @admin.display(description="duration")
    def duration(self, run: IngestionRun) -> str | None:
        return _duration(run)

    @admin.display(description="error")
    def short_error(self, run: IngestionRun) -> str:
        return Truncator(run.error).chars(120)


class RecentRunInline(RunColumns, admin.TabularInline):
    """The deal query's latest ingestion runs, read-only."""

    model = IngestionRun
    verbose_name_plural = f"latest {RECENT_RUNS} ingestion runs"
    fields = ("started_at", "status", "trigger", "deals_received", "deals_created", "deals_updated",
              "tokens_consumed", "duration", "stop_reason", "short_error")
    readonly_fields = fields
    show_change_link = True
    can_delete = False
    extra = 0
    max_num = 0

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The formset filters by the parent after this, and a sliced queryset cannot be filtered,
        # so the latest runs are picked by primary key.
        queryset = super().get_queryset(request)
        object_id = request.resolver_match.kwargs.get("object_id") if request.resolver_match else None
        if not object_id:
            return queryset.none()
        latest = list(
            IngestionRun.objects.filter(query_id=object_id).order_by("-started_at").values_list("pk", flat=True)[
                :RECENT_RUNS
            ]
        )
        return queryset.filter(pk__in=latest).order_by("-started_at")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(DealQuery)
class DealQueryAdmin(admin.ModelAdmin):
    form = DealQueryForm
    list_display = ("name", "domain", "is_active", "watermark", "watermark_age", "last_run_status",
                    "last_run_started", "runs_link")
    list_filter = ("is_active", "domain")
    search_fields = ("name",)
    readonly_fields = ("domain", "watermark", "watermark_updated_at", "created_at", "updated_at", "runs_link")
    fieldsets = (
        (None, {"fields": ("name", "selection", "is_active")}),
        ("Progress", {"fields": ("domain", "watermark", "watermark_updated_at", "runs_link",
                                 "created_at", "updated_at")}),
    )
    inlines = (RecentRunInline,)
    actions = ("run_now",)
    change_form_template = "admin/deals/dealquery/change_form.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        latest = IngestionRun.objects.filter(query=OuterRef("pk")).order_by("-started_at")
        return super().get_queryset(request).annotate(
            last_status=Subquery(latest.values("status")[:1]),
            last_started=Subquery(latest.values("started_at")[:1]),
        )

    def get_urls(self) -> list:
        run_url = path(
            "<path:object_id>/run/",
            self.admin_site.admin_view(self.run_view),
            name="deals_dealquery_run",
        )
        return [run_url, *super().get_urls()]

    def has_run_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("deals.change_dealquery")

    # Columns

    @admin.display(description="watermark age")
    def watermark_age(self, query: DealQuery) -> str | None:
        if query.watermark is None:
            return None
        from dealsite.health import format_age

        return format_age((timezone.now() - query.watermark).total_seconds())

    @admin.display(description="last run", ordering="last_status")
    def last_run_status(self, query: DealQuery) -> str | None:
        return getattr(query, "last_status", None)

    @admin.display(description="last run started", ordering="last_started")
    def last_run_started(self, query: DealQuery) -> Any:
        return getattr(query, "last_started", None)

    @admin.display(description="runs")
    def runs_link(self, query: DealQuery) -> str:
        if query.pk is None:
            return ""
        url = reverse("admin:deals_ingestionrun_changelist") + f"?query__id__exact={query.pk}"
        return format_html('<a href="{}">all runs</a>', url)

    # Running now

    @admin.action(description="Run the selected deal queries now", permissions=["run"])
    def run_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        for query in queryset:
            self._queue_run(request, query)

    def run_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Queue a run of one deal query (POST only, from the button on its page)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_run_permission(request):
            self.message_user(request, "You may not run deal queries: ask for the change permission on them.",
                              messages.ERROR)
        else:
            self._queue_run(request, get_object_or_404(DealQuery, pk=object_id))
        return HttpResponseRedirect(reverse("admin:deals_dealquery_change", args=[object_id]))

    def _queue_run(self, request: HttpRequest, query: DealQuery) -> None:
        if not query.is_active:
            self.message_user(request, f"Deal query {query.name} is inactive: activate it first.", messages.WARNING)
            return
        try:
            task_id = task_queue.queue_query_run(query)
        except task_queue.TaskQueueError as error:
            self.message_user(request, str(error), messages.ERROR)
            return
        self.message_user(request, f"Queued a run of deal query {query.name} (task {task_id}); "
                          "it appears under its ingestion runs when a worker starts it.", messages.SUCCESS)

    class Media:
        css: ClassVar[dict] = {"all": ("deals/admin.css",)}


# Ingestion runs


@admin.register(IngestionRun)
class IngestionRunAdmin(RunColumns, admin.ModelAdmin):
    list_display = ("started_at", "query", "status", "trigger", "dry_run", "pages_fetched", "deals_received",
                    "deals_created", "deals_updated", "deals_skipped", "tokens_consumed", "tokens_estimated",
                    "duration", "short_error")
    list_filter = ("status", "query", "trigger", "dry_run", "started_at")
    list_select_related = ("query",)
    search_fields = ("query__name", "error", "stop_reason")
    date_hierarchy = "started_at"
    ordering = ("-started_at",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: IngestionRun | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: IngestionRun | None = None) -> bool:
        return False


def _duration(run: IngestionRun) -> str | None:
    seconds = run.duration_seconds
    if seconds is None:
        return None
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
