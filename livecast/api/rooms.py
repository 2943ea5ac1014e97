"""Room routes: list, create, read, update, delete, rotate the stream key.

Room JSON is the room's stored fields merged with the live data other components
register in the ``RoomExtras`` they are given (ingest: ``live`` and ``stream``; chat: ``viewers``).
Only the room's owner and admins ever see ``stream_key`` and ``rtmp_url``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from livecast.api import openapi, paging
from livecast.api.auth import NO_STORE, current_user, read_body, require_user
from livecast.core.errors import Forbidden, ValidationError
from livecast.core.events import RoomCreated, RoomDeleted, StreamKeyRotated
from livecast.keys import BOUND_PORTS, EVENTS, ROOM_EXTRAS, ROOMS, SETTINGS, USERS
from livecast.rooms import DESCRIPTION_MAX, DESCRIPTION_PATTERN, OWNER_ONLY, TITLE_MAX, TITLE_PATTERN, Room
from livecast.users import User

# Components that own more room fields (the relay: source_url, source_on_demand) handle a
# PATCH's fields of theirs: ``await updater(room, body)`` validates, applies and returns
# True when it found any.
RoomUpdater = Callable[[Room, dict[str, Any]], Awaitable[bool]]
# The relay's pull source URL (validated with this same pattern): rtmp(s)/rtsp, or an HLS playlist.
_SOURCE_AUTHORITY = (r"([A-Za-z0-9._~%!$&'()*+,;=:-]+@)?([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])"
                     r"(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?")
_PATH = r"[\x21\x22\x24-\x3e\x40-\x7e]"  # printable ASCII but ? and #
SOURCE_URL_PATTERN = (rf"^(|(rtmps?|rtsp)://{_SOURCE_AUTHORITY}(/{_PATH}*)?(\?[\x21-\x7e]*)?"
                      rf"|https?://{_SOURCE_AUTHORITY}/{_PATH}*\.m3u8(\?[\x21-\x7e]*)?)$")
ROOM_UPDATERS: web.AppKey[list[RoomUpdater]] = web.AppKey("room_updaters")

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

# Keys that live-data extensions may not set or override.
_PROTECTED = frozenset({"slug", "owner", "stream_key", "rtmp_url", "hls_url"})
_HOSTNAME = re.compile(r"[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]")


def rtmp_url(request: web.Request) -> str:
    """``rtmp://HOST:PORT/live``: the host the client reached us by, the bound RTMP port."""
    host = request.host or ""
    if host.startswith("["):
        end = host.find("]")
        name = host[: end + 1] if end > 0 else ""
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    settings = request.app[SETTINGS].server
    if not _HOSTNAME.fullmatch(name):
        name = "localhost" if settings.host in ("0.0.0.0", "::", "") else settings.host
    port = request.app[BOUND_PORTS].get("rtmp") or settings.rtmp_port
    return f"rtmp://{name}:{port}/live"



def room_json(request: web.Request, room: Room, viewer: User | None) -> dict[str, Any]:
    owner_view = viewer is not None and room.is_managed_by(viewer)
    body = room.to_json(owner_view, rtmp_url=rtmp_url(request) if owner_view else None)
    if request.app[SETTINGS].transcode.enabled:
        body["hls_url"] = room.master_url
    for extra in request.app.get(ROOM_EXTRAS, ()):
        try:
            added = extra(room.slug)
        except Exception:  # one component's bug must not break the room API
            log.exception("room extras %r failed for %s", extra, room.slug)
            continue
        if isinstance(added, dict):
            private = added.get(OWNER_ONLY)
            body.update({k: v for k, v in added.items() if k not in _PROTECTED and k != OWNER_ONLY})
            if owner_view and isinstance(private, dict):
                for key, fields in private.items():
                    if isinstance(body.get(key), dict) and isinstance(fields, dict):
                        body[key] = {**body[key], **fields}
    return body


async def _managed_room(request: web.Request) -> tuple[User, Room]:
    user = await require_user(request)
    room = await request.app[ROOMS].require(request.match_info["slug"])
    if not room.is_managed_by(user):
        raise Forbidden("only the room's owner or an admin may do this")
    return user, room


@routes.get("/api/v1/rooms")
async def list_rooms(request: web.Request) -> web.Response:
    """Live rooms first, then newest, one page at a time (``limit``, ``cursor``, ``owner``)."""
    viewer = await current_user(request)
    limit = paging.limit_query(request)
    after = paging.cursor_query(request, 2)
    owner_id = await _owner_filter(request)
    rooms_ = request.app[ROOMS]
    found = [] if owner_id == -1 else await rooms_.list(
        limit + 1, None if after is None else (after[0], after[1]), owner_id)
    found, next_cursor = paging.page(found, limit, rooms_.sort_key)
    rooms = [room_json(request, r, viewer) for r in found]
    # Pages follow the stored live flag; within a page, live as the extras report it (the
    # ingest knows best, should the stored flag lag a moment), then newest; sort is stable.
    rooms.sort(key=lambda r: not r.get("live"))
    return web.json_response({"rooms": rooms, "next_cursor": next_cursor}, headers=NO_STORE if viewer else None)


async def _owner_filter(request: web.Request) -> int | None:
    """``?owner=USERNAME``: that user's id, -1 when there is no such user, None when absent."""
    name = request.query.get("owner")
    if name is None or name == "":
        return None
    user = await request.app[USERS].get_by_username(name)
    return -1 if user is None else user.id


@routes.post("/api/v1/rooms")
async def create_room(request: web.Request) -> web.Response:
    user = await require_user(request, "streamer", "admin")
    data = await read_body(request)
    if data.get("title") is None:
        raise ValidationError("title is required", field="title", code="missing")
    room = await request.app[ROOMS].create(user, data["title"], data.get("description"), data.get("slug"),
                                           max_rooms=request.app[SETTINGS].rooms.max_per_user)
    request.app[EVENTS].emit(RoomCreated(room.slug, room.title, room.owner_username))
    return web.json_response({"room": room_json(request, room, user)}, status=201, headers=NO_STORE)


@routes.get("/api/v1/rooms/{slug}")
async def get_room(request: web.Request) -> web.Response:
    viewer = await current_user(request)
    room = await request.app[ROOMS].require(request.match_info["slug"])
    return web.json_response({"room": room_json(request, room, viewer)}, headers=NO_STORE if viewer else None)


@routes.patch("/api/v1/rooms/{slug}")
async def update_room(request: web.Request) -> web.Response:
    user, room = await _managed_room(request)
    data = await read_body(request)
    handled = [await updater(room, data) for updater in request.app.get(ROOM_UPDATERS, [])]
    if data.get("title") is None and data.get("description") is None:
        if not any(handled):
            raise ValidationError("nothing to update: give title and/or description")
        room = await request.app[ROOMS].require(room.slug)
    else:
        room = await request.app[ROOMS].update(room.slug, title=data.get("title"),
                                               description=data.get("description"))
    return web.json_response({"room": room_json(request, room, user)}, headers=NO_STORE)


@routes.delete("/api/v1/rooms/{slug}")
async def delete_room(request: web.Request) -> web.Response:
    user, room = await _managed_room(request)
    await request.app[ROOMS].delete(room.slug)
    log.info("%s deleted room %s", user.username, room.slug)
    request.app[EVENTS].emit(RoomDeleted(room.slug))
    return web.Response(status=204)


@routes.post("/api/v1/rooms/{slug}/stream-key")
async def rotate_stream_key(request: web.Request) -> web.Response:
    user, room = await _managed_room(request)
    room = await request.app[ROOMS].rotate_key(room.slug)
    request.app[EVENTS].emit(StreamKeyRotated(room.slug))
    return web.json_response({"stream_key": room.stream_key, "rtmp_url": rtmp_url(request)}, headers=NO_STORE)


_ROOM_PROPS: dict[str, Any] = {
    "slug": {"type": "string"}, "title": {"type": "string"}, "description": {"type": "string"},
    "owner": {"type": "object", "properties": {"username": {"type": "string"}}},
    "live": {"type": "boolean"}, "viewers": {"type": "integer"}, "hls_url": {"type": "string"},
    "created_at": {"type": "string", "format": "date-time"},
    "stream": {"type": "object", "nullable": True, "description": "live stream details (codecs, resolution...)"},
    "stream_key": {"type": "string", "description": "owner and admin only"},
    "rtmp_url": {"type": "string", "description": "owner and admin only"},
    "renditions": {"type": "array", "items": {"type": "object"},
                   "description": "transcoding ladder: name, width, height, fps, codecs, health, dropped"},
    "thumbnail_url": {"type": "string", "nullable": True, "description": "live thumbnail (JPEG), or null"},
    "record": {"type": "boolean", "description": "whether the room's broadcasts are recorded"},
}
openapi.add_schema("Room", {"type": "object", "properties": _ROOM_PROPS})
openapi.add_schema("RoomEnvelope", {"type": "object", "properties": {"room": {"$ref": "#/components/schemas/Room"}}})
_NEXT_CURSOR = {"type": "string", "nullable": True,
                "description": "pass as ?cursor= for the next page; null on the last"}
openapi.add_schema("RoomList", {"type": "object", "required": ["rooms", "next_cursor"], "properties": {
    "rooms": {"type": "array", "items": {"$ref": "#/components/schemas/Room"}}, "next_cursor": _NEXT_CURSOR}})
_TITLE = {"type": "string", "minLength": 1, "maxLength": TITLE_MAX, "pattern": TITLE_PATTERN,
          "description": "no control, bidi-override or zero-width characters; trimmed"}
_DESCRIPTION = {"type": "string", "maxLength": DESCRIPTION_MAX, "pattern": DESCRIPTION_PATTERN, "nullable": True,
                "description": "may hold tab and line breaks; null or absent = empty (on update: unchanged)"}
openapi.add_schema("RoomCreate", {"type": "object", "required": ["title"], "properties": {
    "title": _TITLE, "description": _DESCRIPTION,
    "slug": {"type": "string", "pattern": "^[a-z0-9-]{3,40}$", "nullable": True,
             "description": "null or absent = derived from the title"}}})
# At least one of title and description, given (not null).
openapi.add_schema("RoomUpdate", {"type": "object", "properties": {
    "title": {**_TITLE, "nullable": True}, "description": _DESCRIPTION,
    "source_url": {"type": "string", "maxLength": 2000, "pattern": SOURCE_URL_PATTERN,
                   "description": "relay: pull the room from this URL ('' removes it)"},
    "source_on_demand": {"type": "boolean", "description": "relay: pull only while viewers ask for it"},
    "record": {"type": "boolean", "nullable": True,
               "description": "record the room's next broadcasts (null: the server's recording.enabled)"}},
    "anyOf": [{"required": ["title"], "properties": {"title": {"type": "string"}}},
              {"required": ["description"], "properties": {"description": {"type": "string"}}},
              {"required": ["source_url"]}, {"required": ["source_on_demand"]}, {"required": ["record"]}]})
openapi.add_schema("StreamKey", {"type": "object", "properties": {
    "stream_key": {"type": "string"}, "rtmp_url": {"type": "string"}}})

openapi.document("GET", "/api/v1/rooms", "Rooms, live first, then newest, one page at a time", tags=["rooms"],
                 auth="optional", responses={200: "RoomList"},
                 query={**openapi.page_params(cursor_parts=2),
                        "owner": "only this user's rooms (none for an unknown name)"})
openapi.document("POST", "/api/v1/rooms", "Create a room (returns its stream key)", tags=["rooms"],
                 auth="streamer", body="RoomCreate",
                 responses={201: "RoomEnvelope", 409: "slug_taken, or room_limit (rooms.max_per_user reached)"})
openapi.document("GET", "/api/v1/rooms/{slug}", "One room", tags=["rooms"], auth="optional",
                 responses={200: "RoomEnvelope", 404: "no such room"})
openapi.document("PATCH", "/api/v1/rooms/{slug}", "Change title and/or description (owner or admin)",
                 tags=["rooms"], auth="user", body="RoomUpdate",
                 responses={200: "RoomEnvelope", 403: "not the owner", 404: "no such room"})
openapi.document("DELETE", "/api/v1/rooms/{slug}", "Delete a room (owner or admin)", tags=["rooms"],
                 auth="user", responses={204: None, 403: "not the owner", 404: "no such room"})
openapi.document("POST", "/api/v1/rooms/{slug}/stream-key", "Replace the stream key (owner or admin)",
                 tags=["rooms"], auth="user",
                 responses={200: "StreamKey", 403: "not the owner", 404: "no such room"},
                 description="The old key stops working at once and a publisher using it is disconnected.")
