"""Push targets: what the owner configures (validated), and each target's live state.

A target's stream key is write-only: ``to_json`` shows only a hint (its last two
characters, when it is long enough to keep the rest secret), and ``repr`` never shows it.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from livecast.core.errors import ValidationError
from livecast.rooms import validate_title

log = logging.getLogger(__name__)

NAME_MAX = 100
URL_MAX = 1000
KEY_MAX = 500
STATES = ("idle", "connecting", "live", "retrying", "failed")

# One grammar for the validators and the OpenAPI patterns (ECMA and Python read them alike).
HOST = r"([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])"
PORT = r"(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?"
_APP = r"/[\x21\x22\x24-\x3e\x40-\x7e]*[\x21\x22\x24-\x2e\x30-\x3e\x40-\x7e]"  # no ? or #
TARGET_URL_PATTERN = rf"^rtmps?://{HOST}{PORT}{_APP}$"
KEY_PATTERN = r"^[\x21-\x7e]+$"


@dataclass
class TargetStatus:
    """Live state of one target, kept across the room's sessions."""

    state: str = "idle"
    reason: str | None = None
    bytes_sent: int = 0
    dropped: int = 0
    reconnects: int = 0
    since: float = field(default_factory=time.time)


@dataclass
class PushTarget:
    id: int
    slug: str
    name: str
    url: str
    key: str = field(repr=False)
    enabled: bool = True
    verify_tls: bool = True

    def to_json(self, status: TargetStatus) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "url": self.url, "enabled": self.enabled,
            "verify_tls": self.verify_tls, "key_hint": key_hint(self.key),
            "state": status.state if self.enabled else "disabled", "reason": status.reason,
            "bytes_sent": status.bytes_sent, "dropped": status.dropped, "reconnects": status.reconnects,
        }


def key_hint(key: str) -> str:
    return "…" + key[-2:] if len(key) >= 12 else "…"


def validate_name(value: object) -> str:
    """Like a room title: 1-100 characters, no control, bidi-override or zero-width ones."""
    try:
        return validate_title(value)
    except ValidationError as err:
        raise ValidationError(err.message.replace("title", "name"), field="name", code=err.code) from err


def validate_url(value: object) -> str:
    """``rtmp://host[:port]/app`` or ``rtmps://...``: no credentials, query or fragment."""
    if not isinstance(value, str) or not 1 <= len(value) <= URL_MAX or not re.fullmatch(TARGET_URL_PATTERN, value):
        raise ValidationError("url must be rtmp://host[:port]/app or rtmps://... (printable ASCII, no "
                              "credentials: the key goes in stream_key)", field="url")
    return value


def validate_key(value: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= KEY_MAX or not re.fullmatch(KEY_PATTERN, value):
        raise ValidationError(f"stream_key must be 1-{KEY_MAX} printable ASCII characters, no spaces",
                              field="stream_key")
    return value


def validate_flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"{name} must be true or false", field=name)
    return value


def split_url(url: str) -> tuple[str, int, str, bool]:
    """(host, port, app, tls) of a validated target URL; app is the path without its slashes."""
    parts = urlsplit(url)
    tls = parts.scheme == "rtmps"
    return parts.hostname or "", parts.port or (443 if tls else 1935), parts.path.strip("/"), tls
