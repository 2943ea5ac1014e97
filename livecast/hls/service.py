"""HlsService: rooms, publish sessions and their lifetimes.

Each ``publish_started`` makes a session (a random URL prefix and a segmenter)
and returns its ``StreamWriter``. A stop ends the playlist (EXT-X-ENDLIST); a new
publish within ``reconnect_grace`` seconds, or a takeover while the old publisher
is still live, continues the same playlist after an EXT-X-DISCONTINUITY. Rooms
stopped for longer than the grace are dropped (lazily on access, and by the
background sweeper).

State is keyed by room AND rendition: the publisher's own stream is the
``DEFAULT_RENDITION`` ("source"), whose URLs are /hls/{slug}/...; another rendition
(a transcoder's output, later) gets its own playlist, segments and lifetime under
/hls/{slug}/{rendition}/... . Listeners hear of the default rendition's changes.

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
from dataclasses import dataclass
from typing import Any, Protocol

from livecast.config import Settings
from livecast.core.media import MediaUnit
from livecast.hls.disk import DiskMirror
from livecast.hls.parts import Part
from livecast.hls.room import Room
from livecast.hls.segmenter import Segment, Segmenter
from livecast.hls.store import ByteBudget, SegmentData, release_free_memory

log = logging.getLogger(__name__)

DEFAULT_RENDITION = "source"


@dataclass(frozen=True)
class Resume:
    """Where a room's playlist stood on another server: a publish here continues it."""

    next_sequence: int
    discontinuity_sequence: int


ResumeProvider = Callable[[str], "Resume | None"]

# A continued playlist skips one media sequence number: the server that died may have
# listed one more segment than it recorded before it went.
RESUME_MARGIN = 1
Key = tuple[str, str]  # (slug, rendition)

SWEEP_INTERVAL = 1.0
TRIM_INTERVAL = 10.0  # seconds between returns of freed heap memory to the OS


class SegmentTap(Protocol):
    """Hears each finished segment of a room's default rendition (a recorder); runs on the
    segmenter's path, so it must only hand the segment on."""

    def segment(self, slug: str, prefix: str, segment: Segment) -> None: ...
    def ended(self, slug: str, prefix: str) -> None: ...


class PublishSession:
    segmenter: Segmenter

    def __init__(self, key: Key, room: Room, prefix: str) -> None:
        self.key = key
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
        self._rooms: dict[Key, Room] = {}
        self._sessions: dict[Key, PublishSession] = {}  # live session per (slug, rendition)
        self._budget = ByteBudget(self.hls.max_total_bytes)
        self._disk = DiskMirror(settings.data_path / "hls") if self.hls.write_through else None
        self._listeners: list[Callable[[str], None]] = []
        self._taps: list[SegmentTap] = []
        self._sweeper: asyncio.Task[None] | None = None
        # The cluster's view of where each room's playlist stands (None: this node only).
        self.resume_provider: ResumeProvider | None = None

    # -- publishing ----------------------------------------------------------

    def publish_started(
        self, slug: str, *, rendition: str = DEFAULT_RENDITION,
        has_video: bool | None = None, has_audio: bool | None = None,
    ) -> StreamWriter:
        key = (slug, rendition)
        room = self._room(key)
        old = self._sessions.pop(key, None)
        if old is not None:
            log.info("room %s (%s): publisher taken over", slug, rendition)
            self._end_session(old)
        resume = self._resume(key)
        if resume is not None and room is not None and room.timeline()[0] >= resume.next_sequence:
            resume = None  # this node wrote the newest timeline: go on from what it holds
        if resume is not None and room is not None:
            del self._rooms[key]  # the timeline went on elsewhere: what is held here is older
            room.drop()
            room = None
        if room is None:
            room = self._rooms[key] = Room(slug, self.hls, self._budget, self._disk)
            if resume is not None:
                room.resume_at = (resume.next_sequence + RESUME_MARGIN, resume.discontinuity_sequence)
        room.stopped_at = None
        prefix = self._new_prefix(room)
        session = PublishSession(key, room, prefix)
        low_latency = self.hls.low_latency
        session.segmenter = Segmenter(
            "fmp4" if low_latency else self.hls.container, self.hls.segment_duration,
            functools.partial(self._on_segment, session),
            has_video=has_video, has_audio=has_audio, clock=self._clock,
            part_target=self.hls.part_target if low_latency else None,
            on_part=functools.partial(self._on_part, session) if low_latency else None,
        )
        room.set_live_prefix(prefix)
        session.continues = room.timeline()[0] > 0
        self._sessions[key] = session
        if room.set_ended(False):
            self._notify(key)
        return StreamWriter(self, session)

    def publish_stopped(self, slug: str, writer: StreamWriter) -> None:
        session = writer._session
        key = session.key
        if key[0] != slug or self._sessions.get(key) is not session:
            return  # superseded by a takeover, or already stopped
        del self._sessions[key]
        self._end_session(session)
        room = session.room
        room.stopped_at = self._monotonic()
        room.set_live_prefix(None)
        if room.set_ended(True):
            self._notify(key)

    def _resume(self, key: Key) -> Resume | None:
        if self.resume_provider is None or key[1] != DEFAULT_RENDITION:
            return None
        return self.resume_provider(key[0])

    def _end_session(self, session: PublishSession) -> None:
        try:
            session.segmenter.flush()
        except Exception:
            log.exception("HLS flush failed in room %s", session.room.slug)
            session.segmenter.close()
        session.live = False
        if session.key[1] == DEFAULT_RENDITION:
            for tap in self._taps:
                self._guard(tap.ended, session.key[0], session.prefix)

    def _on_segment(self, session: PublishSession, segment: Segment) -> None:
        room = session.room
        if self._rooms.get(session.key) is not room:
            return
        discontinuity, session.continues = session.continues, False
        room.add_segment(segment, session.prefix, discontinuity)
        if session.key[1] == DEFAULT_RENDITION:
            for tap in self._taps:
                self._guard(tap.segment, session.key[0], session.prefix, segment)
        self._enforce_total()
        self._notify(session.key)

    def _on_part(self, session: PublishSession, part: Part) -> None:
        room = session.room
        if self._rooms.get(session.key) is room:
            room.add_part(part, session.prefix, session.continues)

    def _new_prefix(self, room: Room) -> str:
        while True:
            prefix = secrets.token_hex(4)
            if not any(name.startswith(prefix + "-") for name in room.store.names()):
                return prefix

    # -- reading -------------------------------------------------------------

    def playlist(self, slug: str, rendition: str = DEFAULT_RENDITION) -> bytes | None:
        room = self._room((slug, rendition))
        return room.rendered() if room is not None else None

    def room(self, slug: str, rendition: str = DEFAULT_RENDITION) -> Room | None:
        """The room's rendition (for LL-HLS readers that wait on it), unless it expired."""
        return self._room((slug, rendition))

    def segment(self, slug: str, name: str, rendition: str = DEFAULT_RENDITION) -> SegmentData | None:
        room = self._room((slug, rendition))
        return room.segment(name) if room is not None else None

    def renditions(self, slug: str) -> list[str]:
        """The renditions of ``slug`` that have a playlist now."""
        return [rendition for (s, rendition) in list(self._rooms) if s == slug and self._room((s, rendition))]

    def target_duration(self, slug: str) -> int | None:
        room = self._room((slug, DEFAULT_RENDITION))
        return room.playlist.target_duration if room is not None and room.playlist is not None else None

    def info(self, slug: str) -> dict[str, Any] | None:
        room = self._room((slug, DEFAULT_RENDITION))
        return room.info() if room is not None else None

    def add_listener(self, callback: Callable[[str], None]) -> None:
        self._listeners.append(callback)

    def add_tap(self, tap: SegmentTap) -> None:
        self._taps.append(tap)

    @staticmethod
    def _guard(callback: Callable[..., None], *args: Any) -> None:
        try:
            callback(*args)
        except Exception:  # a tap's bug must never break the live stream
            log.exception("HLS segment tap %r failed", callback)

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
        for key, session in list(self._sessions.items()):
            del self._sessions[key]
            self._end_session(session)
            session.room.stopped_at = self._monotonic()
            session.room.set_live_prefix(None)
            session.room.set_ended(True)
        if self._disk is not None:
            await self._disk.close()

    def sweep(self) -> None:
        """Drop rooms whose reconnect grace has run out."""
        for key in list(self._rooms):
            self._room(key)

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

    def _room(self, key: Key) -> Room | None:
        """The room's rendition, unless its grace has run out (then it is dropped here)."""
        room = self._rooms.get(key)
        if room is None or room.stopped_at is None:
            return room
        if self._monotonic() - room.stopped_at <= self.hls.reconnect_grace:
            return room
        del self._rooms[key]
        room.drop()
        log.info("room %s (%s): HLS output expired", *key)
        self._notify(key)
        return None

    def _enforce_total(self) -> None:
        """Global byte bound: free the oldest retired segment anywhere, else shrink the biggest room."""
        changed: set[Key] = set()
        while self._budget.over:
            oldest: tuple[int, Room] | None = None
            for room in self._rooms.values():
                head = room.store.oldest_retired()
                if head is not None and (oldest is None or head[0] < oldest[0]):
                    oldest = (head[0], room)
            if oldest is not None:
                oldest[1].evict_one()
                continue
            rooms = sorted(self._rooms.items(), key=lambda item: item[1].store.bytes, reverse=True)
            shrunk = next((key for key, room in rooms if room.evict_one()), None)
            if shrunk is None:
                break
            changed.add(shrunk)
        for key in changed:
            self._notify(key)

    def _notify(self, key: Key) -> None:
        slug, rendition = key
        if rendition != DEFAULT_RENDITION:
            return
        for callback in list(self._listeners):
            try:
                callback(slug)
            except Exception:
                log.exception("HLS listener failed")
