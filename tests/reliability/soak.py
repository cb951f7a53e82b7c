"""The soak: N Celery workers ingest from the sandbox for a given time while faults come one after another.

`run_soak` starts the sandbox and the workers (the private Redis and the
database are the caller's), queues ingestion on a short schedule, injects the
faults of FAULT_SCHEDULE in turn, then clears them, lets every deal query
finish one clean run, stops the workers and checks the invariants. Django must
be set up against the same database and Redis before it is called.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.reliability import invariants
from tests.reliability.processes import SandboxProcess, SoakConfig, TaskSchedule, WorkerProcess
from tests.reliability.servers import PrivateRedis

logger = logging.getLogger(__name__)

TICK_SECONDS = 0.25
DRAIN_SECONDS = 90
REDIS_OUTAGE_SECONDS = 3.0
PLAN_CUT_SECONDS = 1.0


@dataclass
class SoakOptions:
    seconds: float
    workers: int
    domains: tuple[int, ...] = (1, 2, 3, 4)
    fault_interval_seconds: float = 5.0
    faults: bool = True


@dataclass
class SoakState:
    """What the fault actions act on and what they record."""

    config: SoakConfig
    redis: PrivateRedis
    sandbox: SandboxProcess
    workers: list[WorkerProcess]
    base_refill_rate: float
    refill_rate: float
    stopping: list[WorkerProcess] = field(default_factory=list)
    worker_serial: int = 0
    faults_applied: list[str] = field(default_factory=list)
    # The sandbox's valid ASINs per domain when the faults ended: all of them must be stored.
    asins_before: dict[int, set[str]] = field(default_factory=dict)
    # 429s returned right after a plan cut or the fourfold cost jump, before any response could inform the ledger.
    unavoidable_429: int = 0

    def new_worker(self) -> WorkerProcess:
        self.worker_serial += 1
        worker = WorkerProcess(f"soak{self.worker_serial}", self.config, self.sandbox.url).start()
        self.workers.append(worker)
        return worker

    def set_refill_rate(self, rate: float) -> None:
        self.sandbox.control(refill_rate=rate)
        self.refill_rate = rate


def _sandbox_faults(*specs: str) -> Callable[[SoakState], str]:
    def apply(state: SoakState) -> str:
        state.sandbox.control(faults=list(specs))
        return "sandbox faults " + ", ".join(specs)
    return apply


def _plan_change(factor: float) -> Callable[[SoakState], str]:
    def apply(state: SoakState) -> str:
        before = state.sandbox.state()["answers_429"]
        state.set_refill_rate(state.base_refill_rate * factor)
        if factor < 1:
            # Until a response carries the new rate, the ledger projects refills at the old one; a 429 in that
            # moment is the plan's doing, and its answer reconciles the ledger at once.
            time.sleep(PLAN_CUT_SECONDS)
            state.unavoidable_429 += state.sandbox.state()["answers_429"] - before
        return f"refill rate set to {state.refill_rate:g} per minute"
    return apply


def _costs_times_four(state: SoakState) -> str:
    before = state.sandbox.state()["answers_429"]
    state.sandbox.control(cost_multiplier=4)
    # Calls granted on the old estimate are charged four times as much. Until their responses teach the
    # ledger the new cost, Keepa's balance can reach zero before the ledger's does.
    time.sleep(PLAN_CUT_SECONDS)
    state.unavoidable_429 += state.sandbox.state()["answers_429"] - before
    return "every cost multiplied by 4"


def _add_deals(state: SoakState) -> str:
    for domain in (1, 2):
        state.sandbox.control(add_deals=40, domain=domain)
    return "40 new deals added in domains 1 and 2"


def _redis_restart(state: SoakState) -> str:
    state.redis.restart(keep_data=False)
    return "Redis killed and started empty (ledger, locks and queue lost)"


def _redis_outage(state: SoakState) -> str:
    state.redis.stop(keep_data=True)
    time.sleep(REDIS_OUTAGE_SECONDS)
    state.redis.start()
    return f"Redis unreachable for {REDIS_OUTAGE_SECONDS:g} s, then back with its data"


def _kill_worker(state: SoakState) -> str:
    victim = next((worker for worker in state.workers if worker.alive()), None)
    if victim is None:
        return "no worker to kill"
    victim.sigkill()
    state.workers.remove(victim)
    replacement = state.new_worker()
    return f"worker {victim.name} killed with SIGKILL; {replacement.name} started"


def _terminate_worker(state: SoakState) -> str:
    victim = next((worker for worker in state.workers if worker.alive()), None)
    if victim is None:
        return "no worker to stop"
    victim.signal(signal.SIGTERM)
    state.workers.remove(victim)
    state.stopping.append(victim)
    replacement = state.new_worker()
    return f"worker {victim.name} sent SIGTERM; {replacement.name} started"


FAULT_SCHEDULE: list[tuple[str, Callable[[SoakState], str]]] = [
    ("5xx burst", _sandbox_faults("500:deal@next=3", "503:deal@next=2")),
    ("new deals", _add_deals),
    ("timeouts", _sandbox_faults("timeout:deal@next=2")),
    ("worker SIGTERM", _terminate_worker),
    ("truncated JSON", _sandbox_faults("truncated:deal@next=2")),
    ("plan change up", _plan_change(3.0)),
    ("Redis restart", _redis_restart),
    ("HTML error page", _sandbox_faults("html:deal@next=2")),
    ("plan change down", _plan_change(0.5)),
    ("worker SIGKILL", _kill_worker),
    ("200 with error object", _sandbox_faults("error200:deal@next=2")),
    ("costs x4", _costs_times_four),
    ("Redis unreachable", _redis_outage),
]


def clear_faults(state: SoakState) -> None:
    state.sandbox.control(clear_faults=True, cost_multiplier=1)
    if state.refill_rate != state.base_refill_rate:
        state.set_refill_rate(state.base_refill_rate)


def create_queries(domains: tuple[int, ...]) -> list[str]:
    """One active deal query per domain, each a copy of the default query's selection with its domain."""
    from deals.models import DealQuery

    template = DealQuery.objects.get(name="amazon-com-all")
    names = []
    for domain in domains:
        if domain == template.domain:
            names.append(template.name)
            continue
        name = f"soak-domain-{domain}"
        DealQuery.objects.update_or_create(
            name=name, defaults={"selection": {**template.selection, "domainId": domain}, "domain": domain,
                                 "is_active": True},
        )
        names.append(name)
    return names


def run_soak(options: SoakOptions, config: SoakConfig, redis: PrivateRedis) -> invariants.Figures:
    """Run the soak and return its figures and violations. Every process it starts is stopped before it returns."""
    from django.conf import settings

    figures = invariants.Figures()
    names = create_queries(options.domains)
    sandbox = SandboxProcess(config)
    state = SoakState(config, redis, sandbox, [], config.refill_rate, config.refill_rate)
    try:
        sandbox.start()
        for _ in range(options.workers):
            state.new_worker()
        for worker in state.workers:
            worker.wait_ready()

        started = time.monotonic()
        offered = _load(options, state, names, started)
        elapsed = time.monotonic() - started

        clear_faults(state)
        drain_started = time.monotonic()
        figures.add(_drain(state, names))
        # The runs of the drain spend tokens too, so its time counts in the efficiency.
        drain_seconds = time.monotonic() - drain_started
        offered += state.refill_rate / 60 * drain_seconds
        elapsed += drain_seconds
    finally:
        for worker in state.workers + state.stopping:
            worker.stop()
        sandbox_state = _final_state(sandbox, options.domains, state.asins_before)
        sandbox.stop()

    figures.add(invariants.check_runs_final())
    figures.add(invariants.check_redis_leftovers(redis.client(), config.key_prefix))
    figures.add(invariants.check_tokens(sandbox_state["totals"], float(settings.KEEPA_MAX_DEFICIT),
                                        unavoidable_429=state.unavoidable_429))
    catalogue = sandbox.catalogue()
    for domain in options.domains:
        before, after = sandbox_state["asins_before"][domain], sandbox_state["asins_after"][domain]
        figures.add(invariants.check_deals(domain, before, after, catalogue, sandbox_state["now_ms"]))

    figures.values.update(_figures(options, state, sandbox_state, elapsed, offered))
    return figures


def _load(options: SoakOptions, state: SoakState, names: list[str], started: float) -> float:
    """Queue runs and inject faults until the time is up. Return the refill tokens offered meanwhile."""
    schedule = TaskSchedule(state.config)
    deadline = started + options.seconds
    # Faults stop a little before the end, so the last one's effects show in the checks, not in the drain.
    faults_until = deadline - min(options.fault_interval_seconds, options.seconds / 4)
    next_fault = started + options.fault_interval_seconds
    fault_index = 0
    offered = 0.0
    last = started
    while (now := time.monotonic()) < deadline:
        offered += state.refill_rate / 60 * (now - last)
        last = now
        schedule.queue(names, max_queued=len(names))
        if options.faults and now >= next_fault and now < faults_until:
            clear_faults(state)
            name, apply = FAULT_SCHEDULE[fault_index % len(FAULT_SCHEDULE)]
            description = apply(state)
            logger.info("Soak fault %s: %s.", name, description)
            state.faults_applied.append(f"{name}: {description}")
            fault_index += 1
            next_fault = time.monotonic() + options.fault_interval_seconds
        for worker in list(state.workers):
            if not worker.alive():
                logger.warning("Worker %s exited by itself; starting another.", worker.name)
                state.workers.remove(worker)
                state.new_worker()
        time.sleep(TICK_SECONDS)
    return offered + state.refill_rate / 60 * (time.monotonic() - last)


def _drain(state: SoakState, names: list[str]) -> list[str]:
    """Queue runs until every deal query has one run that succeeded after the faults ended."""
    from django.utils import timezone

    from deals.models import IngestionRun

    for domain in _domains(names):
        state.asins_before[domain] = set(state.sandbox.state(domain=domain, asins=True)["valid_asins"])
    cleared_at = timezone.now()
    schedule = TaskSchedule(state.config)
    deadline = time.monotonic() + DRAIN_SECONDS
    pending = set(names)
    while pending and time.monotonic() < deadline:
        done = set(
            IngestionRun.objects.filter(query__name__in=pending, status="succeeded", started_at__gte=cleared_at)
            .values_list("query__name", flat=True)
        )
        pending -= done
        schedule.queue(sorted(pending), max_queued=len(pending))
        time.sleep(TICK_SECONDS)
    if pending:
        return [f"no run of {sorted(pending)} succeeded within {DRAIN_SECONDS} s after the faults ended"]
    return []


def _domains(names: list[str]) -> list[int]:
    from deals.models import DealQuery

    return list(DealQuery.objects.filter(name__in=names).order_by("domain").values_list("domain", flat=True))


def _final_state(sandbox: SandboxProcess, domains: tuple[int, ...], asins_before: dict[int, set[str]]
                 ) -> dict[str, Any]:
    asins_after = {domain: set(sandbox.state(domain=domain, asins=True)["valid_asins"]) for domain in domains}
    return {
        "totals": sandbox.state(),
        "asins_after": asins_after,
        "asins_before": asins_before,
        "now_ms": int(time.time() * 1000),
    }


def _figures(options: SoakOptions, state: SoakState, sandbox_state: dict[str, Any], elapsed: float,
             offered: float) -> dict[str, Any]:
    from deals.models import Deal, IngestionRun

    totals = sandbox_state["totals"]
    runs = _run_counts(IngestionRun)
    return {
        "duration_seconds": round(elapsed, 1),
        "workers": options.workers,
        "deal_queries": len(options.domains),
        "deals_stored": Deal.objects.count(),
        "ingestion_runs": runs,
        "tokens_consumed": totals["tokens_consumed_total"],
        "tokens_charged_unanswered": totals["tokens_charged_unanswered"],
        "audit_actual_total": invariants.audit_actual_total(),
        "answers_429": totals["answers_429"],
        "answers_429_after_change": state.unavoidable_429,
        "answers_429_token_endpoint": totals["answers_429_by_endpoint"].get("token", 0),
        "answers_429_avoidable": (
            totals["answers_429"] - state.unavoidable_429 - totals["answers_429_by_endpoint"].get("token", 0)
        ),
        "lowest_balance": totals["lowest_balance"],
        "requests": totals["requests"],
        "faults_injected_by_sandbox": totals["faults_injected"],
        "refill_tokens_offered": round(offered, 1),
        "time_efficiency": round(
            invariants.time_efficiency(totals["tokens_consumed_total"], state.config.initial_tokens, offered), 3
        ),
        "faults_applied": state.faults_applied,
    }


def _run_counts(model: Any) -> dict[str, int]:
    from django.db.models import Count

    return {row["status"]: row["n"] for row in model.objects.values("status").annotate(n=Count("id"))}
