"""An edge relays a room's transcoding ladder: the multivariant playlist, the renditions'
playlists and segments, and the live thumbnail, from the origin.

Each object is cached as long as the origin's ``max-age`` allows (segments long, playlists
half a target duration, LL-HLS blocking answers by their own lifetime; requests with
directives are keyed on them), and concurrent misses make one upstream request. Unlike
the source rendition (``edge.source``) there is no per-room "newest playlist" bookkeeping:
a rendition's playlist is what the origin last said within its max-age.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from urllib.parse import urlencode

from livecast.delivery.source import PlaylistReply, Still
from livecast.edge.cache import CachedObject, Coalescer, ObjectCache
from livecast.edge.source import DIRECTIVES, SEGMENT_MAX_TTL, _upstream_error, aged, max_age
from livecast.edge.upstream import OriginClient

HOLD_TIMEOUT = 30.0  # an LL-HLS blocking request may be held this long by the origin


class EdgeRenditions:
    def __init__(self, client: OriginClient, cache: ObjectCache) -> None:
        self.client = client
        self.cache = cache
        self._fetches: Coalescer[object] = Coalescer()

    async def master_playlist(self, slug: str) -> PlaylistReply | None:
        item = await self._get(f"/hls/{slug}/master.m3u8")
        return PlaylistReply(item.body, aged(item.cache_control, item.age(time.monotonic()))) if item else None

    async def rendition_playlist(self, slug: str, rendition: str,
                                 query: Mapping[str, str] | None = None) -> PlaylistReply | None:
        directives = {k: query[k] for k in DIRECTIVES if k in query} if query else {}
        qs = urlencode(sorted(directives.items()))
        path = f"/hls/{slug}/{rendition}/index.m3u8" + (f"?{qs}" if qs else "")
        item = await self._get(path, held=bool(qs))
        return PlaylistReply(item.body, aged(item.cache_control, item.age(time.monotonic()))) if item else None

    async def rendition_segment(self, slug: str, rendition: str, name: str) -> CachedObject | None:
        return await self._get(f"/hls/{slug}/{rendition}/{name}")

    async def thumbnail(self, slug: str) -> Still | None:
        item = await self._get(f"/hls/{slug}/thumbnail.jpg")
        return Still(item.body, aged(item.cache_control, item.age(time.monotonic()))) if item else None

    async def _get(self, path: str, held: bool = False) -> CachedObject | None:
        key = ("relay", path)
        item = self.cache.get(key)
        if item is not None and item.fresh(time.monotonic()):
            return item
        result = await self._fetches.run(key, lambda: self._fetch(path, held))
        return result if isinstance(result, CachedObject) else None

    async def _fetch(self, path: str, held: bool) -> CachedObject | None:
        fetched = await (self.client.get(path, timeout=HOLD_TIMEOUT, retry_statuses=frozenset({502})) if held
                         else self.client.get(path))
        if fetched.status == 404:
            return None
        if fetched.status != 200:
            raise _upstream_error(fetched)
        cache_control = fetched.headers.get("Cache-Control", "no-cache")
        ttl = min(max_age(cache_control) or 0.0, SEGMENT_MAX_TTL)
        item = CachedObject(200, fetched.body, fetched.headers.get("Content-Type", "application/octet-stream"),
                            cache_control, time.monotonic() + ttl)
        if ttl > 0:
            self.cache.put(("relay", path), item)
        return item
