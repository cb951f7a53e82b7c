"""The Keepa key never reaches a log line unmasked."""

from __future__ import annotations

import io
import logging

from django.test import override_settings

from dealsite.masking import KeepaKeyFilter, mask_key, mask_secrets

KEY = "k3epaS3cretKeyThatMustNotLeak0123456789abcdef"


def capture_with_filter() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    handler.addFilter(KeepaKeyFilter())
    logger = logging.getLogger("tests.masking")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream


def test_mask_key_shows_four_characters():
    assert mask_key(KEY) == "k3ep…"
    assert mask_key("") == ""


def test_mask_secrets_masks_key_parameter_of_any_url():
    text = "GET https://api.keepa.com/deal?key=otherKey123456&domain=1 failed"

    masked = mask_secrets(text)

    assert "otherKey123456" not in masked
    assert "key=othe…&domain=1" in masked


@override_settings(KEEPA_API_KEY=KEY)
def test_filter_masks_message_and_arguments():
    logger, stream = capture_with_filter()

    logger.info("calling with key %s", KEY)
    logger.warning(f"url https://api.keepa.com/token?key={KEY}")

    output = stream.getvalue()
    assert KEY not in output
    assert output.count("k3ep…") == 2


@override_settings(KEEPA_API_KEY=KEY)
def test_filter_masks_tracebacks():
    logger, stream = capture_with_filter()

    try:
        raise RuntimeError(f"request to /product?key={KEY}&asin=B000000001 failed")
    except RuntimeError:
        logger.exception("call failed")

    output = stream.getvalue()
    assert "Traceback" in output
    assert KEY not in output


def test_settings_attach_filter_to_console_handler(settings):
    handler = settings.LOGGING["handlers"]["console"]

    assert "mask_keepa_key" in handler["filters"]
    assert settings.LOGGING["filters"]["mask_keepa_key"]["()"] == "dealsite.masking.KeepaKeyFilter"
