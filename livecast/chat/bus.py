"""The chat bus: publish/subscribe of room events between the nodes that hold sockets.

Everything that happens in a room (comment, deleted, likes, gift, viewers, stream, the
room closing) is published here once, already serialised; every node's chat hub that
has sockets in that room subscribes and delivers the same text to them. Only
``make_bus`` knows which implementation runs: in-process (one node) or Redis pub/sub
(``chat.bus = "redis://host:port/db"``, livecast.chat.redis_bus), behind the same
``ChatBus`` protocol. The bus also carries presence: each node reports its local
viewer count per room and the bus turns the counts into the room's ``viewers`` frames.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from livecast.chat.frames import encode
from livecast.config import ChatSettings, ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoomMessage:
    """One room event. ``text`` is the JSON frame clients receive.

    ``kind`` is the frame's type, or ``closed`` when the room is gone (clients get
    ``text``, then their socket is closed). ``ref`` is the comment id of a ``comment``
    (a joining client uses it to skip what its history already holds).
    """

    kind: str
    text: str
    ref: int = 0


Handler = Callable[[RoomMessage], None]
Unsubscribe = Callable[[], None]


class ChatBus(Protocol):
    def publish(self, room: str, message: RoomMessage) -> None:
        """Send to every subscriber of ``room`` on every node. Never blocks."""

    def subscribe(self, room: str, handler: Handler) -> Unsubscribe:
        """Receive the room's messages (in publish order) until unsubscribed."""

    async def ready(self, room: str) -> None:
        """Return once a subscription to ``room`` receives what is published (bounded)."""

    def set_viewers(self, room: str, count: int) -> None:
        """This node now has ``count`` viewers in ``room``; publishes the ``viewers`` frame."""

    def viewers(self, room: str, local: int) -> int:
        """The room's viewers on every node, given this node's current ``local`` count."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class InProcessBus:
    """A single node's bus: publish calls the room's handlers at once, in order."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {}
        self.published = 0

    def publish(self, room: str, message: RoomMessage) -> None:
        self.published += 1
        for handler in tuple(self._handlers.get(room, ())):
            try:
                handler(message)
            except Exception:  # one broken subscriber must not stop the others
                log.exception("chat bus handler failed in room %s", room)

    def subscribe(self, room: str, handler: Handler) -> Unsubscribe:
        self._handlers.setdefault(room, []).append(handler)

        def unsubscribe() -> None:
            handlers = self._handlers.get(room)
            if handlers and handler in handlers:
                handlers.remove(handler)
                if not handlers:
                    del self._handlers[room]

        return unsubscribe

    def rooms(self) -> list[str]:
        return list(self._handlers)

    async def ready(self, room: str) -> None:
        return None

    def set_viewers(self, room: str, count: int) -> None:
        self.publish(room, RoomMessage("viewers", encode({"type": "viewers", "count": count})))

    def viewers(self, room: str, local: int) -> int:
        return local

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._handlers.clear()


def make_bus(settings: ChatSettings, heartbeat: float = 2.0, ttl: float = 7.0) -> ChatBus:
    """The bus ``chat.bus`` names: "" = in-process, ``redis://`` (or ``rediss://``) = Redis.

    ``heartbeat`` is how often a node refreshes its viewer counts on a shared bus and
    ``ttl`` how long a count survives without a refresh (a dead node's viewers vanish).
    """
    if not settings.bus:
        return InProcessBus()
    scheme = settings.bus.split("://", 1)[0].lower()
    if scheme in ("redis", "rediss", "unix"):
        from livecast.chat.redis_bus import RedisBus

        return RedisBus(settings.bus, heartbeat=heartbeat, ttl=ttl)
    raise ConfigError(f"chat.bus {scheme!r}: use \"\" (in-process) or a redis://host:port/db URL")
