"""The origin's ``SegmentSource``: the in-process HLS service, read without waiting."""

from __future__ import annotations

from collections.abc import Mapping

from livecast.edge.hls_routes import PlaylistReply
from livecast.hls.service import HlsService
from livecast.hls.store import SegmentData


def playlist_cache_control(target_duration: int) -> str:
    """A live playlist may be cached for at most half a segment (at least the 1 s HTTP can say)."""
    return f"public, max-age={max(1, target_duration // 2)}"


class OriginSource:
    def __init__(self, hls: HlsService) -> None:
        self.hls = hls

    async def playlist(self, slug: str, query: Mapping[str, str]) -> PlaylistReply | None:
        body = self.hls.playlist(slug)
        if body is None:
            return None
        return PlaylistReply(body, playlist_cache_control(self.hls.target_duration(slug) or 1))

    async def segment(self, slug: str, name: str) -> SegmentData | None:
        return self.hls.segment(slug, name)
