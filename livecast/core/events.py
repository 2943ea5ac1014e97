"""In-process domain events (stream started/stopped, ...) that chat and metrics subscribe to.

Subscribers are plain callables run synchronously by ``emit``; a subscriber that needs to
do I/O schedules its own task. One failing subscriber never stops the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamStarted:
    slug: str
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StreamStopped:
    slug: str


Event = Any
Subscriber = Callable[[Event], None]


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def emit(self, event: Event) -> None:
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:  # a subscriber's bug must not break the publisher
                log.exception("event subscriber %r failed on %r", callback, event)


@dataclass(frozen=True)
class RoomDeleted:
    slug: str


@dataclass(frozen=True)
class StreamKeyRotated:
    slug: str


@dataclass(frozen=True)
class UserDisabled:
    user_id: int


@dataclass(frozen=True)
class RoomCreated:
    slug: str
    title: str
    owner: str


@dataclass(frozen=True)
class CommentCreated:
    slug: str
    comment_id: int
    user: str
    text: str
    ts: str


@dataclass(frozen=True)
class GiftSent:
    slug: str
    gift_id: int
    user: str
    gift: str
    quantity: int
    value: int
    ts: str


@dataclass(frozen=True)
class RelayStateChanged:
    """A push target (``kind`` "target", with its id and name) or a pull source (``kind``
    "source") of a room changed state; ``reason`` never holds a key or credentials."""

    slug: str
    kind: str
    state: str
    reason: str | None = None
    target_id: int | None = None
    name: str | None = None
