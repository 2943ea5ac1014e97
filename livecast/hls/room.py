"""One room's HLS output: its playlist, its stored files and its memory bounds."""

from __future__ import annotations

import logging

from livecast.config import HlsSettings
from livecast.hls.disk import DiskMirror
from livecast.hls.muxer import CONTENT_TYPES, EXTENSIONS
from livecast.hls.playlist import MediaPlaylist, PlaylistEntry
from livecast.hls.segmenter import Segment
from livecast.hls.store import ByteBudget, SegmentData, SegmentStore

log = logging.getLogger(__name__)


def init_name(prefix: str, init_id: int) -> str:
    return f"{prefix}-init.mp4" if init_id == 0 else f"{prefix}-init{init_id}.mp4"


class Room:
    def __init__(self, slug: str, settings: HlsSettings, budget: ByteBudget, disk: DiskMirror | None) -> None:
        self.slug = slug
        self.settings = settings
        self.store = SegmentStore(budget)
        self.playlist: MediaPlaylist | None = None
        self.stopped_at: float | None = None  # monotonic time of the last stop, None while live
        self.shrunk = 0  # listed segments dropped to respect a byte bound
        self._disk = disk

    # -- reading -------------------------------------------------------------

    def rendered(self) -> bytes | None:
        if self.playlist is None or not self.playlist.entries:
            return None
        return self.playlist.render()

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
        self.playlist.render()
        self._mirror_playlist()
        return bool(self.playlist.entries)

    def add_segment(self, segment: Segment, prefix: str, discontinuity: bool) -> None:
        playlist = self.playlist
        if playlist is None:
            playlist = self.playlist = MediaPlaylist(segment.kind, self.settings.segment_duration)
        elif playlist.kind != segment.kind:
            log.info("room %s switches to %s segments", self.slug, segment.kind)
            while playlist.entries:
                self.store.retire(playlist.pop_oldest().uri)
            playlist.kind = segment.kind
            discontinuity = True
        map_uri = None
        if segment.init is not None:
            map_uri = init_name(prefix, segment.init_id)
            if map_uri not in self.store:
                self._put(map_uri, SegmentData(segment.init, CONTENT_TYPES["init"], 0.0))
        sequence = playlist.next_sequence
        name = f"{prefix}-{sequence}.{EXTENSIONS[segment.kind]}"
        self._put(name, SegmentData(segment.data, CONTENT_TYPES[segment.kind], segment.duration), map_uri)
        wall = segment.wall_start
        if playlist.entries:  # never let the date go back (a reconnect, an encoder ahead of real time)
            last = playlist.entries[-1]
            wall = max(wall, last.program_date_time + last.duration)
        playlist.append(PlaylistEntry(
            sequence, name, segment.duration, wall, discontinuity or segment.discontinuity, map_uri,
        ))
        while len(playlist.entries) > self.settings.window:
            self.store.retire(playlist.pop_oldest().uri)
        while self.store.retired_count > self.settings.grace_segments:
            self._free_oldest_retired()
        while self.store.bytes > self.settings.max_stream_bytes and self.evict_one():
            pass
        playlist.render()
        self._mirror_playlist()

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
        self.playlist = None
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
