"""A single node's chat bus: publish calls the room's handlers at once, in order."""

from __future__ import annotations

import logging

from livecast.chat.bus.base import Handler, RoomMessage, Unsubscribe
from livecast.chat.frames import encode

log = logging.getLogger(__name__)


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
