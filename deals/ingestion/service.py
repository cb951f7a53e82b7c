"""update_recent_deals: fetch the deals Keepa found since the last run of a deal query and store them.

Pages are read newest first (sortType 1) from page 0 and each page is stored
in its own transaction. The run stops at a page that contains a deal older
than the watermark, at a page with fewer than 150 deals, or at a limit.
Deals in the watermark's own Keepa minute are stored unless already stored,
because Keepa times have one-minute resolution. Only a run that reached the
watermark or the last page moves the watermark. Any other stop leaves it, so
the next run reads again from page 0, which the upsert makes idempotent.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.text import Truncator

from deals.ingestion.calls import TokenGate, WaitCallback
from deals.ingestion.enrichment import enrich_and_refresh
from deals.ingestion.upsert import newness, upsert_deals
from deals.ingestion.watermark import advance_watermark, select_newer_deals, unstored_at_watermark
from deals.keepa import (
    InvalidKeyError,
    KeepaClient,
    KeepaError,
    NotFoundError,
    PaymentRequiredError,
)
from deals.locks import QueryLock
from deals.models import DealQuery, IngestionRun
from deals.parsing import DealContext, InvalidDeal, parse_deal
from dealsite.db import save_on_fresh_connection_if_lost
from tokens.manager import TokenManager, TokenRechargeError

logger = logging.getLogger(__name__)

PAGE_SIZE = 150
DEAL_PAGE_COST = 5.0

# Errors after which another run cannot succeed until someone fixes the key, plan or URL.
FATAL_ERRORS = (InvalidKeyError, PaymentRequiredError, NotFoundError)
STOP_REASON_LENGTH = IngestionRun._meta.get_field("stop_reason").max_length
# Statuses whose end is logged at INFO; partial and failed runs are warnings.
FINE_STATUSES = {IngestionRun.Status.SUCCEEDED, IngestionRun.Status.SKIPPED}


@dataclass(frozen=True)
class IngestionOptions:
    """Limits and switches of one run. None for a limit means the setting; 0 means no limit."""

    max_pages: int | None = None
    max_deals: int | None = None
    dry_run: bool = False
    enrich: bool | None = None
    trigger: str = "command"


@dataclass(frozen=True)
class PageProgress:
    """Counters of a run up to and including one page, for progress output."""

    run_id: int
    page: int
    deals_on_page: int
    pages_fetched: int
    deals_created: int
    deals_updated: int
    deals_skipped: int
    tokens_consumed: float
    tokens_left: float | None


ProgressCallback = Callable[[PageProgress], Any]


class IngestionStopped(Exception):
    """A run stopped before it read every new deal. `status` is partial or failed."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def update_recent_deals(
    query: DealQuery | str | None = None,
    options: IngestionOptions | None = None,
    *,
    client: KeepaClient | None = None,
    manager: TokenManager | None = None,
    progress: ProgressCallback | None = None,
    wait_for_tokens: WaitCallback | None = None,
) -> IngestionRun:
    """Fetch and store the deals Keepa found since the deal query's watermark. Return the run record.

    `query` is a DealQuery, its name, or None for the only active query.
    Without `wait_for_tokens`, a wait for tokens longer than the ledger
    accepts ends the run as partial and raises TokenRechargeError, whose
    retry_after a Celery task uses as its countdown. With it, the run passes
    it the seconds and the reason of each wait, sleeps, and requests the
    reservation again.
    Any other exception (a crash in a progress callback, a database error)
    marks the run failed and is raised; pages committed before it stay.
    """
    query = resolve_query(query)
    options = options or IngestionOptions()
    lock = QueryLock(query.pk)
    if not lock.acquire():
        return record_skipped_run(query, options)

    try:
        close_abandoned_runs(query)
        manager = manager or TokenManager(task=f"update_recent_deals {query.name}")
        client = client or KeepaClient(domain=query.domain, response_hook=manager.observe)
        run = IngestionRun.objects.create(
            query=query, trigger=options.trigger, dry_run=options.dry_run, watermark_before=query.watermark
        )
        logger.info("Ingestion run %s of deal query %s started (watermark %s).", run.pk, query.name, query.watermark)
        gate = TokenGate(manager, lock=lock, wait_for_tokens=wait_for_tokens, run=run)
        IngestionJob(query, run, options, client, gate, progress=progress).run()
        return run
    finally:
        lock.release()


def resolve_query(query: DealQuery | str | None) -> DealQuery:
    if isinstance(query, DealQuery):
        return query
    if query is not None:
        return DealQuery.objects.get(name=query)
    return DealQuery.objects.filter(is_active=True).order_by("pk").first() or DealQuery.objects.get(is_active=True)


def close_abandoned_runs(query: DealQuery) -> int:
    """Mark the query's runs still `running` as failed. Call only while holding its ingestion lock.

    A live run holds the lock, so a running run found by the lock's new holder
    belongs to a worker that died (SIGKILL, power loss) and let the lock
    expire. Returns how many runs were closed.
    """
    closed = IngestionRun.objects.filter(query=query, status=IngestionRun.Status.RUNNING).update(
        status=IngestionRun.Status.FAILED,
        finished_at=timezone.now(),
        stop_reason="Abandoned: the worker stopped without ending the run and its ingestion lock expired.",
        error="The worker running this run stopped (killed or lost) before it finished.",
    )
    if closed:
        logger.warning("Closed %s abandoned ingestion runs of deal query %s as failed.", closed, query.name)
    return closed


def record_skipped_run(query: DealQuery, options: IngestionOptions) -> IngestionRun:
    logger.info("Ingestion of deal query %s skipped: another run has its lock.", query.name)
    now = timezone.now()
    return IngestionRun.objects.create(
        query=query,
        trigger=options.trigger,
        dry_run=options.dry_run,
        status=IngestionRun.Status.SKIPPED,
        started_at=now,
        finished_at=now,
        watermark_before=query.watermark,
        watermark_after=query.watermark,
        stop_reason="Another run of this deal query holds the ingestion lock.",
    )


class IngestionJob:
    """The page loop of one run. Counters live on the IngestionRun row and are saved with each page."""

    def __init__(
        self,
        query: DealQuery,
        run: IngestionRun,
        options: IngestionOptions,
        client: KeepaClient,
        gate: TokenGate,
        *,
        progress: ProgressCallback | None,
    ) -> None:
        self.query = query
        self.run_record = run
        self.options = options
        self.client = client
        self.gate = gate
        self.progress = progress
        self.max_pages = _limit(options.max_pages, settings.INGEST_MAX_PAGES)
        self.max_deals = _limit(options.max_deals, settings.INGEST_MAX_DEALS)
        self.enrich = settings.INGEST_ENRICH if options.enrich is None else options.enrich
        self.skip_reasons: Counter[str] = Counter()
        # ASIN -> newness of the copy stored by this run, so an older copy on
        # a later page never overwrites a newer one from an earlier page.
        self.stored_in_run: dict[str, tuple[datetime, datetime]] = {}
        self.created_asins: list[str] = []
        self.newest_created: datetime | None = None
        self.stored_count = 0
        self.lock_lost = False

    def run(self) -> None:
        run = self.run_record
        try:
            complete = self.read_pages()
        except TokenRechargeError as error:
            self.finish(IngestionRun.Status.PARTIAL, f"Waiting for tokens: retry in {error.retry_after:.0f} s.")
            raise
        except IngestionStopped as stop:
            self.finish(stop.status, stop.reason, error=stop.reason)
            return
        except BaseException as error:
            # Pages committed before the crash stay; the watermark has not moved.
            self.finish(IngestionRun.Status.FAILED, "The run crashed.", error=f"{type(error).__name__}: {error}")
            raise

        if complete and not self.options.dry_run and self.newest_created is not None:
            advance_watermark(self.query, self.newest_created)
        status = IngestionRun.Status.SUCCEEDED if complete else IngestionRun.Status.PARTIAL

        if self.enrich and not self.options.dry_run:
            status = self.enrich_deals(status)
        self.finish(status, run.stop_reason)

    def read_pages(self) -> bool:
        """Read and store pages. Return True when every deal newer than the old watermark has been stored."""
        run = self.run_record
        watermark = self.query.watermark
        page = 0
        while True:
            if self.max_pages and page >= self.max_pages:
                run.stop_reason = f"Stopped at the page limit ({self.max_pages} pages)."
                return False

            response = self.fetch_page(page)
            raw_deals = response.deals
            rows = self.parse_page(raw_deals, page)
            selection = select_newer_deals(rows, watermark)
            to_store = selection.newer
            if watermark is not None:
                to_store = to_store + unstored_at_watermark(self.query.domain, selection.at_watermark, watermark)
            to_store = self.drop_stored_in_run(to_store)
            limit_reached = self.apply_deal_limit(to_store)

            self.store_page(to_store, response, page, len(raw_deals))

            if limit_reached:
                run.stop_reason = f"Stopped at the deal limit ({self.max_deals} deals)."
                return False
            if selection.reached_watermark:
                run.stop_reason = f"Reached the watermark on page {page}."
                return True
            if len(raw_deals) < PAGE_SIZE:
                run.stop_reason = f"Page {page} was the last page ({len(raw_deals)} deals)."
                return True
            if self.lock_lost:
                # Another run may hold the query's lock now; one run per query reads pages.
                raise IngestionStopped(
                    IngestionRun.Status.PARTIAL,
                    f"Stopped after page {page}: the ingestion lock expired or Redis lost it.",
                )
            page += 1

    def fetch_page(self, page: int) -> Any:
        try:
            return self.gate.call(
                "deal",
                units=1,
                default=DEAL_PAGE_COST,
                call=lambda: self.client.deal(self.query.selection, page=page, sort_type=1),
            )
        except FATAL_ERRORS as error:
            raise IngestionStopped(IngestionRun.Status.FAILED, f"Page {page}: {error}") from error
        except KeepaError as error:
            # A 429, a 5xx, a truncated body or an error object is never "no
            # more deals": the watermark stays, and the run is partial if it
            # stored pages before the error, failed if it stored none.
            status = IngestionRun.Status.PARTIAL if self.run_record.pages_fetched else IngestionRun.Status.FAILED
            raise IngestionStopped(status, f"Page {page}: {error}") from error

    def parse_page(self, raw_deals: list[Any], page: int) -> list[dict[str, Any]]:
        context = DealContext(
            domain=self.query.domain,
            date_range=self.query.date_range,
            price_type=self.query.price_types[0],
            query_id=self.query.pk,
            now=timezone.now(),
        )
        rows = []
        for position, raw in enumerate(raw_deals):
            try:
                rows.append(parse_deal(raw, context))
            except InvalidDeal as error:
                self.count_skip(error.reason, f"page {page} position {position} ASIN {error.asin}: {error.detail}")
        return rows

    def count_skip(self, reason: str, detail: str) -> None:
        # One log line per reason and run; the rest are counted.
        if reason not in self.skip_reasons:
            logger.warning("Run %s skipped a deal (%s): %s.", self.run_record.pk, reason, detail)
        self.skip_reasons[reason] += 1

    def drop_stored_in_run(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        kept = []
        for row in rows:
            stored = self.stored_in_run.get(row["asin"])
            if stored is not None and newness(row) <= stored:
                self.count_skip("duplicate_asin", f"ASIN {row['asin']} was already stored by this run")
                continue
            kept.append(row)
        return kept

    def apply_deal_limit(self, rows: list[dict[str, Any]]) -> bool:
        """Cut rows to the deal limit in place. Return True when the limit ends the run."""
        if not self.max_deals:
            return False
        room = self.max_deals - self.stored_count
        if len(rows) < room:
            return False
        del rows[room:]
        return True

    def store_page(self, rows: list[dict[str, Any]], response: Any, page: int, deals_on_page: int) -> None:
        run = self.run_record
        counts_before = (run.pages_fetched, run.deals_received, run.deals_created, run.deals_updated)
        skips_before = Counter(self.skip_reasons)
        try:
            with transaction.atomic():
                result = upsert_deals(self.query.domain, rows, dry_run=self.options.dry_run)
                for reason, count in result.skipped.items():
                    self.skip_reasons[reason] += count

                run.pages_fetched += 1
                run.deals_received += deals_on_page
                run.deals_created += result.created
                run.deals_updated += result.updated
                run.deals_skipped = sum(self.skip_reasons.values())
                run.skip_reasons = dict(self.skip_reasons)
                run.save()
        except BaseException:
            # The page was rolled back, so the run's counts must not include it.
            run.pages_fetched, run.deals_received, run.deals_created, run.deals_updated = counts_before
            self.skip_reasons = skips_before
            raise

        self.created_asins.extend(result.created_asins)
        self.stored_count += result.created + result.updated
        for row in rows:
            self.stored_in_run[row["asin"]] = max(newness(row), self.stored_in_run.get(row["asin"], newness(row)))
            created = row["keepa_created_at"]
            if self.newest_created is None or created > self.newest_created:
                self.newest_created = created

        logger.info(
            "Run %s stored page %s: %s deals, %s created, %s updated, %s skipped so far.",
            run.pk, page, deals_on_page, result.created, result.updated, run.deals_skipped,
        )
        self.lock_lost = not self.gate.keep_lock()
        if self.progress is not None:
            self.progress(
                PageProgress(
                    run_id=run.pk,
                    page=page,
                    deals_on_page=deals_on_page,
                    pages_fetched=run.pages_fetched,
                    deals_created=run.deals_created,
                    deals_updated=run.deals_updated,
                    deals_skipped=run.deals_skipped,
                    tokens_consumed=run.tokens_consumed,
                    tokens_left=response.token_state.tokens_left,
                )
            )

    def enrich_deals(self, status: str) -> str:
        run = self.run_record
        try:
            outcome = enrich_and_refresh(self.query, self.created_asins, self.client, self.gate)
        except TokenRechargeError as error:
            run.stop_reason = f"{run.stop_reason} Enrichment stopped to wait for tokens ({error.retry_after:.0f} s)."
            return status
        except KeepaError as error:
            logger.warning("Run %s stopped enrichment after a Keepa error: %s", run.pk, error)
            run.error = f"Enrichment: {error}"
            return IngestionRun.Status.PARTIAL

        run.deals_enriched = outcome.enriched
        run.deals_refreshed = outcome.refreshed
        if outcome.note:
            run.stop_reason = f"{run.stop_reason} {outcome.note}".strip()
        return status

    def finish(self, status: str, reason: str, *, error: str = "") -> None:
        run = self.run_record
        run.status = status
        # The full text of an error goes to `error`; the stop reason is its first STOP_REASON_LENGTH characters.
        run.stop_reason = Truncator(reason or run.stop_reason).chars(STOP_REASON_LENGTH)
        run.error = error or run.error
        run.skip_reasons = dict(self.skip_reasons)
        run.deals_skipped = sum(self.skip_reasons.values())
        run.watermark_after = self.query.watermark
        run.finished_at = timezone.now()
        save_on_fresh_connection_if_lost(run)
        level = logging.INFO if status in FINE_STATUSES else logging.WARNING
        logger.log(
            level,
            "Ingestion run %s of deal query %s ended %s: %s pages, %s created, %s updated, %s skipped, "
            "%.1f tokens. %s",
            run.pk, self.query.name, status, run.pages_fetched, run.deals_created, run.deals_updated,
            run.deals_skipped, run.tokens_consumed, run.stop_reason,
        )


def _limit(value: int | None, default: int) -> int:
    return default if value is None else value
