"""Deals found by Keepa, the deal queries that find them, and the runs that store them.

Units: prices are integers in the smallest currency unit of the domain
(cents, yen). Sales rank, rating (0-50, 45 = 4.5 stars) and review count are
plain numbers. A value Keepa reports as -1 ("no offer") or leaves out is
stored as NULL, never as a price.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from deals.keepa.domains import DOMAINS

DOMAIN_CHOICES = [(domain.id, f"amazon.{domain.code}") for domain in DOMAINS.values()]

# Keepa's dateRange values in a deal selection, and the index of the first
# dimension of the deal's avg, delta and deltaPercent arrays.
DATE_RANGE_CHOICES = [
    (0, "day"),
    (1, "week"),
    (2, "month"),
    (3, "90 days"),
]


class DealQuery(models.Model):
    """A named Keepa deal selection, as the JSON that Keepa's Deals page shows for its filters.

    The watermark is the `creationDate` of the newest deal such that every deal
    at or before it has been stored. It moves only at the end of a complete run.
    """

    name = models.SlugField(max_length=100, unique=True, help_text="Used with update_recent_deals --query NAME.")
    selection = models.JSONField(
        help_text="The deal selection JSON from Keepa's Deals page, e.g. "
        '{"domainId": 1, "priceTypes": [0], "dateRange": 0}.'
    )
    domain = models.PositiveSmallIntegerField(
        choices=DOMAIN_CHOICES, editable=False, help_text="Copied from the selection's domainId on save."
    )
    is_active = models.BooleanField(default=True, help_text="Active queries are ingested on the beat schedule.")
    watermark = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Keepa creationDate of the newest deal up to which every deal has been stored.",
    )
    watermark_updated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("name",)
        verbose_name = "deal query"
        verbose_name_plural = "deal queries"

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        # Validated on every save, not only in forms, so a query created in a
        # shell or a data migration can never reach Keepa with a bad selection.
        self.clean()
        super().save(*args, **kwargs)

    def clean(self) -> None:
        from deals.validation import validate_selection

        self.selection = validate_selection(self.selection)
        self.domain = self.selection["domainId"]

    @property
    def date_range(self) -> int:
        return int(self.selection.get("dateRange", 0))

    @property
    def price_types(self) -> list[int]:
        return [int(value) for value in self.selection.get("priceTypes", [0])]


class Deal(models.Model):
    """One deal per (domain, ASIN), with Keepa's values at the time it was last seen."""

    domain = models.PositiveSmallIntegerField(choices=DOMAIN_CHOICES)
    asin = models.CharField("ASIN", max_length=10)
    parent_asin = models.CharField("parent ASIN", max_length=10, blank=True)
    title = models.TextField(blank=True, help_text="Title with HTML tags removed and entities decoded.")
    title_raw = models.TextField(blank=True, help_text="Title exactly as Keepa sent it.")
    image_url = models.URLField(max_length=300, blank=True)

    # Amazon browse node ids exceed 2**31. NULL means unknown: Keepa sends
    # 9223372036854775807 or 0 for that.
    root_category = models.BigIntegerField(null=True, blank=True)
    category_ids = models.JSONField(default=list, blank=True)

    # The query this deal was last stored for, with its date range and the
    # price type whose drop is recorded in drop_percent and drop_amount.
    query = models.ForeignKey(DealQuery, null=True, blank=True, on_delete=models.SET_NULL, related_name="deals")
    date_range = models.PositiveSmallIntegerField(choices=DATE_RANGE_CHOICES, default=0)
    drop_price_type = models.PositiveSmallIntegerField(null=True, blank=True)
    drop_percent = models.SmallIntegerField(
        null=True, blank=True, help_text="Percent below the average for the date range; positive is a drop."
    )
    drop_amount = models.IntegerField(
        null=True, blank=True, help_text="Below the average for the date range, in cents; positive is a drop."
    )

    # Current values by price type (cents, or a plain number for rank,
    # rating and counts). NULL: no offer or unknown.
    current_amazon = models.IntegerField(null=True, blank=True)
    current_new = models.IntegerField(null=True, blank=True)
    current_used = models.IntegerField(null=True, blank=True)
    current_sales_rank = models.IntegerField(null=True, blank=True)
    current_list_price = models.IntegerField(null=True, blank=True)
    current_lightning_deal = models.IntegerField(null=True, blank=True)
    current_warehouse = models.IntegerField(null=True, blank=True)
    current_new_fba = models.IntegerField(null=True, blank=True)
    current_buy_box = models.IntegerField(null=True, blank=True)
    current_rating = models.SmallIntegerField(null=True, blank=True, help_text="0-50; 45 is 4.5 stars.")
    current_review_count = models.IntegerField(null=True, blank=True)

    # Averages, deltas (current minus average) and deltas in percent for the
    # query's date range, keyed by price type name (AMAZON, NEW, ...), with
    # the same units as the current values. Unknown entries are left out.
    averages = models.JSONField(default=dict, blank=True)
    deltas = models.JSONField(default=dict, blank=True)
    delta_percents = models.JSONField(default=dict, blank=True)

    lightning_end = models.DateTimeField(null=True, blank=True)
    warehouse_condition = models.PositiveSmallIntegerField(null=True, blank=True)
    warehouse_condition_comment = models.TextField(blank=True)

    keepa_created_at = models.DateTimeField(help_text="Keepa's creationDate: when Keepa found the deal.")
    keepa_updated_at = models.DateTimeField(null=True, blank=True, help_text="Keepa's lastUpdate.")

    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(
        default=timezone.now, help_text="Last time Keepa returned this deal or a refresh found its offer."
    )
    checked_at = models.DateTimeField(
        default=timezone.now, help_text="Last time Keepa sent data for this ASIN, in the deal list or a refresh."
    )
    refreshed_at = models.DateTimeField(null=True, blank=True, help_text="Last product refresh.")

    raw = models.JSONField(default=dict, blank=True, help_text="The deal object as Keepa sent it.")

    class Meta:
        ordering = ("-keepa_created_at",)
        constraints = (models.UniqueConstraint(fields=["domain", "asin"], name="deal_unique_domain_asin"),)
        indexes = (
            models.Index(fields=["asin"], name="deal_asin"),
            models.Index(fields=["domain", "root_category"], name="deal_domain_root_category"),
            models.Index(fields=["drop_percent"], name="deal_drop_percent"),
            models.Index(fields=["current_sales_rank"], name="deal_sales_rank"),
            models.Index(fields=["last_seen_at"], name="deal_last_seen"),
            models.Index(fields=["first_seen_at"], name="deal_first_seen"),
            models.Index(fields=["checked_at"], name="deal_checked"),
            models.Index(fields=["-keepa_created_at"], name="deal_keepa_created"),
            models.Index(fields=["drop_price_type"], name="deal_drop_price_type"),
            models.Index(fields=["lightning_end"], name="deal_lightning", condition=Q(lightning_end__isnull=False)),
            models.Index(
                fields=["warehouse_condition"], name="deal_warehouse", condition=Q(warehouse_condition__isnull=False)
            ),
        )

    def __str__(self) -> str:
        return f"{self.asin} on {self.get_domain_display()}"

    @property
    def is_lightning_deal(self) -> bool:
        return self.lightning_end is not None

    @property
    def is_warehouse_deal(self) -> bool:
        return self.warehouse_condition is not None


class IngestionRun(models.Model):
    """One run of update_recent_deals for one deal query, with its counts and outcome."""

    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        PARTIAL = "partial"
        FAILED = "failed"
        SKIPPED = "skipped"

    query = models.ForeignKey(DealQuery, on_delete=models.CASCADE, related_name="runs")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    trigger = models.CharField(max_length=16, default="command", help_text="command or task")
    dry_run = models.BooleanField(default=False)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    pages_fetched = models.PositiveIntegerField(default=0)
    deals_received = models.PositiveIntegerField(default=0)
    deals_created = models.PositiveIntegerField(default=0)
    deals_updated = models.PositiveIntegerField(default=0)
    deals_skipped = models.PositiveIntegerField(default=0)
    skip_reasons = models.JSONField(default=dict, blank=True, help_text="Skipped deals counted by reason.")
    deals_enriched = models.PositiveIntegerField(default=0)
    deals_refreshed = models.PositiveIntegerField(default=0)

    tokens_estimated = models.FloatField(default=0)
    tokens_consumed = models.FloatField(default=0)

    watermark_before = models.DateTimeField(null=True, blank=True)
    watermark_after = models.DateTimeField(null=True, blank=True)
    stop_reason = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ("-started_at",)
        verbose_name = "ingestion run"
        indexes = (
            models.Index(fields=["query", "-started_at"], name="run_query_started"),
            models.Index(fields=["status"], name="run_status"),
        )

    def __str__(self) -> str:
        return f"{self.query} at {self.started_at:%Y-%m-%d %H:%M} ({self.status})"

    @property
    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()
