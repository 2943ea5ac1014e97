"""Publish sessions for any source: takeover, live state and stream events in one place.

A source (an RTMP publisher today; a relay or a pull later) asks the ``SessionManager``
to ``begin`` publishing a room, writes units into the ``PublishSession`` it gets, and
``end``s it. A new session of a room that is live supersedes the old one: the old
session ends quietly and its source is told to ``stop``. The manager records the room's
live state (``LiveState.set_live``, off the caller's path) and emits ``StreamStarted``
when a room goes live and ``StreamStopped`` when it stops (not across a takeover).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Protocol

from livecast.core.events import Event, StreamStarted, StreamStopped
from livecast.core.media import MediaUnit
from livecast.core.tasks import Supervisor
from livecast.pipeline.hub import LiveStream, StreamHub

log = logging.getLogger(__name__)


class Source(Protocol):
    """Anything that publishes into a room."""

    @property
    def peer(self) -> str:
        """Who publishes (an address, a relay URL); owner-only, never public."""

    def stop(self, reason: str | None) -> None:
        """Stop publishing: superseded by a takeover (``reason`` None) or kicked."""


class LiveState(Protocol):
    async def set_live(self, slug: str, live: bool, owner: str) -> Any:
        """``owner``: a token of this live run; only the run that set a room live clears it."""


class EventSink(Protocol):
    def emit(self, event: Event) -> None: ...


class PublishSession:
    """One source publishing one room: where its units go."""

    def __init__(self, manager: SessionManager, stream: LiveStream, source: Source) -> None:
        self._manager = manager
        self.stream = stream
        self.source = source

    @property
    def slug(self) -> str:
        return self.stream.slug

    @property
    def ended(self) -> bool:
        return self.stream.closed

    def write(self, unit: MediaUnit) -> None:
        if not self.stream.closed:
            self.stream.write(unit)

    def set_metadata(self, values: dict[str, Any]) -> None:
        if not self.stream.closed:
            self.stream.set_metadata(values)

    def end(self) -> bool:
        """End this session; False if it had already ended (superseded or ended before)."""
        return self._manager.end(self)


class SessionManager:
    def __init__(self, hub: StreamHub, live_state: LiveState, events: EventSink) -> None:
        self.hub = hub
        self._live_state = live_state
        self._events = events
        self._sessions: dict[str, PublishSession] = {}
        self._runs: dict[str, str] = {}  # slug -> token of its live run here (across local takeovers)
        self._tasks = Supervisor("live-state")

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, slug: str) -> PublishSession | None:
        return self._sessions.get(slug)

    def begin(self, slug: str, source: Source) -> PublishSession:
        """``source`` publishes ``slug`` from now on; a live session of it is superseded."""
        stream, previous = self.hub.start(slug, source.peer)
        session = PublishSession(self, stream, source)
        old = self._sessions.get(slug)
        self._sessions[slug] = session
        if old is not None and old.source is not source:
            log.info("room %s: %s takes over from %s", slug, source.peer, old.source.peer)
            old.source.stop(None)
        if previous is None:
            run = self._runs[slug] = uuid.uuid4().hex
            self._tasks.spawn(self._set_live(slug, True, run), name=f"live-{slug}")
            self._events.emit(StreamStarted(slug, {"peer": source.peer}))
        return session

    def end(self, session: PublishSession) -> bool:
        if self._sessions.get(session.slug) is session:
            del self._sessions[session.slug]
        if not self.hub.stop(session.stream):
            return False  # superseded: the room stays live with its new source
        run = self._runs.pop(session.slug, "")
        self._tasks.spawn(self._set_live(session.slug, False, run), name=f"offline-{session.slug}")
        self._events.emit(StreamStopped(session.slug))
        return True

    def kick(self, slug: str, reason: str) -> None:
        """Tell the source of ``slug`` to stop (room deleted, key rotated)."""
        session = self._sessions.get(slug)
        if session is not None:
            session.source.stop(reason)

    async def close(self) -> None:
        """Let pending live-state writes finish."""
        await self._tasks.wait()
        await self._tasks.close()

    async def _set_live(self, slug: str, live: bool, run: str) -> None:
        try:
            changed = await self._live_state.set_live(slug, live, run)
            if not live:
                log.info("room %s: %s", slug, "marked offline" if changed else
                         "live flag left as is (live under another run: taken over)")
        except Exception:
            log.exception("could not record room %s as %s", slug, "live" if live else "offline")
