"""Streaming CSV export of deals, for the admin action.

Rows are written while the response is sent, from a database iterator, so an
export of every deal never keeps them all in memory.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from decimal import Decimal

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone

from deals.keepa.domains import DOMAINS, product_url
from deals.keepa.money import CURRENCY_FORMATS

# Rows fetched from the database per round trip.
CHUNK_SIZE = 2000

# Excel reads a CSV file as UTF-8 only when it starts with a byte order mark.
BYTE_ORDER_MARK = "\ufeff"

# A cell starting with one of these is run as a formula by spreadsheet programs,
# and deal titles come from Amazon sellers, so such text cells get a leading quote.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

COLUMNS = [
    "domain", "asin", "title", "amazon_url", "currency", "amazon_price", "new_price", "used_price",
    "drop_percent", "sales_rank", "root_category", "lightning_end", "warehouse_condition",
    "warehouse_comment", "keepa_created_at", "first_seen_at", "last_seen_at",
]

FIELDS = [
    "domain", "asin", "title", "current_amazon", "current_new", "current_used", "drop_percent",
    "current_sales_rank", "root_category", "lightning_end", "warehouse_condition",
    "warehouse_condition_comment", "keepa_created_at", "first_seen_at", "last_seen_at",
]


class _EchoBuffer:
    """A file-like object whose write returns the text, so csv.writer produces one row string at a time."""

    def write(self, text: str) -> str:
        return text


def export_filename() -> str:
    return f"deals-{timezone.now():%Y%m%d-%H%M%S}.csv"


def deals_csv_response(queryset: QuerySet) -> StreamingHttpResponse:
    """Return a streaming UTF-8 CSV download of the deals in `queryset`, one row per deal."""
    response = StreamingHttpResponse(csv_lines(queryset), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{export_filename()}"'
    return response


def csv_lines(queryset: QuerySet) -> Iterator[str]:
    writer = csv.writer(_EchoBuffer())
    yield BYTE_ORDER_MARK + writer.writerow(COLUMNS)

    # values() skips the raw JSON and the other wide columns that the export leaves out.
    rows = queryset.order_by().values(*FIELDS).iterator(chunk_size=CHUNK_SIZE)
    for row in rows:
        yield writer.writerow(deal_row(row))


def deal_row(row: dict) -> list[str]:
    """Return the CSV cells of one deal, prices in the currency's main unit (19.99, not 1999 cents)."""
    domain = DOMAINS.get(row["domain"])
    currency = domain.currency if domain else ""
    decimals = CURRENCY_FORMATS[currency].decimals if currency else 2
    return [
        domain.host if domain else str(row["domain"]),
        row["asin"],
        _text_cell(row["title"]),
        product_url(row["asin"], row["domain"]) if domain else "",
        currency,
        _amount(row["current_amazon"], decimals),
        _amount(row["current_new"], decimals),
        _amount(row["current_used"], decimals),
        _plain(row["drop_percent"]),
        _plain(row["current_sales_rank"]),
        _plain(row["root_category"]),
        _timestamp(row["lightning_end"]),
        _plain(row["warehouse_condition"]),
        _text_cell(row["warehouse_condition_comment"]),
        _timestamp(row["keepa_created_at"]),
        _timestamp(row["first_seen_at"]),
        _timestamp(row["last_seen_at"]),
    ]


def _amount(cents: int | None, decimals: int) -> str:
    if cents is None or cents < 0:
        return ""
    return str(Decimal(cents).scaleb(-decimals))


def _plain(value: object) -> str:
    return "" if value is None else str(value)


def _timestamp(value: object) -> str:
    return value.isoformat() if value is not None else ""


def _text_cell(text: str) -> str:
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text
