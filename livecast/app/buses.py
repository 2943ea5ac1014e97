"""Which chat bus a node runs: the "bus from URL" factory, where the app is wired."""

from __future__ import annotations

import dataclasses

from livecast.chat.bus.base import ChatBus
from livecast.chat.bus.memory import InProcessBus
from livecast.chat.bus.redis import RedisBus
from livecast.config import ChatSettings, ConfigError, Settings


def chat_settings(settings: Settings) -> ChatSettings:
    """``[chat]`` with its bus defaulting to the cluster's Redis (``cluster.redis``) when
    ``chat.bus`` names none: origins and edges of one cluster then share room events."""
    if settings.chat.bus or not settings.cluster.redis:
        return settings.chat
    return dataclasses.replace(settings.chat, bus=settings.cluster.redis)


def make_bus(settings: ChatSettings, heartbeat: float = 2.0, ttl: float = 7.0) -> ChatBus:
    """The bus ``chat.bus`` names: "" = in-process, ``redis://`` (or ``rediss://``) = Redis.

    ``heartbeat`` is how often a node refreshes its viewer counts on a shared bus and
    ``ttl`` how long a count survives without a refresh (a dead node's viewers vanish).
    """
    if not settings.bus:
        return InProcessBus()
    scheme = settings.bus.split("://", 1)[0].lower()
    if scheme in ("redis", "rediss", "unix"):
        return RedisBus(settings.bus, heartbeat=heartbeat, ttl=ttl)
    raise ConfigError(f"chat.bus {scheme!r}: use \"\" (in-process) or a redis://host:port/db URL")
