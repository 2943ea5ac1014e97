"""HlsService: rooms, publish sessions and their lifetimes.

Each ``publish_started`` makes a session (a random URL prefix and a segmenter)
and returns its ``StreamWriter``. A stop ends the playlist (EXT-X-ENDLIST); a new
publish within ``reconnect_grace`` seconds, or a takeover while the old publisher
is still live, continues the same playlist after an EXT-X-DISCONTINUITY. Rooms
stopped for longer than the grace are dropped (lazily on access, and by the
background sweeper).

With ``hls.low_latency`` every session makes fMP4 LL-HLS output: the segmenter
reports parts as they complete, the room lists them and wakes held requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from livecast.config import Settings
from livecast.hls.disk import DiskMirror
from livecast.hls.room import Room
from livecast.hls.parts import Part
from livecast.hls.segmenter import Segment, Segmenter
from livecast.hls.store import ByteBudget, SegmentData, release_free_memory
from livecast.core.media import MediaUnit

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 1.0
TRIM_INTERVAL = 10.0  # seconds between returns of freed heap memory to the OS


class PublishSession:
    segmenter: Segmenter

    def __init__(self, room: Room, prefix: str) -> None:
        self.room = room
        self.prefix = prefix
        self.live = True
        self.continues = False  # the first segment follows earlier ones: discontinuity
        self.errors = 0


class StreamWriter:
    """What one publisher session writes into. Cheap, synchronous, never raises for media."""

    def __init__(self, service: HlsService, session: PublishSession) -> None:
        self._service = service
        self._session = session

    @property
    def slug(self) -> str:
        return self._session.room.slug

    @property
    def counters(self) -> dict[str, int]:
        return dict(self._session.segmenter.counters)

    def write(self, unit: MediaUnit) -> None:
        session = self._session
        if not session.live:
            return
        try:
            session.segmenter.push(unit)
        except Exception:  # one bad unit must never kill the stream
            session.errors += 1
            if session.errors & (session.errors - 1) == 0:
                log.exception("HLS segmenter error in room %s (%d so far)", self.slug, session.errors)

    def set_metadata(self, values: dict[str, Any]) -> None:
        """onMetaData: codec ids tell which tracks exist; framerate helps duration estimates."""
        session = self._session
        if not session.live or not isinstance(values, dict):
            return
        video = values.get("videocodecid")
        audio = values.get("audiocodecid")
        if video is not None or audio is not None:
            session.segmenter.set_hints(bool(video), bool(audio))  # absent: that track is not coming
        rate = values.get("framerate")
        if isinstance(rate, (int, float)) and not isinstance(rate, bool):
            session.segmenter.set_frame_rate(float(rate))


class HlsService:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.hls = settings.hls
        self._clock = clock
        self._monotonic = monotonic
        self._rooms: dict[str, Room] = {}
        self._sessions: dict[str, PublishSession] = {}  # live session per slug
        self._budget = ByteBudget(self.hls.max_total_bytes)
        self._disk = DiskMirror(settings.data_path / "hls") if self.hls.write_through else None
        self._listeners: list[Callable[[str], None]] = []
        self._sweeper: asyncio.Task[None] | None = None

    # -- publishing ----------------------------------------------------------

    def publish_started(
        self, slug: str, *, has_video: bool | None = None, has_audio: bool | None = None
    ) -> StreamWriter:
        room = self._room(slug)
        old = self._sessions.pop(slug, None)
        if old is not None:
            log.info("room %s: publisher taken over", slug)
            self._end_session(old)
        if room is None:
            room = self._rooms[slug] = Room(slug, self.hls, self._budget, self._disk)
        room.stopped_at = None
        prefix = self._new_prefix(room)
        session = PublishSession(room, prefix)
        low_latency = self.hls.low_latency
        session.segmenter = Segmenter(
            "fmp4" if low_latency else self.hls.container, self.hls.segment_duration,
            functools.partial(self._on_segment, session),
            has_video=has_video, has_audio=has_audio, clock=self._clock,
            part_target=self.hls.part_target if low_latency else None,
            on_part=functools.partial(self._on_part, session) if low_latency else None,
        )
        room.set_live_prefix(prefix)
        session.continues = room.playlist is not None and room.playlist.next_sequence > 0
        self._sessions[slug] = session
        if room.set_ended(False):
            self._notify(slug)
        return StreamWriter(self, session)

    def publish_stopped(self, slug: str, writer: StreamWriter) -> None:
        session = writer._session
        if self._sessions.get(slug) is not session:
            return  # superseded by a takeover, or already stopped
        del self._sessions[slug]
        self._end_session(session)
        room = session.room
        room.stopped_at = self._monotonic()
        room.set_live_prefix(None)
        if room.set_ended(True):
            self._notify(slug)

    def _end_session(self, session: PublishSession) -> None:
        try:
            session.segmenter.flush()
        except Exception:
            log.exception("HLS flush failed in room %s", session.room.slug)
            session.segmenter.close()
        session.live = False

    def _on_segment(self, session: PublishSession, segment: Segment) -> None:
        room = session.room
        if self._rooms.get(room.slug) is not room:
            return
        discontinuity, session.continues = session.continues, False
        room.add_segment(segment, session.prefix, discontinuity)
        self._enforce_total()
        self._notify(room.slug)

    def _on_part(self, session: PublishSession, part: Part) -> None:
        room = session.room
        if self._rooms.get(room.slug) is room:
            room.add_part(part, session.prefix, session.continues)

    def _new_prefix(self, room: Room) -> str:
        while True:
            prefix = secrets.token_hex(4)
            if not any(name.startswith(prefix + "-") for name in room.store.names()):
                return prefix

    # -- reading -------------------------------------------------------------

    def playlist(self, slug: str) -> bytes | None:
        room = self._room(slug)
        return room.rendered() if room is not None else None

    def room(self, slug: str) -> Room | None:
        """The room (for LL-HLS readers that wait on it), unless it expired."""
        return self._room(slug)

    def segment(self, slug: str, name: str) -> SegmentData | None:
        room = self._room(slug)
        return room.segment(name) if room is not None else None

    def target_duration(self, slug: str) -> int | None:
        room = self._room(slug)
        return room.playlist.target_duration if room is not None and room.playlist is not None else None

    def info(self, slug: str) -> dict[str, Any] | None:
        room = self._room(slug)
        return room.info() if room is not None else None

    def add_listener(self, callback: Callable[[str], None]) -> None:
        self._listeners.append(callback)

    # -- lifetime ------------------------------------------------------------

    async def start(self) -> None:
        if self._disk is not None:
            self._disk.reset()
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="hls-sweeper")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        for slug, session in list(self._sessions.items()):
            del self._sessions[slug]
            self._end_session(session)
            session.room.stopped_at = self._monotonic()
            session.room.set_live_prefix(None)
            session.room.set_ended(True)
        if self._disk is not None:
            await self._disk.close()

    def sweep(self) -> None:
        """Drop rooms whose reconnect grace has run out."""
        for slug in list(self._rooms):
            self._room(slug)

    async def _sweep_forever(self) -> None:
        interval = min(SWEEP_INTERVAL, max(0.05, self.hls.reconnect_grace / 4))
        last_trim = self._monotonic()
        while True:
            await asyncio.sleep(interval)
            try:
                self.sweep()
                if self._monotonic() - last_trim >= TRIM_INTERVAL:
                    last_trim = self._monotonic()
                    release_free_memory()
            except Exception:
                log.exception("HLS sweeper failed")

    def _room(self, slug: str) -> Room | None:
        """The room, unless its grace has run out (then it is dropped here)."""
        room = self._rooms.get(slug)
        if room is None or room.stopped_at is None:
            return room
        if self._monotonic() - room.stopped_at <= self.hls.reconnect_grace:
            return room
        del self._rooms[slug]
        room.drop()
        log.info("room %s: HLS output expired", slug)
        self._notify(slug)
        return None

    def _enforce_total(self) -> None:
        """Global byte bound: free the oldest retired segment anywhere, else shrink the biggest room."""
        changed: set[str] = set()
        while self._budget.over:
            oldest: tuple[int, Room] | None = None
            for room in self._rooms.values():
                head = room.store.oldest_retired()
                if head is not None and (oldest is None or head[0] < oldest[0]):
                    oldest = (head[0], room)
            if oldest is not None:
                oldest[1].evict_one()
                continue
            rooms = sorted(self._rooms.values(), key=lambda r: r.store.bytes, reverse=True)
            shrunk = next((room for room in rooms if room.evict_one()), None)
            if shrunk is None:
                break
            changed.add(shrunk.slug)
        for slug in changed:
            self._notify(slug)

    def _notify(self, slug: str) -> None:
        for callback in list(self._listeners):
            try:
                callback(slug)
            except Exception:
                log.exception("HLS listener failed")
