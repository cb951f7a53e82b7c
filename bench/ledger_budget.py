"""Token budget use: worker processes reserve, call the sandbox and reconcile, with mixed costs.

    .venv/bin/python bench/ledger_budget.py [--short]

The Keepa sandbox runs in this process on 127.0.0.1 with a high refill rate
and a short refill interval. Worker processes (spawned) loop: estimate the
cost from the ledger's learned costs, reserve, call deal (page 0) or product
(1 to 20 ASINs), and reconcile through the client's response hook. The run is
repeated with costs exact and with the sandbox charging four times the
documented cost. Reported per run: time efficiency (tokens consumed beyond the
starting balance, divided by the refill rate, divided by the time taken), the
429 count, and the lowest balance the sandbox saw.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import secrets
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dealsite.settings")

REFILL_RATE = 3000.0  # tokens per minute: 5 tokens per 100 ms refill
REFILL_INTERVAL_MS = 100
INITIAL_TOKENS = 100.0
WORKERS = 6


def worker(url: str, api_key: str, prefix: str, asins: list[str], seed: int, seconds: float) -> dict:  # noqa: PLR0917
    import django

    django.setup()
    from deals.keepa import KeepaClient, KeepaError
    from tokens.manager import TokenManager

    client = KeepaClient(api_key, base_url=url, refill_interval_ms=REFILL_INTERVAL_MS, max_retries=0)
    # The manager syncs through the same client, so every request goes to the sandbox.
    manager = TokenManager(api_key, key_prefix=prefix, client=client, refill_interval_ms=REFILL_INTERVAL_MS,
                           audit=False, task=f"bench-{seed}")
    client.response_hook = manager.observe
    rng = random.Random(seed)
    calls = errors = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if rng.random() < 0.5:
                with manager.reserve(kind="deal", default=5, max_wait=None):
                    client.deal({"domainId": 1, "dateRange": 0, "page": 0})
            else:
                batch = rng.sample(asins, rng.randint(1, 20))
                with manager.reserve(kind="product", units=len(batch), default=len(batch), max_wait=None):
                    client.product(batch)
            calls += 1
        except KeepaError:
            errors += 1
    return {"calls": calls, "errors": errors}


def run(cost_multiplier: float, seconds: float) -> dict:
    from django.conf import settings

    from deals.sandbox.server import SandboxServer

    api_key = secrets.token_hex(16)
    prefix = f"{settings.REDIS_KEY_PREFIX}:bench-budget:{uuid.uuid4().hex[:8]}"
    sandbox = SandboxServer(api_key, refill_rate=REFILL_RATE, refill_interval_ms=REFILL_INTERVAL_MS,
                            initial_tokens=INITIAL_TOKENS, cost_multiplier=cost_multiplier, catalogue_size=400)
    with sandbox:
        asins = sorted(sandbox.valid_asins())[:200]
        context = multiprocessing.get_context("spawn")
        with context.Pool(WORKERS) as pool:
            # Let the children import Django before the clock starts.
            pool.map(time.sleep, [0.0] * WORKERS)
            started_stats = sandbox.stats()
            started = time.monotonic()
            results = pool.starmap(
                worker, [(sandbox.url, api_key, prefix, asins, seed, seconds) for seed in range(WORKERS)]
            )
            elapsed = time.monotonic() - started
        stats = sandbox.stats()

    from django_redis import get_redis_connection

    client = get_redis_connection("default")
    for key in client.scan_iter(match=f"{prefix}:*"):
        client.delete(key)

    consumed = stats["tokens_consumed_total"] - started_stats["tokens_consumed_total"]
    ideal_seconds = (consumed - INITIAL_TOKENS) / (REFILL_RATE / 60)
    return {
        "cost_multiplier": cost_multiplier,
        "seconds": elapsed,
        "calls": sum(result["calls"] for result in results),
        "errors": sum(result["errors"] for result in results),
        "consumed": consumed,
        "efficiency": ideal_seconds / elapsed,
        "answers_429": stats["answers_429"],
        "lowest_balance": stats["lowest_balance"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="Run each case for 4 s instead of 30 s.")
    options = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings

    seconds = 4.0 if options.short else 30.0
    results = [run(multiplier, seconds) for multiplier in (1.0, 4.0)]
    for result in results:
        print(
            f"costs x{result['cost_multiplier']:g}: {result['calls']} calls ({result['errors']} errors) in "
            f"{result['seconds']:.1f} s, {result['consumed']:.0f} tokens consumed, "
            f"time efficiency {result['efficiency']:.3f}, {result['answers_429']} answers 429, "
            f"lowest balance {result['lowest_balance']:.1f} (floor {settings.KEEPA_MAX_DEFICIT:g})"
        )
    summary = "; ".join(
        f"x{result['cost_multiplier']:g} efficiency {result['efficiency']:.3f} 429s {result['answers_429']} "
        f"lowest {result['lowest_balance']:.1f}"
        for result in results
    )
    print(f"ledger_budget: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
