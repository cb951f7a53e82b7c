"""Run the Keepa-compatible sandbox server on 127.0.0.1."""

from __future__ import annotations

import logging
import secrets
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from deals.sandbox.answers import wall_clock_ms
from deals.sandbox.faults import FAULT_NAMES, parse_fault_spec
from deals.sandbox.persistence import SandboxAnchor, load_anchor, save_anchor
from deals.sandbox.server import DEFAULT_CATALOGUE_SIZE, DEFAULT_REFILL_RATE, SandboxServer, check_loopback

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Serve a local Keepa-compatible API (/token, /deal, /product) with Keepa's token rules, a reproducible "
        "deal catalogue and injectable faults, plus /_sandbox/state and /_sandbox/control."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="Loopback address to bind (default 127.0.0.1).")
        parser.add_argument("--port", type=int, default=8765, help="TCP port; 0 picks a free one (default 8765).")
        parser.add_argument("--key", help="The only API key accepted; a random one is generated and printed if unset.")
        parser.add_argument("--seed", type=int, help="Seed of the deal catalogue and of rate faults (default 0).")
        parser.add_argument("--refill-rate", type=float, default=DEFAULT_REFILL_RATE, help="Tokens per minute.")
        parser.add_argument("--refill-interval-ms", type=int, default=60_000, help="Milliseconds between refills.")
        parser.add_argument("--initial-tokens", type=float, help="Starting balance (default 60 minutes of refill).")
        parser.add_argument("--deals", type=int, default=DEFAULT_CATALOGUE_SIZE, help="Deals in the catalogue.")
        parser.add_argument("--new-deals-per-minute", type=float, default=0.0, help="Deals that appear per minute.")
        parser.add_argument("--cost-multiplier", type=float, default=1.0, help="Factor applied to every cost.")
        parser.add_argument("--latency-ms", type=int, default=0, help="Delay added to every API response, in ms.")
        parser.add_argument(
            "--fault",
            action="append",
            default=[],
            metavar="SPEC",
            help=(
                "Inject a fault, repeatable: KIND[:ENDPOINT]@WHEN with WHEN a list of request numbers (500@3,7), "
                "rate=FRACTION (timeout@rate=0.05) or next=N. KIND is an HTTP status 400-599 or "
                f"{', '.join(FAULT_NAMES)}."
            ),
        )
        parser.add_argument(
            "--persistent",
            action="store_true",
            help="Keep the seed and anchor time in VAR_DIR/sandbox/ so a restart serves the same deals.",
        )
        parser.add_argument("--quiet", action="store_true", help="Do not log a line per request.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            host = check_loopback(options["host"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        for spec in options["fault"]:
            try:
                parse_fault_spec(spec)
            except ValueError as exc:
                raise CommandError(str(exc)) from None

        seed, anchor_ms = self._seed_and_anchor(options)
        key = options["key"] or secrets.token_hex(16)
        server = self._build_server(options, host, key, seed, anchor_ms)
        try:
            server.start()
        except OSError as exc:
            raise CommandError(f"Cannot listen on {host}:{options['port']} ({exc}): choose another --port.") from None

        self.stdout.write(f"Keepa sandbox listening on {server.url} with key {key}")
        self.stdout.flush()
        self._serve_until_signal(server)

    def _seed_and_anchor(self, options: dict[str, Any]) -> tuple[int, int]:
        seed = options["seed"] if options["seed"] is not None else 0
        anchor_ms = wall_clock_ms() // 60_000 * 60_000
        if not options["persistent"]:
            return seed, anchor_ms

        path = settings.VAR_DIR / "sandbox" / "anchor.json"
        try:
            stored = load_anchor(path)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if stored is not None and (options["seed"] is None or options["seed"] == stored.seed):
            return stored.seed, stored.anchor_ms

        if stored is not None:
            self.stdout.write(f"--seed {seed} differs from the stored seed {stored.seed}: starting a new catalogue.")
        save_anchor(path, SandboxAnchor(seed, anchor_ms))
        return seed, anchor_ms

    def _build_server(self, options: dict[str, Any], host: str, key: str, seed: int, anchor_ms: int) -> SandboxServer:
        try:
            return SandboxServer(
                key,
                host=host,
                port=options["port"],
                refill_rate=options["refill_rate"],
                refill_interval_ms=options["refill_interval_ms"],
                initial_tokens=options["initial_tokens"],
                seed=seed,
                catalogue_size=options["deals"],
                new_deals_per_minute=options["new_deals_per_minute"],
                cost_multiplier=options["cost_multiplier"],
                latency_ms=options["latency_ms"],
                faults=options["fault"],
                anchor=anchor_ms,
                quiet=options["quiet"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None

    def _serve_until_signal(self, server: SandboxServer) -> None:
        def request_stop(signal_number: int, _frame: object) -> None:
            logger.info("Keepa sandbox received signal %d; stopping.", signal_number)
            server.stop()

        previous = {number: signal.signal(number, request_stop) for number in (signal.SIGINT, signal.SIGTERM)}
        try:
            while not server.wait(0.5):
                pass
        finally:
            server.stop()
            for number, handler in previous.items():
                signal.signal(number, handler)
        self.stdout.write("Keepa sandbox stopped.")
