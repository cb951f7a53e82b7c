"""SandboxServer: the Keepa-compatible sandbox as an HTTP server on the loopback interface.

Tests and benchmarks start it in-process; `manage.py keepa_sandbox` starts it
from the command line. The same control and statistics are reachable over
HTTP at /_sandbox/state (GET) and /_sandbox/control (POST JSON), both taking
the sandbox key as the `key` parameter.
"""

from __future__ import annotations

import gzip
import ipaddress
import logging
import socket
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from deals.sandbox.answers import Answer, wall_clock_ms
from deals.sandbox.api import SandboxApi
from deals.sandbox.catalogue import CatalogueEntry, DealCatalogue
from deals.sandbox.faults import Fault, parse_fault_spec
from dealsite.masking import mask_secrets

logger = logging.getLogger(__name__)

DEFAULT_REFILL_RATE = 20
DEFAULT_CATALOGUE_SIZE = 400
MAX_BODY_BYTES = 1_000_000


def check_loopback(host: str) -> str:
    """Return the IPv4 loopback address for `host`, or raise ValueError for any other address."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None or address.version != 4 or not address.is_loopback:
        raise ValueError(f"Host {host!r} is not an IPv4 loopback address: the sandbox binds to 127.0.0.1 only.")
    return host


class SandboxServer:
    def __init__(
        self,
        api_key: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        refill_rate: float = DEFAULT_REFILL_RATE,
        refill_interval_ms: int = 60_000,
        initial_tokens: float | None = None,
        seed: int = 0,
        catalogue_size: int = DEFAULT_CATALOGUE_SIZE,
        new_deals_per_minute: float = 0.0,
        cost_multiplier: float = 1.0,
        latency_ms: int = 0,
        faults: tuple[str | Fault, ...] | list[str | Fault] = (),
        anchor: datetime | int | None = None,
        quiet: bool = True,
    ) -> None:
        if not api_key:
            raise ValueError("The sandbox key is empty: pass the key clients must send.")
        self.api_key = api_key
        self.host = check_loopback(host)
        self.port = port
        self.quiet = quiet
        self.anchor_ms = _anchor_ms(anchor)
        self._stop_event = threading.Event()
        self.api = SandboxApi(
            api_key,
            refill_rate=refill_rate,
            refill_interval_ms=refill_interval_ms,
            initial_tokens=initial_tokens,
            seed=seed,
            catalogue_size=catalogue_size,
            new_deals_per_minute=new_deals_per_minute,
            cost_multiplier=cost_multiplier,
            latency_ms=latency_ms,
            faults=[spec if isinstance(spec, Fault) else parse_fault_spec(spec, seed=seed) for spec in faults],
            anchor_ms=self.anchor_ms,
            stop_event=self._stop_event,
        )
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def catalogue(self) -> DealCatalogue:
        return self.api.catalogue

    def start(self) -> SandboxServer:
        self._stop_event.clear()
        self._httpd = SandboxHTTPServer((self.host, self.port), SandboxRequestHandler, self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="keepa-sandbox", daemon=True
        )
        self._thread.start()
        logger.info("Keepa sandbox started on %s.", self.url)
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._stop_event.set()  # wakes requests that sleep for latency or a timeout fault
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        logger.info("Keepa sandbox on %s stopped.", self.url)

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def wait(self, seconds: float | None = None) -> bool:
        """Block until stop() is called or `seconds` pass; returns whether the server was stopped."""
        return self._stop_event.wait(seconds)

    # Control, safe to call from any thread

    def add_deals(self, count: int, *, domain: int = 1) -> list[CatalogueEntry]:
        return self.api.catalogue.add_deals(count, domain, wall_clock_ms())

    def valid_asins(self, *, domain: int = 1) -> set[str]:
        """Return the ASINs of the well-formed deals the sandbox serves now."""
        return self.api.catalogue.valid_asins(domain, wall_clock_ms())

    def set_refill_rate(self, refill_rate: float) -> None:
        self.api.bucket.set_refill_rate(refill_rate)

    def set_cost_multiplier(self, multiplier: float) -> None:
        self.api.set_cost_multiplier(multiplier)

    def set_tokens_left(self, tokens_left: float) -> None:
        self.api.bucket.set_balance(tokens_left)

    def inject_fault(
        self,
        kind: str | int,
        *,
        requests: tuple[int, ...] | list[int] = (),
        rate: float = 0.0,
        next: int | None = None,
        endpoint: str | None = None,
        timeout_seconds: float = 65.0,
    ) -> Fault:
        """Add a fault for the given request numbers, a seeded share of requests, or the next N requests."""
        fault = Fault(
            str(kind), requests=frozenset(requests), rate=rate, remaining=next, endpoint=endpoint,
            timeout_seconds=timeout_seconds,
        )
        self.api.add_fault(fault)
        return fault

    def clear_faults(self) -> None:
        self.api.clear_faults()

    def stats(self) -> dict[str, Any]:
        """Return the balance, tokens consumed in total, request count, count of 429 responses, lowest balance,
        and per-endpoint request counts."""
        return self.api.stats()


class SandboxHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type, sandbox: SandboxServer) -> None:
        self.sandbox = sandbox
        super().__init__(address, handler)


class SandboxRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SandboxHTTPServer

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in two writes; without TCP_NODELAY, Nagle's algorithm and delayed
        # acknowledgements hold the body back by about 40 ms on loopback.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def _handle(self, method: str) -> None:
        parts = urlsplit(self.path)
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        body = self._read_body()
        answer = self.server.sandbox.api.handle(method, parts.path, params, body)
        if answer.drop:
            self._drop(answer)
            return
        self._write(answer)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(min(length, MAX_BODY_BYTES)) if length > 0 else b""

    def _drop(self, answer: Answer) -> None:
        if answer.hang_seconds:
            self.server.sandbox.wait(answer.hang_seconds)
        self.close_connection = True

    def _write(self, answer: Answer) -> None:
        body = answer.body
        gzipped = "gzip" in self.headers.get("Accept-Encoding", "") and body
        if gzipped:
            body = gzip.compress(body, compresslevel=5)
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(body)))
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.sandbox.quiet:
            logger.info("%s %s", self.address_string(), mask_secrets(format % args))

    def log_error(self, format: str, *args: Any) -> None:
        logger.warning("%s %s", self.address_string(), mask_secrets(format % args))


def _anchor_ms(anchor: datetime | int | None) -> int:
    if anchor is None:
        # Whole minutes, so that Keepa-minute creation dates do not depend on the second of start.
        return wall_clock_ms() // 60_000 * 60_000
    if isinstance(anchor, datetime):
        if anchor.tzinfo is None:
            raise ValueError(f"Anchor {anchor!r} is naive: pass a timezone-aware datetime.")
        return int(anchor.timestamp() * 1000)
    return int(anchor)
