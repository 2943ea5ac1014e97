"""The origin's ``SegmentSource``: the in-process HLS service.

Plain HLS is read without waiting. LL-HLS rooms honour the delivery directives
(see ``livecast.hls.blocking``): a playlist request with ``_HLS_msn`` (and
``_HLS_part``) is held until that segment or part exists, a GET of the part named
by the preload hint is held until the part is complete; both give up after three
target durations (503), and a stream that ends answers at once (the playlist with
EXT-X-ENDLIST; 404 for a part that will never come).

Cache lifetimes (Apple's LL-HLS guidance: requests with directives have unique URLs
and may be cached; the plain playlist URL must stay fresh):

- plain playlist, regular HLS: half a target duration (at least 1 s);
- plain playlist, LL-HLS: 1 s, the shortest lifetime HTTP can state (a player only
  loads it to start, then uses blocking requests);
- blocking playlist responses (``_HLS_msn`` present): six target durations, the
  lifetime Apple suggests; a cached answer still contains what the URL asked for;
- parts and segments: like every segment, long-lived and immutable, since a part
  URL is unique per session and never changes content (``delivery.routes`` headers).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from livecast.core.errors import Unavailable
from livecast.delivery.holder import HolderPull
from livecast.delivery.source import PlaylistReply
from livecast.hls.blocking import (
    HOLD_TARGET_DURATIONS,
    Directives,
    check_reachable,
    parse_directives,
    wanted_present,
)
from livecast.hls.reports import rendition_reports
from livecast.hls.room import PART_NAME, Room
from livecast.hls.service import DEFAULT_RENDITION
from livecast.hls.service import HlsService
from livecast.hls.store import SegmentData

LL_PLAYLIST_CACHE = "public, max-age=1"
NO_DIRECTIVES = Directives()
BLOCKING_TARGET_DURATIONS = 6


def playlist_cache_control(target_duration: int) -> str:
    """A live playlist may be cached for at most half a segment (at least the 1 s HTTP can say)."""
    return f"public, max-age={max(1, target_duration // 2)}"


def blocking_cache_control(target_duration: int) -> str:
    return f"public, max-age={BLOCKING_TARGET_DURATIONS * target_duration}"


class OriginSource:
    def __init__(self, hls: HlsService) -> None:
        self.hls = hls
        # Rooms another origin holds (cluster.redis): pulled from there (delivery.holder).
        self.remote: HolderPull | None = None

    async def playlist(self, slug: str, query: Mapping[str, str]) -> PlaylistReply | None:
        room = self.hls.room(slug)
        if self.remote is not None and (room is None or room.live_prefix is None):
            reply = await self.remote.playlist(slug, query)
            if reply is not None:
                return reply
        if room is None:
            return None
        if room.resume_at is not None and room.playlist is None and room.live_prefix is not None:
            # continuing another origin's playlist, first segment not cut yet: players wait
            raise Unavailable("the stream is resuming; retry", code="room_moving")
        if room.low_latency is not None:
            return await self._ll_playlist(room, query) if query else self._reply(room, NO_DIRECTIVES)
        return self._plain(room)

    @staticmethod
    def _plain(room: Room) -> PlaylistReply | None:
        body = room.rendered()
        if body is None:
            return None
        assert room.playlist is not None
        return PlaylistReply(body, playlist_cache_control(room.playlist.target_duration))

    async def segment(self, slug: str, name: str) -> SegmentData | None:
        item = self.hls.segment(slug, name)
        if item is not None:
            return item
        room = self.hls.room(slug)
        if room is None or room.low_latency is None or room.live_prefix is None:
            return await self.remote.segment(slug, name) if self.remote is not None else None
        return await self._hinted_part(room, name)

    async def rendition_playlist(self, slug: str, rendition: str,
                                 query: Mapping[str, str] | None = None) -> PlaylistReply | None:
        """A named rendition's playlist (LL-HLS directives honoured as for the source)."""
        room = self.hls.room(slug, rendition)
        if room is None:
            return None
        if room.low_latency is not None:
            return await self._ll_playlist(room, query) if query else self._reply(room, NO_DIRECTIVES)
        return self._plain(room)

    async def rendition_segment(self, slug: str, rendition: str, name: str) -> SegmentData | None:
        item = self.hls.segment(slug, name, rendition)
        room = self.hls.room(slug, rendition)
        if item is not None or room is None or room.low_latency is None or room.live_prefix is None:
            return item
        return await self._hinted_part(room, name)

    # -- LL-HLS --------------------------------------------------------------

    async def _ll_playlist(self, room: Room, query: Mapping[str, str]) -> PlaylistReply | None:
        playlist = room.playlist
        if playlist is not None and playlist.ended:  # directives are ignored once the stream ended
            return self._reply(room, NO_DIRECTIVES)
        wanted = parse_directives(query)
        if not wanted.blocking:
            return self._reply(room, wanted)
        if playlist is None:
            return None  # nothing published yet: no client can know a sequence number
        check_reachable(playlist, wanted, self._parts_per_segment(room))
        if not wanted_present(playlist, wanted):
            await self._hold(room, lambda: room.playlist is None or room.playlist.ended
                             or wanted_present(room.playlist, wanted))
        return self._reply(room, wanted)

    def _reply(self, room: Room, wanted: Directives) -> PlaylistReply | None:
        playlist = room.playlist
        if playlist is None or not (playlist.entries or playlist.pending):
            return None
        body = playlist.render(skip=wanted.skip)
        if not playlist.ended:
            body += rendition_reports(self.hls, room.slug, self._rendition_of(room))
        if wanted.blocking and not playlist.ended:
            return PlaylistReply(body, blocking_cache_control(playlist.target_duration))
        return PlaylistReply(body, LL_PLAYLIST_CACHE if not playlist.ended else
                             playlist_cache_control(playlist.target_duration))

    def _rendition_of(self, room: Room) -> str:
        return next((name for name in self.hls.renditions(room.slug)
                     if self.hls.room(room.slug, name) is room), DEFAULT_RENDITION)

    async def _hinted_part(self, room: Room, name: str) -> SegmentData | None:
        """A part that is not complete yet: wait for it if it is the hinted one (or a
        few after it, within the Advance Part Limit) of the live session."""
        match = PART_NAME.match(name)
        playlist = room.playlist
        if match is None or playlist is None or playlist.low_latency is None:
            return None
        prefix, index = match.group(1), int(match.group(2))
        hint = playlist.preload_hint
        hinted = PART_NAME.match(hint) if hint is not None else None
        if hinted is None or hinted.group(1) != prefix or prefix != room.live_prefix:
            return None
        if not 0 <= index - int(hinted.group(2)) <= playlist.low_latency.advance_part_limit:
            return None
        await self._hold(room, lambda: name in room.store or room.live_prefix != prefix)
        return room.segment(name)

    async def _hold(self, room: Room, done: Callable[[], bool]) -> None:
        """Wait for room changes until ``done()``; 503 after three target durations."""
        playlist = room.playlist
        target = playlist.target_duration if playlist is not None else max(1.0, room.settings.segment_duration)
        try:
            async with asyncio.timeout(HOLD_TARGET_DURATIONS * target):
                while not done():
                    await room.signal.wait()
        except TimeoutError as err:
            raise Unavailable("the requested segment or part did not appear in time", code="hls_timeout") from err

    @staticmethod
    def _parts_per_segment(room: Room) -> int:
        settings = room.settings
        return max(1, round(settings.segment_duration / settings.part_target))
