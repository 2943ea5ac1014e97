"""Chat frames: parsing and validating what clients send, building what the server sends.

No I/O here. ``parse_client_frame`` turns the text of one WebSocket message into a typed
frame or raises ``FrameError`` with a stable code; ``encode`` serialises a server frame
once so the same string can be sent to every client of a room.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from livecast.core.errors import LivecastError

LIKE_MAX = 50
GIFT_QUANTITY_MAX = 100
TOKEN_MAX = 256

# C0 controls except newline, DEL, C1 controls, lone surrogates (which a JSON "\ud800"
# escape can produce and SQLite cannot store), bidi embeddings, overrides and isolates
# (U+202A-U+202E, U+2066-U+2069: they reorder the text shown after them), and invisible
# zero-width characters a plain-text comment has no use for: zero-width space, word
# joiner and invisible operators, BOM. ZWJ and ZWNJ (U+200D, U+200C) stay, as emoji
# sequences and Persian spelling need them, and so do the implicit marks LRM, RLM, ALM.
_STRIP = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\ud800-\udfff\u200b\u2060-\u2064\ufeff\u202a-\u202e\u2066-\u2069]")
_NEWLINES = re.compile(r"\r\n?")


class FrameError(LivecastError):
    """A client frame the server refuses; becomes an ``error`` frame."""

    code = "invalid_frame"


@dataclass(frozen=True)
class CommentFrame:
    text: str


@dataclass(frozen=True)
class LikeFrame:
    count: int


@dataclass(frozen=True)
class GiftFrame:
    gift: str
    quantity: int


@dataclass(frozen=True)
class AuthFrame:
    token: str


@dataclass(frozen=True)
class PingFrame:
    pass


ClientFrame = CommentFrame | LikeFrame | GiftFrame | AuthFrame | PingFrame


def _int_field(data: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = data.get(name, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int):
        raise FrameError(f"{name} must be an integer", field=name)
    if not low <= value <= high:
        raise FrameError(f"{name} must be {low}..{high}", field=name)
    return value


def _str_field(data: dict[str, Any], name: str, max_len: int) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise FrameError(f"{name} must be a string", field=name)
    if len(value) > max_len:
        raise FrameError(f"{name} is too long", field=name)
    return value


def parse_client_frame(text: str, max_bytes: int) -> ClientFrame:
    """One client message -> a typed frame; ``FrameError`` for anything malformed."""
    if len(text) > max_bytes or len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise FrameError(f"frame is larger than {max_bytes} bytes", code="too_large")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise FrameError("frame is not valid JSON", code="invalid_json") from err
    if not isinstance(data, dict):
        raise FrameError("frame must be a JSON object", code="invalid_json")
    kind = data.get("type")
    if not isinstance(kind, str):
        raise FrameError("frame needs a string \"type\"", field="type")
    if kind == "comment":
        return CommentFrame(_str_field(data, "text", max_bytes))
    if kind == "like":
        return LikeFrame(_int_field(data, "count", 1, 1, LIKE_MAX))
    if kind == "gift":
        return GiftFrame(_str_field(data, "gift", 64), _int_field(data, "quantity", 1, 1, GIFT_QUANTITY_MAX))
    if kind == "auth":
        return AuthFrame(_str_field(data, "token", TOKEN_MAX))
    if kind == "ping":
        return PingFrame()
    raise FrameError(f"unknown frame type {kind[:32]!r}", code="unknown_type")


def clean_comment(text: str, max_chars: int) -> str:
    """Comment text as stored: CR/CRLF -> LF, other control, bidi-override and zero-width
    characters (see ``_STRIP``) removed, trimmed.

    Nothing else is changed: ``<`` stays ``<``. Clients must insert it as text.
    """
    cleaned = _STRIP.sub("", _NEWLINES.sub("\n", text)).strip()
    if not cleaned:
        raise FrameError("comment is empty", field="text", code="empty_comment")
    if len(cleaned) > max_chars:
        raise FrameError(f"comment is longer than {max_chars} characters", field="text", code="too_long")
    return cleaned


# -- server frames ---------------------------------------------------------------------


def encode(frame: dict[str, Any]) -> str:
    """Compact JSON text of a server frame (UTF-8 left as is, no HTML escaping)."""
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


def error_frame(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, **extra}


def error_from(err: LivecastError) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if err.field:
        extra["field"] = err.field
    retry_after = getattr(err, "retry_after", None)
    if retry_after is not None:
        extra["retry_after"] = retry_after
    return error_frame(err.code, err.message, **extra)


def user_json(username: str, role: str) -> dict[str, str]:
    return {"username": username, "role": role}
