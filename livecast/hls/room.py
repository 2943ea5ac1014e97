"""One room's HLS output: its playlist, its stored files and its memory bounds.

LL-HLS rooms also store parts (named by a session-wide counter, so the preload hint
names a part before anyone knows which segment it will belong to). Parts stay
fetchable while listed and for three target durations after; ``signal`` wakes requests
held for a segment or part (blocking playlist reload, preload hint fetches).
"""

from __future__ import annotations

import logging
import math
import re
from collections import deque

from livecast.config import HlsSettings
from livecast.hls.blocking import ChangeSignal
from livecast.hls.disk import DiskMirror
from livecast.hls.muxer import CONTENT_TYPES, EXTENSIONS
from livecast.hls.parts import Part
from livecast.hls.playlist import (
    PART_WINDOW,
    SKIP_AFTER,
    LowLatency,
    MediaPlaylist,
    PartEntry,
    PlaylistEntry,
    rounded_seconds,
)
from livecast.hls.segmenter import Segment
from livecast.hls.store import ByteBudget, SegmentData, SegmentStore

log = logging.getLogger(__name__)


PART_NAME = re.compile(r"^([0-9a-f]+)-part(\d{1,12})\.m4s$")


def init_name(prefix: str, init_id: int) -> str:
    return f"{prefix}-init.mp4" if init_id == 0 else f"{prefix}-init{init_id}.mp4"


def part_name(prefix: str, index: int) -> str:
    return f"{prefix}-part{index}.m4s"


def low_latency_for(settings: HlsSettings) -> LowLatency | None:
    if not settings.low_latency:
        return None
    target = max(1, rounded_seconds(settings.segment_duration))
    # offer delta updates only if a full window is longer than CAN-SKIP-UNTIL plus a segment
    can_skip = (settings.window - 1) * settings.segment_duration > SKIP_AFTER * target
    return LowLatency(settings.part_target, can_skip)


class Room:
    def __init__(self, slug: str, settings: HlsSettings, budget: ByteBudget, disk: DiskMirror | None) -> None:
        self.slug = slug
        self.settings = settings
        self.store = SegmentStore(budget)
        self.playlist: MediaPlaylist | None = None
        self.stopped_at: float | None = None  # monotonic time of the last stop, None while live
        self.shrunk = 0  # listed segments dropped to respect a byte bound
        self.low_latency = low_latency_for(settings)
        self.live_prefix: str | None = None  # the live session's URL prefix (LL: parts still to come)
        self.resume_at: tuple[int, int] | None = None  # (media sequence, discontinuity sequence) to start at
        self.signal = ChangeSignal()
        self._disk = disk
        self._parts: deque[tuple[int, list[str]]] = deque()  # (segment sequence, its part names)
        # parts of this many newest segments stay stored: a part is listed for up to PART_WINDOW
        # target durations and must stay fetchable for as long again after (rfc8216bis 6.2.2)
        target = max(1, rounded_seconds(settings.segment_duration))
        self._keep_parts = math.ceil(2 * PART_WINDOW * target / settings.segment_duration)

    # -- reading -------------------------------------------------------------

    def rendered(self) -> bytes | None:
        playlist = self.playlist
        if playlist is None or not (playlist.entries or playlist.pending):
            return None
        return playlist.render()

    def segment(self, name: str) -> SegmentData | None:
        return self.store.get(name)

    def info(self) -> dict[str, object]:
        playlist = self.playlist
        return {
            "container": playlist.kind if playlist else self.settings.container,
            "segments": len(playlist.entries) if playlist else 0,
            "media_sequence": playlist.media_sequence if playlist else 0,
            "target_duration": playlist.target_duration if playlist else None,
            "ended": self.stopped_at is not None,
            "bytes": self.store.bytes,
        }

    # -- writing -------------------------------------------------------------

    def set_ended(self, ended: bool) -> bool:
        """Add or remove EXT-X-ENDLIST; True if the rendered playlist changed."""
        if self.playlist is None or self.playlist.ended == ended:
            return False
        self.playlist.set_ended(ended)
        self.signal.fire()
        self.playlist.render()
        self._mirror_playlist()
        return bool(self.playlist.entries)

    def set_live_prefix(self, prefix: str | None) -> None:
        self.live_prefix = prefix
        if self.playlist is not None and self.low_latency is not None:
            self.playlist.set_preload_hint(part_name(prefix, 0) if prefix is not None else None)
        self.signal.fire()

    def _ensure_playlist(self, kind: str) -> MediaPlaylist:
        if self.playlist is None:
            first, discontinuities = self.resume_at or (0, 0)
            self.playlist = MediaPlaylist(kind, self.settings.segment_duration, first_sequence=first,
                                          low_latency=self.low_latency)
            self.playlist.discontinuity_sequence = discontinuities
        return self.playlist

    def timeline(self) -> tuple[int, int]:
        """(next media sequence, discontinuity tags so far, listed or not): where another
        server would continue this playlist."""
        playlist = self.playlist
        if playlist is None:
            return self.resume_at or (0, 0)
        listed = sum(1 for e in playlist.entries if e.discontinuity) + int(playlist.pending_discontinuity)
        return playlist.next_sequence, playlist.discontinuity_sequence + listed

    def _init_uri(self, init: bytes | None, init_id: int, prefix: str) -> str | None:
        if init is None:
            return None
        map_uri = init_name(prefix, init_id)
        if map_uri not in self.store:
            self._put(map_uri, SegmentData(init, CONTENT_TYPES["init"], 0.0))
        return map_uri

    def add_part(self, part: Part, prefix: str, discontinuity: bool) -> None:
        """LL-HLS: a part of the segment being made is complete."""
        playlist = self._ensure_playlist("fmp4")
        if playlist.kind != "fmp4":
            return  # a part can only follow fMP4 segments; the segment itself will switch kinds
        map_uri = self._init_uri(part.init, part.init_id, prefix)
        name = part_name(prefix, part.index)
        self._put(name, SegmentData(part.data, CONTENT_TYPES["fmp4"], part.duration), map_uri)
        if not self._parts or self._parts[-1][0] != playlist.next_sequence:
            self._parts.append((playlist.next_sequence, []))
        self._parts[-1][1].append(name)
        playlist.add_part(
            PartEntry(name, part.duration, part.independent),
            discontinuity or part.discontinuity, map_uri, part_name(prefix, part.index + 1), part.wall_start,
        )
        playlist.render()
        self._mirror_playlist()
        self.signal.fire()

    def add_segment(self, segment: Segment, prefix: str, discontinuity: bool) -> None:
        playlist = self._ensure_playlist(segment.kind)
        if playlist.kind != segment.kind:
            log.info("room %s switches to %s segments", self.slug, segment.kind)
            while playlist.entries:
                self.store.retire(playlist.pop_oldest().uri)
            playlist.kind = segment.kind
            discontinuity = True
        map_uri = self._init_uri(segment.init, segment.init_id, prefix)
        sequence = playlist.next_sequence
        name = f"{prefix}-{sequence}.{EXTENSIONS[segment.kind]}"
        self._put(name, SegmentData(segment.data, CONTENT_TYPES[segment.kind], segment.duration), map_uri)
        wall = segment.wall_start
        if playlist.entries:  # never let the date go back (a reconnect, an encoder ahead of real time)
            last = playlist.entries[-1]
            wall = max(wall, last.program_date_time + last.duration)
        playlist.append(PlaylistEntry(
            sequence, name, segment.duration, wall, discontinuity or segment.discontinuity, map_uri,
            tuple(playlist.pending),
        ))
        while self._parts and self._parts[0][0] <= sequence - self._keep_parts:
            for part in self._parts.popleft()[1]:
                self._freed(self.store.free(part))
        while len(playlist.entries) > self.settings.window:
            self.store.retire(playlist.pop_oldest().uri)
        while self.store.retired_count > self.settings.grace_segments:
            self._free_oldest_retired()
        while self.store.bytes > self.settings.max_stream_bytes and self.evict_one():
            pass
        playlist.render()
        self._mirror_playlist()
        self.signal.fire()

    def evict_one(self) -> bool:
        """Free the oldest retired segment, or else unlist and free the oldest listed one
        (never the last). False if there is nothing left to give."""
        if self.store.retired_count:
            self._free_oldest_retired()
            return True
        playlist = self.playlist
        if playlist is None or len(playlist.entries) <= 1:
            return False
        entry = playlist.pop_oldest()
        self.shrunk += 1
        if self.shrunk & (self.shrunk - 1) == 0:
            log.warning("room %s: byte bound reached, window shrunk (%d segments so far)", self.slug, self.shrunk)
        self._freed(self.store.free(entry.uri))
        playlist.render()
        self._mirror_playlist()
        return True

    def drop(self) -> None:
        """Free everything (the room expired)."""
        self.store.clear()
        self._parts.clear()
        self.playlist = None
        self.live_prefix = None
        self.signal.fire()
        if self._disk is not None:
            self._disk.remove_room(self.slug)

    def _put(self, name: str, item: SegmentData, init: str | None = None) -> None:
        self.store.put(name, item, init)
        if self._disk is not None:
            self._disk.write(self.slug, name, item.data)

    def _free_oldest_retired(self) -> None:
        self._freed(self.store.free_oldest_retired())

    def _freed(self, names: list[str]) -> None:
        if self._disk is not None:
            for name in names:
                self._disk.delete(self.slug, name)

    def _mirror_playlist(self) -> None:
        if self._disk is not None and self.playlist is not None:
            self._disk.playlist(self.slug, self.playlist.render())
