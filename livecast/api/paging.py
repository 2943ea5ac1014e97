"""Pagination and range-checked query integers for every list the API serves.

A list answers at most ``limit`` items (``PAGE_DEFAULT`` unless asked, never more than
``PAGE_MAX``) and ``next_cursor``: an opaque string to pass back as ``?cursor=`` for the
next page, or null on the last one. A cursor is the sort key of the page's last item,
JSON in URL-safe base64, so a page boundary stays put while items are added before it
(keyset pagination, no OFFSET). A cursor that does not decode to the expected shape is
400 ``invalid_cursor``, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Any

from aiohttp import web

from livecast.errors import ValidationError

log = logging.getLogger(__name__)

PAGE_DEFAULT = 50
PAGE_MAX = 100
CURSOR_MAX_CHARS = 512
# Ids and other integers the API accepts in a path or query: SQLite's signed 64-bit range.
INT64_MAX = 2**63 - 1


def int_query(request: web.Request, name: str, default: int | None, low: int, high: int) -> int | None:
    """``?name=`` as an integer in low..high (the default when absent or empty), else 400."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    value = parse_int(raw, low, high)
    if value is None:
        raise ValidationError(f"{name} must be an integer {low}..{high}", field=name)
    return value


def parse_int(raw: str, low: int, high: int) -> int | None:
    """``raw`` as a plain decimal integer in low..high, or None (never raises)."""
    text = raw.strip()
    digits = text[1:] if text[:1] in ("-", "+") else text
    # Bounded length first: int() of a 100k-digit string is slow; isdecimal() admits
    # other scripts' digits, so require ASCII too.
    if not digits or len(digits) > 20 or not digits.isascii() or not digits.isdecimal():
        return None
    value = int(text)
    return value if low <= value <= high else None


def limit_query(request: web.Request, default: int = PAGE_DEFAULT, maximum: int = PAGE_MAX) -> int:
    value = int_query(request, "limit", default, 1, maximum)
    return default if value is None else value


def encode_cursor(key: list[Any]) -> str:
    raw = json.dumps(key, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def cursor_query(request: web.Request, types: tuple[type, ...]) -> list[Any] | None:
    """The decoded ``?cursor=``: a list whose items have exactly ``types``, or None if absent."""
    raw = request.query.get("cursor")
    if raw is None or raw == "":
        return None
    bad = ValidationError("cursor is not one this server gave out", field="cursor", code="invalid_cursor")
    if len(raw) > CURSOR_MAX_CHARS:
        raise bad
    try:
        key = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError) as err:
        raise bad from err
    if not isinstance(key, list) or len(key) != len(types):
        raise bad
    for item, typ in zip(key, types):
        if isinstance(item, bool) or not isinstance(item, typ):
            raise bad
        if isinstance(item, int) and not -INT64_MAX <= item <= INT64_MAX:
            raise bad
    return key


def page(items: list[Any], limit: int, key_of: Any) -> tuple[list[Any], str | None]:
    """Split a fetch of ``limit + 1`` items into the page and the next cursor."""
    if len(items) <= limit:
        return items, None
    items = items[:limit]
    return items, encode_cursor(key_of(items[-1]))
