"""The invariants a reliability run must keep, each checked against the database, Redis and the sandbox.

Each check returns a list of violations (empty when it holds) so that a run can
report all of them at once. Django must be set up before these are called.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

FINAL_STATUSES = {"succeeded", "partial", "failed", "skipped"}


@dataclass
class Figures:
    """What a run reports besides its violations."""

    values: dict[str, Any] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    def add(self, problems: list[str]) -> None:
        self.violations.extend(problems)


def check_deals(domain: int, asins_before: set[str], asins_after: set[str], catalogue: Any, now_ms: int) -> list[str]:
    """Every valid deal served before the final runs is stored once with the sandbox's values, and nothing else is.

    asins_before: the sandbox's valid ASINs when the final runs began (all must be stored);
    asins_after: its valid ASINs when they ended (nothing outside them may be stored).
    catalogue: the rebuilt catalogue, whose deal objects the stored `raw` must equal.
    """
    from django.db.models import Count

    from deals.models import Deal

    problems = []
    rows = Deal.objects.filter(domain=domain)
    duplicates = list(rows.values("asin").annotate(copies=Count("id")).filter(copies__gt=1)[:5])
    if duplicates:
        problems.append(f"domain {domain}: ASINs stored more than once: {duplicates}")

    stored = dict(rows.values_list("asin", "raw"))
    missing = asins_before - set(stored)
    if missing:
        problems.append(f"domain {domain}: {len(missing)} served deals are not stored, e.g. {sorted(missing)[:5]}")
    unknown = set(stored) - asins_after
    if unknown:
        problems.append(f"domain {domain}: {len(unknown)} stored deals the sandbox never served as valid, "
                        f"e.g. {sorted(unknown)[:5]}")

    expected = {entry.asin: entry.deal for entry in catalogue.entries(domain, now_ms) if entry.valid}
    stale = [asin for asin, raw in stored.items() if asin in expected and raw != expected[asin]]
    if stale:
        problems.append(f"domain {domain}: {len(stale)} stored deals differ from the sandbox's, e.g. {stale[:5]}")
    return problems


def check_runs_final() -> list[str]:
    from deals.models import IngestionRun

    open_runs = list(IngestionRun.objects.exclude(status__in=FINAL_STATUSES).values_list("pk", "status")[:10])
    return [f"ingestion runs without a final status: {open_runs}"] if open_runs else []


def check_redis_leftovers(redis_client: Any, key_prefix: str) -> list[str]:
    """No ingestion lock and no unexpired reservation or ticket once every worker has stopped."""
    problems = []
    locks = list(redis_client.scan_iter(match=f"{key_prefix}:deals:ingestion-lock:*"))
    if locks:
        problems.append(f"ingestion locks left behind: {locks}")
    now_ms = int(time.time() * 1000)
    reservations = redis_client.zrangebyscore(f"{key_prefix}:tokens:in_flight", now_ms, "+inf")
    if reservations:
        problems.append(f"{len(reservations)} unexpired reservations left behind")
    tickets = redis_client.zrangebyscore(f"{key_prefix}:tokens:ticket_expiry", now_ms, "+inf")
    if tickets:
        problems.append(f"{len(tickets)} unexpired queue tickets left behind")
    return problems


def audit_actual_total() -> float:
    from django.db.models import Sum

    from tokens.models import TokenEvent

    total = TokenEvent.objects.filter(actual_cost__isnull=False).aggregate(total=Sum("actual_cost"))["total"]
    return float(total or 0.0)


def check_tokens(state: dict[str, Any], max_deficit: float, *, unavoidable_429: int = 0) -> list[str]:
    """The sandbox never went below the deficit floor, answered no avoidable 429, and the audit adds up to its total.

    unavoidable_429 counts the 429s answered right after a cut of the refill
    rate or a fourfold jump of every cost, before any response could tell the
    ledger. A 429 from the free token
    endpoint is unavoidable too: after Redis lost the ledger, that endpoint is
    the only way to read the balance, and it costs nothing. Every other 429 is
    one the ledger should have avoided.

    Tokens charged for answers the client never received (timeouts, truncated
    bodies) cannot appear in any audit row; the sandbox counts them apart.
    """
    problems = []
    if state["lowest_balance"] < max_deficit:
        problems.append(f"the sandbox's balance fell to {state['lowest_balance']:.1f}, below MAX_DEFICIT "
                        f"{max_deficit:g}")
    avoidable = state["answers_429"] - unavoidable_429 - state["answers_429_by_endpoint"].get("token", 0)
    if avoidable:
        problems.append(f"the sandbox answered {avoidable} requests with a 429 the ledger could have avoided "
                        f"({state['answers_429']} in all)")
    audited = audit_actual_total()
    expected = state["tokens_consumed_total"] - state["tokens_charged_unanswered"]
    if abs(audited - expected) > 0.01:
        problems.append(f"the audit trail's actual costs add up to {audited:g} tokens, the sandbox charged "
                        f"{expected:g} for answers it delivered ({state['tokens_consumed_total']:g} in total)")
    return problems


def time_efficiency(consumed: float, initial_balance: float, refill_offered: float) -> float:
    """The ideal time to spend the tokens consumed at the refill rate, divided by the time taken.

    refill_offered is what the refill rate added up to over the run (tokens);
    the starting balance is taken off the consumed tokens so that it does not
    flatter the figure. 1.0 means every refill was spent as it came.
    """
    if refill_offered <= 0:
        return 0.0
    return max(0.0, consumed - initial_balance) / refill_offered
