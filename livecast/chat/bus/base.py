"""The chat bus: publish/subscribe of room events between the nodes that hold sockets.

Everything that happens in a room (comment, deleted, likes, gift, viewers, stream, the
room closing) is published here once, already serialised; every node's chat hub that
has sockets in that room subscribes and delivers the same text to them. The
implementations (livecast.chat.bus.memory: in-process, one node; livecast.chat.bus.redis:
Redis pub/sub, ``chat.bus = "redis://host:port/db"``) sit behind this ``ChatBus``
protocol; only the app's wiring (livecast.app.buses) picks one. The bus also carries
presence: each node reports its local viewer count per room and the bus turns the
counts into the room's ``viewers`` frames.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


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
