"""Pagination and range-checked query integers for every list the API serves.

A list answers at most ``limit`` items (``PAGE_DEFAULT`` unless asked, never more than
``PAGE_MAX``) and ``next_cursor``: a string to pass back as ``?cursor=`` for the next
page, or null on the last one. A cursor is the sort key of the page's last item (one or
more integers joined by ``.``), so a page boundary stays put while items are added
before it (keyset pagination, no OFFSET). Clients should treat it as opaque; one that
does not match ``cursor_pattern`` is 400 ``invalid_cursor``, never a 500. 18 digits at
most keep every part inside SQLite's 64-bit integers.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from aiohttp import web

from livecast.core.errors import ValidationError

log = logging.getLogger(__name__)

PAGE_DEFAULT = 50
PAGE_MAX = 100
# Ids and other integers the API accepts in a path or query: SQLite's signed 64-bit range.
INT64_MAX = 2**63 - 1


def int_query(request: web.Request, name: str, default: int | None, low: int, high: int) -> int | None:
    """``?name=`` as an integer in low..high (the default when absent), else 400."""
    raw = request.query.get(name)
    if raw is None:
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


def encode_cursor(key: tuple[int, ...]) -> str:
    return ".".join(str(int(part)) for part in key)


def cursor_pattern(parts: int) -> str:
    """The regular expression (OpenAPI ``pattern``) of a cursor of ``parts`` integers."""
    return "^[0-9]{1,18}" + r"(\.[0-9]{1,18})" * (parts - 1) + "$" if parts > 1 else "^[0-9]{1,18}$"


def cursor_query(request: web.Request, parts: int) -> tuple[int, ...] | None:
    """The decoded ``?cursor=``: ``parts`` non-negative integers, or None if absent."""
    raw = request.query.get("cursor")
    if raw is None:
        return None
    if not re.fullmatch(cursor_pattern(parts), raw):
        raise ValidationError("cursor is not one this server gave out", field="cursor", code="invalid_cursor")
    return tuple(int(part) for part in raw.split("."))


def page(items: list[Any], limit: int, key_of: Callable[[Any], tuple[int, ...]]) -> tuple[list[Any], str | None]:
    """Split a fetch of ``limit + 1`` items into the page and the next cursor."""
    if len(items) <= limit:
        return items, None
    items = items[:limit]
    return items, encode_cursor(key_of(items[-1]))
