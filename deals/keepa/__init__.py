"""The Keepa API client and helpers for Keepa's data: time, domains, price types, images, money."""

from deals.keepa.client import KeepaClient, compute_retry_after, validate_asins
from deals.keepa.domains import DOMAINS, Domain, get_domain, product_url
from deals.keepa.errors import (
    InvalidKeyError,
    InvalidRequestError,
    InvalidResponseError,
    KeepaConnectionError,
    KeepaError,
    KeepaTimeoutError,
    NotEnoughTokensError,
    NotFoundError,
    PaymentRequiredError,
    ServerError,
)
from deals.keepa.images import decode_image_name, encode_image_name, image_url
from deals.keepa.keepa_time import (
    KEEPA_EPOCH,
    datetime_to_keepa_minutes,
    keepa_minutes_now,
    keepa_minutes_to_datetime,
    keepa_minutes_to_unix_ms,
    unix_ms_to_keepa_minutes,
)
from deals.keepa.money import format_price
from deals.keepa.price_types import NO_OFFER, DateRange, PriceType, price_at, price_type_name, range_value_at, value_at
from deals.keepa.responses import CallOutcome, DealResponse, ProductResponse, TokenResponse, TokenState

__all__ = [
    "DOMAINS",
    "KEEPA_EPOCH",
    "NO_OFFER",
    "CallOutcome",
    "DateRange",
    "DealResponse",
    "Domain",
    "InvalidKeyError",
    "InvalidRequestError",
    "InvalidResponseError",
    "KeepaClient",
    "KeepaConnectionError",
    "KeepaError",
    "KeepaTimeoutError",
    "NotEnoughTokensError",
    "NotFoundError",
    "PaymentRequiredError",
    "PriceType",
    "ProductResponse",
    "ServerError",
    "TokenResponse",
    "TokenState",
    "compute_retry_after",
    "datetime_to_keepa_minutes",
    "decode_image_name",
    "encode_image_name",
    "format_price",
    "get_domain",
    "image_url",
    "keepa_minutes_now",
    "keepa_minutes_to_datetime",
    "keepa_minutes_to_unix_ms",
    "price_at",
    "price_type_name",
    "product_url",
    "range_value_at",
    "unix_ms_to_keepa_minutes",
    "validate_asins",
    "value_at",
]
