"""Push targets: what the owner configures (validated), and each target's live state.

A target's stream key is write-only: ``to_json`` shows only a hint (its last two
characters, when it is long enough to keep the rest secret), and ``repr`` never shows it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from livecast.core.errors import ValidationError

log = logging.getLogger(__name__)

NAME_MAX = 100
URL_MAX = 1000
KEY_MAX = 500
STATES = ("idle", "connecting", "live", "retrying", "failed")


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
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= NAME_MAX:
        raise ValidationError(f"name must be a string of 1-{NAME_MAX} characters", field="name")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValidationError("name contains control characters", field="name", code="invalid_characters")
    return value.strip()


def validate_url(value: object) -> str:
    """An ``rtmp://`` or ``rtmps://`` URL with a host and an application path."""
    if not isinstance(value, str) or not 1 <= len(value) <= URL_MAX:
        raise ValidationError(f"url must be a string of 1-{URL_MAX} characters", field="url")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as err:
        raise ValidationError("url is not a valid URL", field="url") from err
    if parts.scheme not in ("rtmp", "rtmps") or not parts.hostname:
        raise ValidationError("url must be rtmp://host[:port]/app or rtmps://...", field="url")
    if port == 0 or not parts.path.strip("/") or parts.username or parts.password or parts.fragment:
        raise ValidationError("url must be rtmp://host[:port]/app (no credentials; the key goes in stream_key)",
                              field="url")
    if any(ord(c) <= 32 or ord(c) == 127 for c in value):
        raise ValidationError("url contains spaces or control characters", field="url")
    return value


def validate_key(value: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= KEY_MAX:
        raise ValidationError(f"stream_key must be a string of 1-{KEY_MAX} characters", field="stream_key")
    if any(ord(c) <= 32 or ord(c) == 127 for c in value):
        raise ValidationError("stream_key contains spaces or control characters", field="stream_key")
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
