"""Many processes and threads reserving against one ledger: the floor is never passed, every token accounted for."""

from __future__ import annotations

import multiprocessing
import os
import random
import threading
import time
import uuid

import pytest
from django.db import connection, connections

# The ledger is imported inside functions, because spawned children import
# this module before they set Django up.

PROCESSES = 8
THREADS = 8
RUN_SECONDS = 2.0
INTERVAL_MS = 100
# 6000 per minute is 10 tokens per 100 ms refill; the cap (360000) is never reached.
REFILL_RATE = 6000.0
PER_REFILL = REFILL_RATE * INTERVAL_MS / 60_000


def reserve_for_a_while(prefix: str, seed: int, seconds: float) -> list[tuple[str, float, float]]:
    """Reserve random costs until `seconds` pass; return (id, cost, balance after) per grant."""
    from tokens.manager import TokenManager

    manager = TokenManager("test-key-not-a-secret", key_prefix=prefix, refill_interval_ms=INTERVAL_MS,
                           task=f"concurrency-{seed}")
    rng = random.Random(seed)
    grants = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        cost = round(rng.uniform(0.5, 40.0), 3)
        reservation = manager.request_permission_for_call(cost, max_wait=None)
        grants.append((reservation.id, reservation.cost, reservation.balance_after))
        reservation.close_as_spent()
    connections.close_all()
    return grants


def process_worker(database_name: str, prefix: str, seed: int, seconds: float) -> list[tuple[str, float, float]]:
    import django
    from django.conf import settings

    django.setup()
    # Children of the test run write audit rows to the test database, not the development one.
    settings.DATABASES["default"]["NAME"] = database_name
    return reserve_for_a_while(prefix, seed, seconds)


@pytest.mark.django_db(transaction=True)
def test_concurrent_reservations_hold_floor(redis_key_prefix):
    from tokens.manager import TokenManager
    from tokens.models import TokenEvent

    prefix = f"{redis_key_prefix}:tokens-concurrency:{uuid.uuid4().hex[:8]}"
    manager = TokenManager("test-key-not-a-secret", key_prefix=prefix, refill_interval_ms=INTERVAL_MS)
    manager.update_after_call(50.0, refill_in=INTERVAL_MS, refill_rate=REFILL_RATE)
    start = manager.ledger.snapshot()
    lowest = []
    stop_watching = threading.Event()

    def watch_balance() -> None:
        while not stop_watching.is_set():
            lowest.append(manager.status().projected_balance)
            time.sleep(0.01)

    watcher = threading.Thread(target=watch_balance)
    watcher.start()
    thread_results: list[list] = [[] for _ in range(THREADS)]

    def thread_worker(index: int) -> None:
        thread_results[index] = reserve_for_a_while(prefix, 1000 + index, RUN_SECONDS)

    context = multiprocessing.get_context("spawn")
    database_name = connection.settings_dict["NAME"]
    with context.Pool(PROCESSES) as pool:
        pending = pool.starmap_async(
            process_worker, [(database_name, prefix, seed, RUN_SECONDS + 1.0) for seed in range(PROCESSES)]
        )
        # Spawned children take a moment to import Django; start the threads meanwhile.
        threads = [threading.Thread(target=thread_worker, args=(index,)) for index in range(THREADS)]
        for thread in threads:
            thread.start()
        process_results = pending.get(timeout=60)
        for thread in threads:
            thread.join(timeout=30)
    stop_watching.set()
    watcher.join()
    end = manager.ledger.snapshot()

    grants = [grant for result in process_results + thread_results for grant in result]
    granted_total = sum(cost for _, cost, _ in grants)
    refills = round((float(end["projected_next_refill_ms"]) - float(start["next_refill_ms"])) / INTERVAL_MS)
    movement = 50.0 + refills * PER_REFILL - float(end["projected_balance"])

    assert sum(1 for result in process_results if result) == PROCESSES
    assert sum(1 for result in thread_results if result) == THREADS
    assert min(balance_after for _, _, balance_after in grants) >= manager.MAX_DEFICIT - 1e-9
    assert min(lowest) >= manager.MAX_DEFICIT - 1e-9
    assert granted_total == pytest.approx(movement, abs=1e-6)

    events = TokenEvent.objects.filter(kind=TokenEvent.Kind.GRANT, reservation_id__in=[grant[0] for grant in grants])
    assert events.count() == len(grants)
    assert sum(event.estimated_cost for event in events) == pytest.approx(granted_total, abs=1e-6)
    workers = set(events.values_list("worker", flat=True))
    assert len(workers) == PROCESSES + 1
    assert f":{os.getpid()}" in "".join(workers)

    manager.ledger.client.delete(*manager.ledger.all_keys())
