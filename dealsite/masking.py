"""Masking of the Keepa API key in text, URLs and log records.

The key is a secret: whoever holds it spends the account's tokens. It is shown
only as its first four characters and an ellipsis.
"""

from __future__ import annotations

import logging
import re

VISIBLE_CHARACTERS = 4

# The key travels as the `key` query parameter, so any URL in a message or a
# traceback may carry it, even a key other than the configured one.
KEY_PARAMETER = re.compile(r"(?P<name>[?&]key=)(?P<value>[^&#\s'\"<>]+)")


def mask_key(key: str) -> str:
    """Return the first four characters of `key` and an ellipsis, or "" for no key."""
    if not key:
        return ""
    return key[:VISIBLE_CHARACTERS] + "…"


def mask_secrets(text: str, keys: list[str] | tuple[str, ...] = ()) -> str:
    """Replace every occurrence of each key in `keys`, and every `key=` URL parameter, by its mask."""
    for key in keys:
        if key:
            text = text.replace(key, mask_key(key))
    return KEY_PARAMETER.sub(lambda match: match["name"] + mask_key(match["value"]), text)


def configured_keys() -> tuple[str, ...]:
    from django.conf import settings

    if not settings.configured:
        return ()
    key = getattr(settings, "KEEPA_API_KEY", "")
    return (key,) if key else ()


class KeepaKeyFilter(logging.Filter):
    """A logging filter that masks the Keepa key in messages, arguments and tracebacks.

    Attached to handlers, it covers records from every logger, including
    urllib3's, which logs request URLs at DEBUG level.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        keys = configured_keys()
        record.msg = mask_secrets(record.getMessage(), keys)
        record.args = None

        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_secrets(record.exc_text, keys)
        if record.stack_info:
            record.stack_info = mask_secrets(record.stack_info, keys)
        return True
