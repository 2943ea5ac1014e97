"""What edges call on the origin's chat (``/internal/chat/...``; cluster secret required).

An edge that hosts chat sockets itself (``chat.bus`` set) never decides anything: it
forwards the client's own session token with each call and the origin authenticates it
again, so an edge cannot act as a user it holds no token of, and a client cannot reach
these routes without the cluster secret (edges only proxy ``/api/v1``). Refusals of a
forwarded frame come back as ``{"error": <error frame>}`` with the HTTP status of the
error: the edge sends that frame to its client as is, so it matches the origin's.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from livecast.api.auth import read_body
from livecast.chat.bus.memory import InProcessBus
from livecast.chat.frames import FrameError, error_from, parse_client_frame, user_json
from livecast.chat.ws import CHAT, act
from livecast.cluster import require_cluster
from livecast.core.errors import LivecastError, Unauthorized, ValidationError
from livecast.keys import USERS
from livecast.users import User

routes = web.RouteTableDef()

HISTORY_MAX = 500


def identity_json(user: User) -> dict[str, Any]:
    return {"id": user.id, **user_json(user.username, user.role)}


async def _caller(request: web.Request) -> tuple[dict[str, Any], User | None]:
    """The body and the user whose token it carries; only for cluster nodes."""
    require_cluster(request)
    data = await read_body(request)
    token = data.get("token")
    user = await request.app[USERS].user_for_token(token) if isinstance(token, str) and token else None
    return data, user


def _refused(err: LivecastError) -> web.Response:
    return web.json_response({"error": error_from(err)}, status=err.status)


@routes.post("/internal/chat/auth")
async def auth(request: web.Request) -> web.Response:
    """An ``auth`` frame on an edge: who is this token."""
    _, user = await _caller(request)
    if user is None:
        return _refused(Unauthorized("the token is not valid", code="invalid_token"))
    return web.json_response({"user": identity_json(user)})


@routes.post("/internal/chat/rooms/{slug}/join")
async def join(request: web.Request) -> web.Response:
    """What an edge needs to admit a socket and build its hello (history only if asked)."""
    data, user = await _caller(request)
    service = request.app[CHAT]
    room = await service.room(request.match_info["slug"])
    body: dict[str, Any] = {
        "room": {"slug": room.slug, "likes": room.likes, "live": bool(service.live_of(room.slug)),
                 "settings": room.settings.to_json()},
        "user": identity_json(user) if user else None,
        "manager": room.managed_by(user),
        # Whether this origin publishes on a shared bus; if not, an edge proxies the socket.
        "shared_bus": not isinstance(service.bus, InProcessBus),
    }
    limit = data.get("history")
    if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
        history = await service.store.history(room.id, min(limit, HISTORY_MAX))
        body["history"] = [c.to_json() for c in history]
        body["newest"] = history[-1].id if history else 0
    return web.json_response(body)


@routes.post("/internal/chat/rooms/{slug}/frame")
async def frame(request: web.Request) -> web.Response:
    """A client's comment, like or gift frame, as its text, posted on an edge."""
    data, user = await _caller(request)
    text = data.get("frame")
    if not isinstance(text, str):
        raise ValidationError("frame must be the client's frame text", field="frame")
    service = request.app[CHAT]
    try:
        room = await service.room(request.match_info["slug"])
        parsed = parse_client_frame(text, service.chat.max_frame_bytes)
        if not await act(service, room, user, parsed):
            raise FrameError("only comment, like and gift frames are forwarded", code="unknown_type")
    except LivecastError as err:
        return _refused(err)
    return web.json_response({"ok": True})
