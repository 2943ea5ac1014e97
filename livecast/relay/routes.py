"""Push-target routes: ``/api/v1/rooms/{slug}/targets`` (owner or admin only).

The stream key is write-only: it is accepted on POST and PATCH and never returned
(answers carry ``key_hint``, its last two characters, at most).
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from livecast.api import openapi
from livecast.api.auth import NO_STORE, read_body, require_user
from livecast.core.errors import Conflict, Forbidden, NotFound, ValidationError
from livecast.keys import ROOMS, SETTINGS
from livecast.relay.manager import RelayManager, target_from_row
from livecast.relay.targets import (
    KEY_MAX,
    KEY_PATTERN,
    NAME_MAX,
    TARGET_URL_PATTERN,
    URL_MAX,
    PushTarget,
    validate_flag,
    validate_key,
    validate_name,
    validate_url,
)
from livecast.rooms import TITLE_PATTERN, Room, SLUG_RE
from livecast.storage.targets import TargetLimitReached
from livecast.users import utc_now

log = logging.getLogger(__name__)

RELAY: web.AppKey[RelayManager] = web.AppKey("relay")
routes = web.RouteTableDef()
_FIELDS = {"name", "url", "stream_key", "enabled", "verify_tls"}


async def _room(request: web.Request) -> Room:
    user = await require_user(request)
    slug = request.match_info["slug"]
    if not SLUG_RE.fullmatch(slug):
        raise NotFound("no such room")
    room = await request.app[ROOMS].require(slug)
    if not room.is_managed_by(user):
        raise Forbidden("only the room's owner or an admin may manage its push targets")
    return room


def _target_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit() or not 1 <= int(raw) < 2**63:
        raise NotFound("no such push target")
    return int(raw)


def _unknown(body: dict[str, Any]) -> None:
    extra = sorted(set(body) - _FIELDS)
    if extra:
        raise ValidationError(f"unknown field {extra[0]}", field=extra[0])


def _values(body: dict[str, Any], old: PushTarget | None) -> tuple[str, str, str, bool, bool]:
    def pick(name: str, check: Any, default: Any) -> Any:
        if name in body:
            return check(body[name])
        if old is None and default is None:
            raise ValidationError(f"{name} is required", field=name)
        return default

    return (pick("name", validate_name, old.name if old else None),
            pick("url", validate_url, old.url if old else None),
            pick("stream_key", validate_key, old.key if old else None),
            pick("enabled", lambda v: validate_flag(v, "enabled"), old.enabled if old else True),
            pick("verify_tls", lambda v: validate_flag(v, "verify_tls"), old.verify_tls if old else True))


async def _target(request: web.Request, room: Room) -> PushTarget:
    row = await request.app[RELAY].repo.by_id(room.slug, _target_id(request))
    if row is None:
        raise NotFound("no such push target")
    return target_from_row(row)


def _json(request: web.Request, target: PushTarget) -> dict[str, Any]:
    return target.to_json(request.app[RELAY].status(target.id))


@routes.get("/api/v1/rooms/{slug}/targets")
async def list_targets(request: web.Request) -> web.Response:
    room = await _room(request)
    relay = request.app[RELAY]
    targets = [target_from_row(r) for r in await relay.repo.by_room(room.slug)]
    return web.json_response({"targets": relay.targets_json(room.slug, targets)}, headers=NO_STORE)


@routes.post("/api/v1/rooms/{slug}/targets")
async def create_target(request: web.Request) -> web.Response:
    room = await _room(request)
    body = await read_body(request)
    _unknown(body)
    values = _values(body, None)
    relay = request.app[RELAY]
    limit = request.app[SETTINGS].relay.max_targets_per_room
    try:
        target_id = await relay.repo.insert(room.id, values, utc_now(), limit)
    except TargetLimitReached as err:
        raise Conflict(f"a room may have at most {limit} push targets (relay.max_targets_per_room)",
                       code="target_limit") from err
    await relay.refresh(room.slug)
    log.info("room %s: push target %d (%s) added", room.slug, target_id, values[0])
    return web.json_response({"target": _json(request, await _target_by_id(request, room, target_id))},
                             status=201, headers=NO_STORE)


async def _target_by_id(request: web.Request, room: Room, target_id: int) -> PushTarget:
    row = await request.app[RELAY].repo.by_id(room.slug, target_id)
    if row is None:
        raise NotFound("no such push target")
    return target_from_row(row)


@routes.patch("/api/v1/rooms/{slug}/targets/{id}")
async def update_target(request: web.Request) -> web.Response:
    room = await _room(request)
    old = await _target(request, room)
    body = await read_body(request)
    _unknown(body)
    if not body:
        raise ValidationError("nothing to update: give at least one field")
    values = _values(body, old)
    relay = request.app[RELAY]
    await relay.repo.update(room.id, old.id, values)
    await relay.refresh(room.slug)
    return web.json_response({"target": _json(request, await _target_by_id(request, room, old.id))},
                             headers=NO_STORE)


@routes.delete("/api/v1/rooms/{slug}/targets/{id}")
async def delete_target(request: web.Request) -> web.Response:
    room = await _room(request)
    target = await _target(request, room)
    relay = request.app[RELAY]
    await relay.repo.delete(room.id, target.id)
    await relay.refresh(room.slug)
    log.info("room %s: push target %d removed", room.slug, target.id)
    return web.Response(status=204)


_TARGET_PROPS: dict[str, Any] = {
    "name": {"type": "string", "minLength": 1, "maxLength": NAME_MAX, "pattern": TITLE_PATTERN},
    "url": {"type": "string", "minLength": 1, "maxLength": URL_MAX, "pattern": TARGET_URL_PATTERN},
    "stream_key": {"type": "string", "minLength": 1, "maxLength": KEY_MAX, "pattern": KEY_PATTERN,
                   "writeOnly": True},
    "enabled": {"type": "boolean"},
    "verify_tls": {"type": "boolean", "description": "verify an rtmps:// target's certificate (default true)"},
}
openapi.add_schema("PushTargetCreate", {"type": "object", "additionalProperties": False,
                                        "required": ["name", "url", "stream_key"], "properties": _TARGET_PROPS})
openapi.add_schema("PushTargetUpdate", {"type": "object", "additionalProperties": False, "minProperties": 1,
                                        "properties": _TARGET_PROPS})
_TARGET = {"type": "object", "properties": {
    "id": {"type": "integer"}, "name": {"type": "string"}, "url": {"type": "string"},
    "enabled": {"type": "boolean"}, "verify_tls": {"type": "boolean"},
    "key_hint": {"type": "string", "description": "at most the key's last two characters"},
    "state": {"type": "string", "enum": ["idle", "connecting", "live", "retrying", "failed", "disabled"]},
    "reason": {"type": "string", "nullable": True}, "bytes_sent": {"type": "integer"},
    "dropped": {"type": "integer"}, "reconnects": {"type": "integer"}}}
openapi.add_schema("PushTarget", _TARGET)
openapi.add_schema("PushTargetEnvelope", {"type": "object", "properties": {"target": _TARGET}})
openapi.add_schema("PushTargetList", {"type": "object", "properties": {"targets": {"type": "array", "items": _TARGET}}})
_ERRORS: dict[int, str | None] = {403: "not the room's owner or an admin", 404: "no such room or push target"}
openapi.document("GET", "/api/v1/rooms/{slug}/targets", "The room's push targets (owner or admin)",
                 tags=["relay"], auth="user", responses={200: "PushTargetList", **_ERRORS})
openapi.document("POST", "/api/v1/rooms/{slug}/targets", "Add a push target (owner or admin)",
                 tags=["relay"], auth="user", body="PushTargetCreate",
                 responses={201: "PushTargetEnvelope", 409: "target_limit (relay.max_targets_per_room)", **_ERRORS},
                 description="The stream key is write-only: no answer ever returns it.")
openapi.document("PATCH", "/api/v1/rooms/{slug}/targets/{id}", "Change a push target (owner or admin)",
                 tags=["relay"], auth="user", body="PushTargetUpdate",
                 responses={200: "PushTargetEnvelope", **_ERRORS})
openapi.document("DELETE", "/api/v1/rooms/{slug}/targets/{id}", "Remove a push target (owner or admin)",
                 tags=["relay"], auth="user", responses={204: None, **_ERRORS})
