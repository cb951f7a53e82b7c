"""The audit trail of the token ledger: one row per event that moved or explained the balance.

Units: costs and balances are Keepa tokens (floats, may be negative); the
refill rate is tokens per minute.
"""

from __future__ import annotations

from django.db import models


class TokenEvent(models.Model):
    class Kind(models.TextChoices):
        GRANT = "grant", "grant"
        RECONCILE = "reconcile", "reconcile"
        SYNC = "sync", "sync"
        NOT_ENOUGH_TOKENS = "429", "429 not enough tokens"
        RATE_CHANGE = "rate_change", "refill rate change"
        DRIFT_CORRECTED = "drift_corrected", "drift corrected"
        RECHARGE_WAIT = "recharge_wait", "recharge wait"
        MANUAL_ADJUSTMENT = "manual_adjustment", "manual adjustment"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, db_index=True)
    endpoint = models.CharField(max_length=40, blank=True)
    reservation_id = models.CharField(max_length=40, blank=True, db_index=True)
    estimated_cost = models.FloatField(null=True, blank=True)
    actual_cost = models.FloatField(null=True, blank=True)
    balance_before = models.FloatField(null=True, blank=True)
    balance_after = models.FloatField(null=True, blank=True)
    refill_rate = models.FloatField(null=True, blank=True, help_text="Tokens per minute.")
    in_flight_total = models.FloatField(
        null=True, blank=True, help_text="Tokens reserved by calls in flight after this event."
    )
    worker = models.CharField(max_length=100, blank=True, db_index=True, help_text="host:pid")
    task = models.CharField(max_length=200, blank=True, help_text="Task or command that caused the event.")
    message = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = (models.Index(fields=["kind", "created_at"]),)

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.endpoint} at {self.created_at:%Y-%m-%d %H:%M:%S}"
