"""The errors of the Keepa client, all derived from KeepaError.

Messages name the endpoint, the HTTP status and what to do next. They never
contain the API key: the client masks every text that comes from outside
(exception messages, Keepa's own error messages) before building an error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dealsite.masking import mask_secrets

if TYPE_CHECKING:
    from deals.keepa.responses import TokenState


class KeepaError(Exception):
    """A failed Keepa call.

    retryable tells whether the same call may succeed if made again later. The client itself
    repeats only timeouts, connection errors and 5xx answers.
    """

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        endpoint: str,
        status: int | None = None,
        token_state: TokenState | None = None,
    ) -> None:
        # The regular expression masks any `key=` URL parameter that slipped into the text.
        self.message = mask_secrets(message)
        self.endpoint = endpoint
        self.status = status
        self.token_state = token_state
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(endpoint={self.endpoint!r}, status={self.status!r}, message={self.message!r})"


class InvalidRequestError(KeepaError):
    """Keepa rejected a parameter (400, 405, or HTTP 200 with an error object or without the payload)."""


class InvalidKeyError(InvalidRequestError):
    """Keepa does not know the API key."""


class PaymentRequiredError(KeepaError):
    """HTTP 402: the account has no plan or the plan expired."""


class NotFoundError(KeepaError):
    """HTTP 404: the endpoint does not exist at the base URL."""


class NotEnoughTokensError(KeepaError):
    """HTTP 429: the balance is zero or negative. retry_after is in seconds."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float, **context) -> None:
        super().__init__(message, **context)
        self.retry_after = retry_after


class ServerError(KeepaError):
    """HTTP 5xx from Keepa or a proxy in front of it."""

    retryable = True


class KeepaTimeoutError(KeepaError):
    """Keepa did not connect or respond within the timeout. The call may still have cost tokens."""

    retryable = True


class KeepaConnectionError(KeepaError):
    """The connection to Keepa failed or broke before a complete response arrived."""

    retryable = True


class InvalidResponseError(KeepaError):
    """The body was not the JSON object Keepa sends: truncated JSON, an HTML page, missing token fields."""

    retryable = True
