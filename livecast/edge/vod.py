"""Recordings on an edge: ``/vod/...`` (playlists, segments, download.mp4), ``/clips/...``
and ``/hls/{slug}/dvr.m3u8`` come from the origin through the edge's object cache.

Only what the origin calls ``public`` is cached (finished recordings' segments, MP4s and
playlists: immutable or long-lived), and concurrent misses for one URL make one upstream
request. Requests carrying a viewer's credentials (a private recording) are passed to the
origin with them, never cached nor shared. ``Range`` is answered from the cached object.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web

from livecast.delivery.routes import segment_response
from livecast.edge.cache import CachedObject, Coalescer
from livecast.edge.source import EdgeSource, max_age
from livecast.edge.upstream import Fetched

log = logging.getLogger(__name__)

MAX_TTL = 86400.0
_CREDENTIALS = ("Cookie", "Authorization")
_CORS = {"Access-Control-Allow-Origin": "*"}


class EdgeVod:
    def __init__(self, source: EdgeSource) -> None:
        self.source = source
        self._fetches: Coalescer[CachedObject] = Coalescer()

    async def handle(self, request: web.Request) -> web.Response:
        path = request.rel_url.path_qs
        key = ("vod", path)
        item = self.source.cache.get(key)
        if item is not None and item.fresh(time.monotonic()):
            self.source.stats.hits["vod"] += 1
        else:
            self.source.stats.misses["vod"] += 1
            credentials = {h: request.headers[h] for h in _CREDENTIALS if h in request.headers}
            if credentials:
                item = self._store(key, await self._get(path, credentials))
            else:
                item = await self._fetches.run(key, lambda: self._fetch(key, path))
        return self._respond(request, item)

    async def _fetch(self, key: tuple[str, str], path: str) -> CachedObject:
        return self._store(key, await self._get(path, {}))

    async def _get(self, path: str, headers: dict[str, str]) -> Fetched:
        fetched = await self.source.client.get(path, headers=headers, timeout=max(30.0, self.source.client.timeout))
        self.source.stats.upstream_bytes += len(fetched.body)
        return fetched

    def _store(self, key: tuple[str, str], fetched: Fetched) -> CachedObject:
        cache_control = fetched.headers.get("Cache-Control", "no-cache")
        ttl = min(max_age(cache_control) or 0.0, MAX_TTL)
        item = CachedObject(fetched.status, fetched.body,
                            fetched.headers.get("Content-Type", "application/octet-stream"), cache_control,
                            time.monotonic() + ttl)
        if fetched.status == 200 and "public" in cache_control and ttl > 0:
            self.source.cache.put(key, item)
        return item

    @staticmethod
    def _respond(request: web.Request, item: CachedObject) -> web.Response:
        if item.status == 200 and "immutable" in item.cache_control:
            response = segment_response(request, item)
            response.headers["Cache-Control"] = item.cache_control
            return response
        return web.Response(status=item.status, body=item.body, headers={
            **_CORS, "Content-Type": item.content_type, "Cache-Control": item.cache_control})


def setup(app: web.Application, source: EdgeSource) -> None:
    """Register before the live HLS routes (dvr.m3u8 is not a live segment)."""
    handler = EdgeVod(source).handle
    app.router.add_get("/hls/{slug}/dvr.m3u8", handler)
    app.router.add_get("/vod/{tail:.+}", handler)
    app.router.add_get("/clips/{tail:.+}", handler)
