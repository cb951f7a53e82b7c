#!/usr/bin/env python
"""Print the token state and the first page of deals from Keepa or the local sandbox.

    python manage.py keepa_sandbox --port 8765 --key KEY
    .venv/bin/python scripts/keepa_demo.py --url http://127.0.0.1:8765 --key KEY
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHOWN_DEALS = 10


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8765", help="Base URL of Keepa or the sandbox.")
    parser.add_argument("--key", required=True, help="API key (the sandbox prints its key at start).")
    parser.add_argument("--domain", type=int, default=1, help="Keepa domain id (1 = amazon.com).")
    arguments = parser.parse_args()

    setup_django()
    from deals.keepa import KeepaClient, KeepaError, format_price, image_url, keepa_minutes_to_datetime, price_at
    from deals.keepa.price_types import PriceType

    client = KeepaClient(arguments.key, base_url=arguments.url, domain=arguments.domain, max_retries=1)
    try:
        token = client.token()
        page = client.deal({"dateRange": 1, "priceTypes": [0]}, page=0, sort_type=1)
    except KeepaError as error:
        sys.stderr.write(f"Keepa call failed: {error}\n")
        return 1

    state = token.token_state
    say(f"tokens left {state.tokens_left}, refill rate {state.refill_rate}/min, refill in {state.refill_in} ms")
    say(f"first page: {len(page.deals)} deals, cost {page.tokens_consumed} tokens, {page.tokens_left} left")
    for deal in page.deals[:SHOWN_DEALS]:
        if not isinstance(deal, dict):
            say(f"  (skipped a malformed deal: {str(deal)[:40]!r})")
            continue
        creation_date = deal.get("creationDate")
        created = "?"
        if isinstance(creation_date, int):
            created = f"{keepa_minutes_to_datetime(creation_date):%Y-%m-%d %H:%M}"
        price = format_price(price_at(deal.get("current"), PriceType.AMAZON), arguments.domain) or "no Amazon offer"
        try:
            image = image_url(deal.get("image")) or "no image"
        except ValueError:
            image = "invalid image field"
        say(f"  {deal.get('asin')!s:<10} {price:>14}  {created:<16}  {str(deal.get('title'))[:50]}")
        say(f"  {'':<10} {image}")
    return 0


def say(line: str) -> None:
    sys.stdout.write(line + "\n")


def setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dealsite.settings")
    import django

    django.setup()


if __name__ == "__main__":
    sys.exit(main())
