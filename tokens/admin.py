"""A read-only view of the token audit trail."""

from __future__ import annotations

from django.contrib import admin

from tokens.models import TokenEvent


@admin.register(TokenEvent)
class TokenEventAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "kind",
        "endpoint",
        "estimated_cost",
        "actual_cost",
        "balance_before",
        "balance_after",
        "refill_rate",
        "in_flight_total",
        "worker",
        "task",
        "message",
    )
    list_filter = ("kind", "worker", "endpoint")
    search_fields = ("message", "task", "reservation_id")
    date_hierarchy = "created_at"
    # The trail is written by the ledger only; editing it would falsify history.
    readonly_fields = tuple(field.name for field in TokenEvent._meta.fields)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
