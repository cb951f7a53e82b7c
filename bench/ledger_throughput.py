"""Reservation throughput and latency of the token ledger on real Redis.

    .venv/bin/python bench/ledger_throughput.py [--short]

Each client thread grants a reservation and closes it, in a loop, against a
ledger whose balance never runs out, so the figures measure the Redis round
trips alone (no Keepa calls, no audit rows). Round trips are counted from
Redis INFO commandstats (EVALSHA calls) before and after each run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dealsite.settings")


def script_calls(client) -> int:
    stats = client.info("commandstats")
    return sum(stats.get(name, {}).get("calls", 0) for name in ("cmdstat_evalsha", "cmdstat_eval"))


def run(clients: int, seconds: float, prefix: str) -> dict:
    from tokens.manager import TokenManager

    manager = TokenManager("bench-key", key_prefix=prefix, audit=False)
    # A huge refill rate and balance, so no grant ever waits.
    manager.update_after_call(1e12, refill_in=60_000, refill_rate=1e12)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    stop = threading.Event()

    def client_loop(index: int) -> None:
        while not stop.is_set():
            started = time.perf_counter()
            reservation = manager.request_permission_for_call(1.5, max_wait=0)
            latencies[index].append(time.perf_counter() - started)
            reservation.close_as_spent()

    calls_before = script_calls(manager.ledger.client)
    threads = [threading.Thread(target=client_loop, args=(index,)) for index in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    calls = script_calls(manager.ledger.client) - calls_before
    manager.ledger.client.delete(*manager.ledger.all_keys())

    samples = sorted(value for per_client in latencies for value in per_client)
    grants = len(samples)
    return {
        "clients": clients,
        "grants": grants,
        "grants_per_second": grants / elapsed,
        "p50_ms": 1000 * statistics.median(samples),
        "p99_ms": 1000 * samples[min(grants - 1, int(0.99 * grants))],
        # Each loop is one grant and one close; the grant is the reserve script alone.
        "round_trips_per_grant": calls / grants - 1 if grants else 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="Run each client count for 1 s instead of 5 s.")
    options = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings

    seconds = 1.0 if options.short else 5.0
    prefix = f"{settings.REDIS_KEY_PREFIX}:bench-throughput:{uuid.uuid4().hex[:8]}"
    results = [run(clients, seconds, f"{prefix}:{clients}") for clients in (1, 8, 32)]

    for result in results:
        print(
            f"clients {result['clients']:>2}: {result['grants_per_second']:8.0f} grants/s, "
            f"p50 {result['p50_ms']:.3f} ms, p99 {result['p99_ms']:.3f} ms, "
            f"{result['round_trips_per_grant']:.2f} Redis round trips per grant"
        )
    summary = ", ".join(
        f"{result['clients']} clients {result['grants_per_second']:.0f}/s p99 {result['p99_ms']:.2f} ms"
        for result in results
    )
    print(f"ledger_throughput: {summary}; round trips per grant "
          f"{max(result['round_trips_per_grant'] for result in results):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
