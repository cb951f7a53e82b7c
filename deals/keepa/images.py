"""Decoding of the deal `image` field.

Keepa has sent the image file name as a list of character codes
(`[54, 49, 107, ...]` for "61k...") and, in newer responses, as a plain string.
"""

from __future__ import annotations

from typing import Any

IMAGE_BASE_URL = "https://m.media-amazon.com/images/I/"


def decode_image_name(value: Any) -> str | None:
    """Return the image file name, or None when the field is missing or empty.

    Raises ValueError when the field is neither a string nor a list of printable character codes.
    """
    if value is None or value in ("", []):
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, list) and all(_is_character_code(code) for code in value):
        return "".join(chr(code) for code in value)
    raise ValueError(
        f"The image field {str(value)[:80]!r} is neither a file name nor a list of character codes."
    )


def image_url(value: Any) -> str | None:
    """Return the full image URL for an `image` field in either encoding, or None when there is no image."""
    name = decode_image_name(value)
    return IMAGE_BASE_URL + name if name else None


def encode_image_name(name: str) -> list[int]:
    """Return `name` as a list of character codes, the older encoding of the field."""
    return [ord(character) for character in name]


def _is_character_code(code: Any) -> bool:
    return isinstance(code, int) and not isinstance(code, bool) and 32 <= code < 127
