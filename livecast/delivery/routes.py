"""HTTP delivery of HLS playlists and segments over any ``SegmentSource``.

The origin's source is the in-process HLS service; an edge's source is its cache of
the origin. Sources are async: an edge may have to fetch, and an LL-HLS blocking
playlist request waits for the segment or part it asks for. The source says how long
a playlist may be cached (``PlaylistReply.cache_control``); a segment URL never changes
content, so segments are cacheable for a long time and immutable. Single byte ranges
are honoured on segments. Sources raise ``LivecastError``s (400 for bad LL-HLS
directives, 502/504 when an edge cannot reach the origin), answered as JSON.
"""

from __future__ import annotations

import re

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from livecast.core.http import error_response
from livecast.delivery.source import (
    MasterSource,
    PlaylistReply,
    RenditionSource,
    Segment,
    SegmentSource,
    ThumbnailSource,
)

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
SEGMENT_MAX_AGE = 86400
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_SLUG = re.compile(r"^[a-z0-9-]{1,40}$")
_RENDITION = re.compile(r"^[a-z0-9_-]{1,32}$")
_RANGE = re.compile(r"\s*bytes=([0-9]{0,18})-([0-9]{0,18})\s*")  # 18 digits: int() stays cheap and in range


SOURCE: web.AppKey[SegmentSource] = web.AppKey("hls_source")
RENDITIONS: web.AppKey[RenditionSource] = web.AppKey("hls_renditions")
MASTER: web.AppKey[MasterSource] = web.AppKey("hls_master")
MASTER_NAME = "master.m3u8"
THUMBNAILS: web.AppKey[ThumbnailSource] = web.AppKey("hls_thumbnails")
THUMBNAIL_NAME = "thumbnail.jpg"

_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Content-Length, Content-Range, Accept-Ranges",
}
_SEGMENT_CACHING = {
    "Cache-Control": f"public, max-age={SEGMENT_MAX_AGE}, immutable",
    "Accept-Ranges": "bytes",
}

# Response headers are built once, not per request: ``web.Response`` copies what it is
# given, so these read-only maps are never changed by a response.
_segment_headers: dict[str, CIMultiDictProxy[str]] = {}
_playlist_headers: dict[str, CIMultiDictProxy[str]] = {}


def _headers_for_playlist(cache_control: str) -> CIMultiDictProxy[str]:
    headers = _playlist_headers.get(cache_control)
    if headers is None:  # a handful of distinct lifetimes per process
        if len(_playlist_headers) > 64:
            _playlist_headers.clear()
        headers = CIMultiDictProxy(CIMultiDict({**_CORS, "Cache-Control": cache_control,
                                                "Content-Type": PLAYLIST_TYPE}))
        _playlist_headers[cache_control] = headers
    return headers


def _headers_for_segment(content_type: str) -> CIMultiDictProxy[str]:
    headers = _segment_headers.get(content_type)
    if headers is None:  # one per container type (MPEG-TS, fMP4 init and fragments)
        headers = CIMultiDictProxy(CIMultiDict({**_CORS, **_SEGMENT_CACHING, "Content-Type": content_type}))
        _segment_headers[content_type] = headers
    return headers


def _not_found(what: str) -> web.Response:
    resp = error_response(404, "not_found", what)
    resp.headers.update(_CORS)
    resp.headers["Cache-Control"] = "no-cache"
    return resp


async def playlist(request: web.Request) -> web.Response:
    slug = request.match_info["slug"]
    reply = await request.app[SOURCE].playlist(slug, request.query) if _SLUG.match(slug) else None
    return _playlist_response(reply, f"room {slug!r} is not live")


async def rendition_playlist(request: web.Request) -> web.Response:
    slug, rendition = request.match_info["slug"], request.match_info["rendition"]
    reply = None
    if _SLUG.match(slug) and _RENDITION.match(rendition):
        reply = await request.app[RENDITIONS].rendition_playlist(slug, rendition, request.query)
    return _playlist_response(reply, f"room {slug!r} has no rendition {rendition!r}")


def _playlist_response(reply: PlaylistReply | None, missing: str) -> web.Response:
    if reply is None:
        return _not_found(missing)
    return web.Response(body=reply.body, headers=_headers_for_playlist(reply.cache_control))


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """One ``bytes=`` range -> (start, end inclusive); None if unsatisfiable or malformed."""
    m = _RANGE.fullmatch(header)
    if not m or (not m.group(1) and not m.group(2)):
        return None
    if m.group(1):
        start = int(m.group(1))
        end = int(m.group(2)) if m.group(2) else size - 1
    else:
        start = max(size - int(m.group(2)), 0)
        end = size - 1
    end = min(end, size - 1)
    if start > end or start >= size:
        return None
    return start, end


async def master_playlist(request: web.Request) -> web.Response:
    """/hls/{slug}/master.m3u8: the multivariant playlist (404 without a ladder)."""
    slug = request.match_info["slug"]
    source = request.app.get(MASTER)
    reply = await source.master_playlist(slug) if source is not None and _SLUG.match(slug) else None
    return _playlist_response(reply, f"room {slug!r} has no multivariant playlist")


async def thumbnail(request: web.Request) -> web.Response:
    """/hls/{slug}/thumbnail.jpg: the room's latest thumbnail (404 without thumbnails)."""
    slug = request.match_info["slug"]
    source = request.app.get(THUMBNAILS)
    still = await source.thumbnail(slug) if source is not None and _SLUG.match(slug) else None
    if still is None:
        return _not_found(f"room {slug!r} has no thumbnail")
    return web.Response(body=still.body, content_type="image/jpeg",
                        headers={**_CORS, "Cache-Control": still.cache_control})


async def segment(request: web.Request) -> web.Response:
    slug, name = request.match_info["slug"], request.match_info["name"]
    seg = None
    if _SLUG.match(slug) and _NAME.match(name) and not name.endswith(".m3u8"):
        seg = await request.app[SOURCE].segment(slug, name)
    return _segment_response(request, seg)


async def rendition_segment(request: web.Request) -> web.Response:
    slug, rendition, name = (request.match_info[k] for k in ("slug", "rendition", "name"))
    seg = None
    if _SLUG.match(slug) and _RENDITION.match(rendition) and _NAME.match(name) and not name.endswith(".m3u8"):
        seg = await request.app[RENDITIONS].rendition_segment(slug, rendition, name)
    return _segment_response(request, seg)


def _segment_response(request: web.Request, seg: Segment | None) -> web.Response:
    if seg is None:
        return _not_found("no such segment")
    data = seg.data
    range_header = request.headers.get("Range")
    if range_header:
        headers = {**_CORS, **_SEGMENT_CACHING}
        rng = _parse_range(range_header, len(data))
        if rng is None:
            headers["Content-Range"] = f"bytes */{len(data)}"
            resp = error_response(416, "range_not_satisfiable", "requested range not satisfiable")
            resp.headers.update(headers)
            return resp
        start, end = rng
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        return web.Response(status=206, body=data[start:end + 1], content_type=seg.content_type, headers=headers)
    return web.Response(body=data, headers=_headers_for_segment(seg.content_type))


segment_response = _segment_response  # for other stored media (recordings): same caching and ranges


async def preflight(request: web.Request) -> web.Response:
    return web.Response(status=204, headers={
        **_CORS,
        "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
        "Access-Control-Allow-Headers": "Range",
        "Access-Control-Max-Age": "86400",
    })


def setup(app: web.Application, source: SegmentSource, renditions: RenditionSource | None = None) -> None:
    app[SOURCE] = source
    add_routes(app)
    if renditions is not None:
        add_rendition_routes(app, renditions)


def add_rendition_routes(app: web.Application, renditions: RenditionSource) -> None:
    """/hls/{slug}/{rendition}/... served from ``renditions``."""
    app[RENDITIONS] = renditions
    app.router.add_get("/hls/{slug}/{rendition}/index.m3u8", rendition_playlist)
    app.router.add_get("/hls/{slug}/{rendition}/{name}", rendition_segment)
    app.router.add_route("OPTIONS", "/hls/{slug}/{rendition}/{name}", preflight)


def set_master(app: web.Application, source: MasterSource) -> None:
    """Serve /hls/{slug}/master.m3u8 from ``source``."""
    app[MASTER] = source


def set_thumbnails(app: web.Application, source: ThumbnailSource) -> None:
    """Serve /hls/{slug}/thumbnail.jpg from ``source``."""
    app[THUMBNAILS] = source


def add_routes(app: web.Application) -> None:
    """The HLS routes; ``app[SOURCE]`` must be set before the app serves requests."""
    app.router.add_get("/hls/{slug}/index.m3u8", playlist)
    app.router.add_get(f"/hls/{{slug}}/{MASTER_NAME}", master_playlist)  # before the segment route
    app.router.add_get(f"/hls/{{slug}}/{THUMBNAIL_NAME}", thumbnail)
    app.router.add_get("/hls/{slug}/{name}", segment)
    app.router.add_route("OPTIONS", "/hls/{slug}/{name}", preflight)
