"""The recordings API: a room's past broadcasts, one recording (visibility, deletion, a
signed URL for a private one) and a room's recording choice. Owners and admins manage."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from livecast.api import openapi, paging
from livecast.api.auth import NO_STORE, current_user, read_body, require_user
from livecast.api.rooms import ROOM_UPDATERS, RoomUpdater
from livecast.core.errors import Forbidden, NotFound, ValidationError
from livecast.keys import ROOMS
from livecast.recording.service import RECORDINGS, Recording
from livecast.rooms import Room
from livecast.users import User

log = logging.getLogger(__name__)

routes = web.RouteTableDef()
MAX_SECONDS = 10_000_000.0


def _manages(user: User | None, recording: Recording) -> bool:
    return user is not None and (user.role == "admin" or user.id == recording.owner_id)


async def _recording(request: web.Request) -> Recording:
    recording_id = paging.parse_int(request.match_info["id"], 1, 2**62)
    if recording_id is None:
        raise NotFound("no such recording")
    return await request.app[RECORDINGS].require(recording_id)


async def _managed(request: web.Request) -> tuple[User, Recording]:
    user = await require_user(request)
    recording = await _recording(request)
    if not _manages(user, recording):
        raise Forbidden("only the room's owner or an admin may do this")
    return user, recording


@routes.get("/api/v1/rooms/{slug}/recordings")
async def list_recordings(request: web.Request) -> web.Response:
    """Newest first; private recordings only for the room's owner and admins."""
    room = await request.app[ROOMS].require(request.match_info["slug"])
    viewer = await current_user(request)
    limit = paging.limit_query(request)
    after = paging.cursor_query(request, 1)
    found = await request.app[RECORDINGS].list_room(room.slug, limit + 1, after[0] if after else None)
    found, next_cursor = paging.page(found, limit, lambda r: (r.id,))
    shown = [r.to_json() for r in found if r.visibility == "public" or _manages(viewer, r)]
    return web.json_response({"recordings": shown, "next_cursor": next_cursor}, headers=NO_STORE)


@routes.get("/api/v1/recordings/{id}")
async def get_recording(request: web.Request) -> web.Response:
    recording = await _recording(request)
    viewer = await current_user(request)
    if recording.visibility != "public" and not _manages(viewer, recording):
        raise Forbidden("this recording is private")
    return web.json_response({"recording": recording.to_json()}, headers=NO_STORE)


def _seconds(request: web.Request, name: str, default: float) -> float:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = float(raw) if len(raw) <= 20 else -1.0
    except ValueError:
        value = -1.0
    if not 0 <= value <= MAX_SECONDS:  # also refuses nan
        raise ValidationError(f"{name} must be a number of seconds, 0..{MAX_SECONDS}", field=name)
    return value


@routes.get("/api/v1/recordings/{id}/chat")
async def recording_chat(request: web.Request) -> web.Response:
    """The broadcast's comments and gifts, each with its offset (s) in the recording."""
    recording = await _recording(request)
    viewer = await current_user(request)
    service = request.app[RECORDINGS]
    service.check_view(recording, _manages(viewer, recording), request.query.get("exp"), request.query.get("sig"))
    start, end = _seconds(request, "from", 0.0), _seconds(request, "to", MAX_SECONDS)
    events = await service.chat(recording, start, end)
    return web.json_response({"recording": recording.id, "events": events}, headers=NO_STORE)


@routes.patch("/api/v1/recordings/{id}")
async def update_recording(request: web.Request) -> web.Response:
    _, recording = await _managed(request)
    data = await read_body(request)
    recording = await request.app[RECORDINGS].set_visibility(recording, data.get("visibility"))
    return web.json_response({"recording": recording.to_json()}, headers=NO_STORE)


@routes.delete("/api/v1/recordings/{id}")
async def delete_recording(request: web.Request) -> web.Response:
    user, recording = await _managed(request)
    await request.app[RECORDINGS].delete(recording)
    log.info("%s deleted recording %d of %s", user.username, recording.id, recording.slug)
    return web.Response(status=204)


@routes.post("/api/v1/recordings/{id}/signed-url")
async def signed_url(request: web.Request) -> web.Response:
    """A URL of the recording's playlist that any player can open until it expires."""
    _, recording = await _managed(request)
    ttl = paging.int_query(request, "ttl", None, 1, 7 * 86400)
    query, expires = request.app[RECORDINGS].signed_query(recording, ttl)
    return web.json_response({"url": f"/vod/{recording.id}/index.m3u8?{query}", "expires": expires},
                             headers=NO_STORE)


@routes.get("/api/v1/rooms/{slug}/recording")
async def get_room_recording(request: web.Request) -> web.Response:
    room = await request.app[ROOMS].require(request.match_info["slug"])
    record = await request.app[RECORDINGS].room_choice(room.slug)
    return web.json_response({"record": record})


@routes.put("/api/v1/rooms/{slug}/recording")
async def set_room_recording(request: web.Request) -> web.Response:
    """Turn recording on or off for the room's next broadcasts (null: the server default).
    An alias of ``PATCH /api/v1/rooms/{slug}`` with ``{"record": ...}``."""
    user = await require_user(request)
    room = await request.app[ROOMS].require(request.match_info["slug"])
    if not room.is_managed_by(user):
        raise Forbidden("only the room's owner or an admin may do this")
    data = await read_body(request)
    if "record" not in data:
        raise ValidationError("record is required (true, false or null)", field="record", code="missing")
    record = await request.app[RECORDINGS].set_room_choice(room.slug, data["record"])
    return web.json_response({"record": record}, headers=NO_STORE)


def setup(app: web.Application) -> None:
    app.add_routes(routes)
    app.setdefault(ROOM_UPDATERS, []).append(_room_updater(app))


def _room_updater(app: web.Application) -> RoomUpdater:
    """PATCH /api/v1/rooms/{slug} with ``record``: true, false or null (the server default)."""

    async def update(room: Room, body: dict[str, Any]) -> bool:
        if "record" not in body:
            return False
        await app[RECORDINGS].set_room_choice(room.slug, body["record"])
        return True

    return update


_REC_PROPS: dict[str, Any] = {
    "id": {"type": "integer"}, "room": {"type": "string"},
    "status": {"type": "string", "enum": ["recording", "complete", "interrupted"]},
    "visibility": {"type": "string", "enum": ["public", "private"]},
    "container": {"type": "string", "enum": ["mpegts", "fmp4"]},
    "started_at": {"type": "string", "format": "date-time"},
    "ended_at": {"type": "string", "format": "date-time", "nullable": True},
    "duration": {"type": "number", "description": "seconds of stored media"},
    "bytes": {"type": "integer"}, "gaps": {"type": "integer", "description": "segments that could not be stored"},
    "playlist_url": {"type": "string"},
}
openapi.add_schema("Recording", {"type": "object", "properties": _REC_PROPS})
openapi.add_schema("RecordingEnvelope", {"type": "object", "properties": {
    "recording": {"$ref": "#/components/schemas/Recording"}}})
openapi.add_schema("RecordingList", {"type": "object", "required": ["recordings", "next_cursor"], "properties": {
    "recordings": {"type": "array", "items": {"$ref": "#/components/schemas/Recording"}},
    "next_cursor": {"type": "string", "nullable": True}}})
openapi.add_schema("RecordingUpdate", {"type": "object", "required": ["visibility"], "properties": {
    "visibility": {"type": "string", "enum": ["public", "private"]}}})
openapi.add_schema("SignedUrl", {"type": "object", "properties": {
    "url": {"type": "string"}, "expires": {"type": "integer", "description": "UNIX time"}}})
openapi.add_schema("RoomRecording", {"type": "object", "required": ["record"], "properties": {
    "record": {"type": "boolean", "nullable": True, "description": "null (on PUT): the server's default"}}})

openapi.document("GET", "/api/v1/rooms/{slug}/recordings", "A room's recordings, newest first",
                 tags=["recordings"], auth="optional", responses={200: "RecordingList", 404: "no such room"},
                 query=openapi.page_params())
openapi.document("GET", "/api/v1/recordings/{id}", "One recording", tags=["recordings"], auth="optional",
                 responses={200: "RecordingEnvelope", 403: "private", 404: "no such recording"})
openapi.add_schema("ChatReplay", {"type": "object", "properties": {
    "recording": {"type": "integer"},
    "events": {"type": "array", "items": {"type": "object", "properties": {
        "type": {"type": "string", "enum": ["comment", "gift"]}, "id": {"type": "integer"},
        "user": {"type": "string"}, "text": {"type": "string"}, "gift": {"type": "string"},
        "quantity": {"type": "integer"}, "ts": {"type": "string"},
        "offset": {"type": "number", "description": "seconds from the recording's start"}}}}}})
_SECONDS = {"type": "number", "minimum": 0, "maximum": MAX_SECONDS}
openapi.document("GET", "/api/v1/recordings/{id}/chat", "Chat replay: comments and gifts with their offsets",
                 tags=["recordings"], auth="optional",
                 responses={200: "ChatReplay", 403: "private", 404: "no such recording"},
                 query={"from": {"description": "first offset (s)", "schema": _SECONDS},
                        "to": {"description": "last offset (s)", "schema": _SECONDS},
                        "exp": "signed URL expiry (private recordings)", "sig": "signed URL signature"})
openapi.document("PATCH", "/api/v1/recordings/{id}", "Change a recording's visibility (owner or admin)",
                 tags=["recordings"], auth="user", body="RecordingUpdate",
                 responses={200: "RecordingEnvelope", 403: "not the owner", 404: "no such recording"})
openapi.document("DELETE", "/api/v1/recordings/{id}", "Delete a recording and its media (owner or admin)",
                 tags=["recordings"], auth="user",
                 responses={204: None, 403: "not the owner", 404: "no such recording",
                            409: "still being recorded"})
openapi.document("POST", "/api/v1/recordings/{id}/signed-url",
                 "A signed, expiring URL of the recording's playlist (owner or admin)", tags=["recordings"],
                 auth="user", responses={200: "SignedUrl", 403: "not the owner", 404: "no such recording"},
                 query={"ttl": openapi.int_param(1, 7 * 86400, "seconds (default recording.signed_url_ttl)")})
openapi.document("GET", "/api/v1/rooms/{slug}/recording", "Whether the room's broadcasts are recorded",
                 tags=["recordings"], responses={200: "RoomRecording", 404: "no such room"})
openapi.document("PUT", "/api/v1/rooms/{slug}/recording",
                 "Turn recording on or off (owner or admin); alias of PATCH /api/v1/rooms/{slug} with record",
                 tags=["recordings"], auth="user", body="RoomRecording",
                 responses={200: "RoomRecording", 403: "not the owner", 404: "no such room"})
