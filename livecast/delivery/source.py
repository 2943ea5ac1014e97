"""What the HLS HTTP handlers read from: the origin's HLS service or an edge's cache.

``SegmentSource`` is the one interface behind ``delivery.routes``; the origin implements
it in ``delivery.origin`` and an edge in ``edge.source``. A ``RenditionSource`` also
serves named renditions (``/hls/{slug}/{rendition}/...``); only the origin is one today.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


class Segment(Protocol):
    @property
    def data(self) -> bytes | bytearray: ...  # an origin's TS segment is a bytearray
    @property
    def content_type(self) -> str: ...


@dataclass(frozen=True)
class PlaylistReply:
    body: bytes
    cache_control: str = "no-cache"


class SegmentSource(Protocol):
    async def playlist(self, slug: str, query: Mapping[str, str]) -> PlaylistReply | None:
        """The room's media playlist; ``query`` holds the request's query (LL-HLS directives)."""

    async def segment(self, slug: str, name: str) -> Segment | None: ...


class RenditionSource(Protocol):
    """A source that also serves named renditions (the origin; edges serve the default only)."""

    async def rendition_playlist(self, slug: str, rendition: str,
                                 query: Mapping[str, str] | None = None) -> PlaylistReply | None: ...

    async def rendition_segment(self, slug: str, rendition: str, name: str) -> Segment | None: ...


class MasterSource(Protocol):
    """A source of multivariant playlists (the origin's transcoder, when a ladder is on)."""

    async def master_playlist(self, slug: str) -> PlaylistReply | None: ...


@dataclass(frozen=True)
class Still:
    """A live room's thumbnail (JPEG) and how long it may be cached."""

    body: bytes
    cache_control: str


class ThumbnailSource(Protocol):
    async def thumbnail(self, slug: str) -> Still | None: ...
