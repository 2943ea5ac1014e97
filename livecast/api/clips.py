"""The clips API: cut the last N seconds of a recorded live room, or a range of a recording,
into a clip (logged-in users, rate limited per account); list, read and delete clips."""

from __future__ import annotations

import logging

from aiohttp import web

from livecast.api import openapi, paging
from livecast.api.auth import NO_STORE, current_user, read_body, require_user
from livecast.core.errors import Forbidden, NotFound, RateLimited
from livecast.core.ratelimit import Limiter, LimiterFactory, local_limiter
from livecast.keys import ROOMS, SETTINGS
from livecast.recording.clips import CLIPS, Clip
from livecast.recording.service import Recording
from livecast.users import User

log = logging.getLogger(__name__)

routes = web.RouteTableDef()
CLIP_LIMIT: web.AppKey[Limiter] = web.AppKey("clip_limit")


def _manages(user: User | None, owner_id: int) -> bool:
    return user is not None and (user.role == "admin" or user.id == owner_id)


async def viewable_clip(request: web.Request) -> Clip:
    """The clip of the path's ``id``, if the requester may see it."""
    clip_id = paging.parse_int(request.match_info["id"], 1, 2**62)
    if clip_id is None:
        raise NotFound("no such clip")
    clip = await request.app[CLIPS].require(clip_id)
    if clip.visibility != "public" and not _manages(await current_user(request), clip.owner_id):
        raise Forbidden("this clip is private")
    return clip


@routes.post("/api/v1/rooms/{slug}/clips")
async def create_clip(request: web.Request) -> web.Response:
    user = await require_user(request)
    room = await request.app[ROOMS].require(request.match_info["slug"])
    data = await read_body(request)
    wait = await request.app[CLIP_LIMIT].hit(str(user.id))
    if wait > 0:
        raise RateLimited("too many clips; try again later", retry_after=wait)

    def manager(recording: Recording) -> bool:
        return _manages(user, recording.owner_id)

    clip = await request.app[CLIPS].create(room.slug, user.id, manager, data)
    return web.json_response({"clip": clip.to_json()}, status=201, headers=NO_STORE)


@routes.get("/api/v1/rooms/{slug}/clips")
async def list_clips(request: web.Request) -> web.Response:
    room = await request.app[ROOMS].require(request.match_info["slug"])
    viewer = await current_user(request)
    limit = paging.limit_query(request)
    after = paging.cursor_query(request, 1)
    found = await request.app[CLIPS].list_room(room.slug, limit + 1, after[0] if after else None)
    found, next_cursor = paging.page(found, limit, lambda c: (c.id,))
    shown = [c.to_json() for c in found if c.visibility == "public" or _manages(viewer, c.owner_id)]
    return web.json_response({"clips": shown, "next_cursor": next_cursor}, headers=NO_STORE)


@routes.get("/api/v1/clips/{id}")
async def get_clip(request: web.Request) -> web.Response:
    return web.json_response({"clip": (await viewable_clip(request)).to_json()}, headers=NO_STORE)


@routes.delete("/api/v1/clips/{id}")
async def delete_clip(request: web.Request) -> web.Response:
    user = await require_user(request)
    clip = await viewable_clip(request)
    if clip.user_id != user.id and not _manages(user, clip.owner_id):
        raise Forbidden("only the clip's maker, the room's owner or an admin may delete it")
    await request.app[CLIPS].delete(clip)
    return web.Response(status=204)


def setup(app: web.Application, limiters: LimiterFactory = local_limiter) -> None:
    settings = app[SETTINGS].recording
    app[CLIP_LIMIT] = limiters("clips", settings.clips_per_minute, 60.0)
    app.add_routes(routes)


_CLIP_PROPS = {
    "id": {"type": "integer"}, "room": {"type": "string"}, "recording": {"type": "integer", "nullable": True},
    "title": {"type": "string"}, "visibility": {"type": "string", "enum": ["public", "private"]},
    "start": {"type": "number", "description": "offset (s) in the recording"},
    "duration": {"type": "number"}, "created_at": {"type": "string", "format": "date-time"},
    "url": {"type": "string", "description": "the MP4"}, "page": {"type": "string"},
}
openapi.add_schema("Clip", {"type": "object", "properties": _CLIP_PROPS})
openapi.add_schema("ClipEnvelope", {"type": "object", "properties": {"clip": {"$ref": "#/components/schemas/Clip"}}})
openapi.add_schema("ClipList", {"type": "object", "required": ["clips", "next_cursor"], "properties": {
    "clips": {"type": "array", "items": {"$ref": "#/components/schemas/Clip"}},
    "next_cursor": {"type": "string", "nullable": True}}})
openapi.add_schema("ClipCreate", {"type": "object", "properties": {
    "seconds": {"type": "number", "minimum": 1, "description": "the last N seconds of the live room"},
    "recording": {"type": "integer", "minimum": 1, "description": "or: a recording of the room"},
    "from": {"type": "number", "minimum": 0}, "to": {"type": "number", "minimum": 0},
    "title": {"type": "string", "maxLength": 100}}})
openapi.document("POST", "/api/v1/rooms/{slug}/clips", "Make a clip (logged-in users, rate limited)",
                 tags=["clips"], auth="user", body="ClipCreate",
                 responses={201: "ClipEnvelope", 403: "the recording is private", 404: "no such room or recording",
                            409: "not_recording: the room is not live with recording on", 429: "too many clips"},
                 description="`{\"seconds\": N}`: the last N seconds of the live room (recording on); "
                             "`{\"recording\": id, \"from\": S, \"to\": S}`: a range of a recording. "
                             "Cut at segment boundaries (keyframes), at most recording.max_clip_seconds.")
openapi.document("GET", "/api/v1/rooms/{slug}/clips", "A room's clips, newest first", tags=["clips"],
                 auth="optional", responses={200: "ClipList", 404: "no such room"}, query=openapi.page_params())
openapi.document("GET", "/api/v1/clips/{id}", "One clip", tags=["clips"], auth="optional",
                 responses={200: "ClipEnvelope", 403: "private", 404: "no such clip"})
openapi.document("DELETE", "/api/v1/clips/{id}", "Delete a clip (its maker, the room's owner or an admin)",
                 tags=["clips"], auth="user", responses={204: None, 403: "not allowed", 404: "no such clip"})
