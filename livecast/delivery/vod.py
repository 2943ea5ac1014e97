"""HTTP delivery of stored recordings: ``/vod/{id}/index.m3u8`` (a VOD playlist) and the
segments it lists. A private recording needs its owner's or an admin's session, or the
``exp``/``sig`` query of a signed URL (carried into every URI of the playlist)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiohttp import web

from livecast.api.auth import current_user
from livecast.api.clips import viewable_clip
from livecast.api.paging import parse_int
from livecast.core.errors import NotFound
from livecast.delivery.routes import PLAYLIST_TYPE, preflight, segment_response
from livecast.hls.muxer import CONTENT_TYPES
from livecast.recording.clips import CLIPS
from livecast.recording.service import RECORDINGS, Recording

log = logging.getLogger(__name__)

_CORS = {"Access-Control-Allow-Origin": "*"}
PUBLIC_MAX_AGE = 3600


@dataclass(frozen=True)
class _Stored:
    data: bytes
    content_type: str


async def _viewable(request: web.Request) -> Recording:
    service = request.app[RECORDINGS]
    recording_id = parse_int(request.match_info["id"], 1, 2**62)
    if recording_id is None:
        raise NotFound("no such recording")
    recording = await service.require(recording_id)
    if recording.visibility != "public":
        user = await current_user(request)
        manager = user is not None and (user.role == "admin" or user.id == recording.owner_id)
        service.check_view(recording, manager, request.query.get("exp"), request.query.get("sig"))
    return recording


def _signature(request: web.Request) -> str:
    exp, sig = request.query.get("exp"), request.query.get("sig")
    return f"exp={exp}&sig={sig}" if exp and sig else ""


async def vod_playlist(request: web.Request) -> web.Response:
    recording = await _viewable(request)
    body = await request.app[RECORDINGS].playlist(recording, _signature(request))
    # A finished recording's playlist never changes; one being recorded grows.
    cache = f"public, max-age={PUBLIC_MAX_AGE}" if recording.status != "recording" else "no-cache"
    if recording.visibility != "public":
        cache = "private, no-cache"
    return web.Response(body=body, headers={**_CORS, "Content-Type": PLAYLIST_TYPE, "Cache-Control": cache})


async def vod_segment(request: web.Request) -> web.Response:
    recording = await _viewable(request)
    name = request.match_info["name"]
    data = await request.app[RECORDINGS].read(recording, name)
    kind = "init" if name.endswith(".mp4") else "fmp4" if name.endswith(".m4s") else "mpegts"
    response = segment_response(request, _Stored(data, CONTENT_TYPES[kind]))
    response.headers["Cache-Control"] = _object_caching(recording.visibility)
    return response


def _object_caching(visibility: str) -> str:
    """Stored media never changes, but a public recording may turn private: shared caches
    (edges, CDNs) keep a public object at most PUBLIC_MAX_AGE seconds."""
    if visibility != "public":
        return f"private, max-age={PUBLIC_MAX_AGE}"
    return f"public, max-age={PUBLIC_MAX_AGE}, immutable"


async def vod_download(request: web.Request) -> web.StreamResponse:
    """The whole recording as one MP4 (remuxed once, then a file; ``Range`` answered)."""
    recording = await _viewable(request)
    path = await request.app[RECORDINGS].download(recording)
    return web.FileResponse(path, headers={
        **_CORS, "Content-Type": "video/mp4", "Cache-Control": _object_caching(recording.visibility),
        "Content-Disposition": f'attachment; filename="{recording.slug}-{recording.id}.mp4"'})


async def dvr_playlist(request: web.Request) -> web.Response:
    """Rewind while live: the recorded broadcast in progress, from storage."""
    service = request.app[RECORDINGS]
    recording = await service.live(request.match_info["slug"])
    if recording is None:
        raise NotFound("this room is not being recorded now")
    if recording.visibility != "public":
        user = await current_user(request)
        manager = user is not None and (user.role == "admin" or user.id == recording.owner_id)
        service.check_view(recording, manager, None, None)
    body = await service.dvr_playlist(recording)
    return web.Response(body=body, headers={**_CORS, "Content-Type": PLAYLIST_TYPE, "Cache-Control": "no-cache"})


async def clip_mp4(request: web.Request) -> web.Response:
    """A clip's MP4 (immutable; ``Range`` answered)."""
    clip = await viewable_clip(request)
    data = await request.app[CLIPS].read(clip)
    response = segment_response(request, _Stored(data, "video/mp4"))
    response.headers["Cache-Control"] = _object_caching(clip.visibility)
    return response


def setup(app: web.Application) -> None:
    """Register before the live HLS routes: /hls/{slug}/dvr.m3u8 is not a live segment."""
    app.router.add_get("/hls/{slug}/dvr.m3u8", dvr_playlist)
    app.router.add_get("/clips/{id}.mp4", clip_mp4)
    app.router.add_get("/vod/{id}/index.m3u8", vod_playlist)
    app.router.add_get("/vod/{id}/download.mp4", vod_download)
    app.router.add_get("/vod/{id}/{name}", vod_segment)
    app.router.add_route("OPTIONS", "/vod/{id}/{name}", preflight)
