"""Chat HTTP routes (history, gifts, moderation) and ``setup(app)``, which wires chat into
an origin app: the WebSocket route, the service's start and stop, domain events, the
``viewers`` key of room JSON, and closing every socket on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import WSCloseCode, web

from livecast.api import paging
from livecast.api.auth import read_body, require_user
from livecast.chat import (
    apidoc,  # noqa: F401  (documents the routes)
    cluster_routes,
)
from livecast.chat.bus.base import ChatBus
from livecast.chat.frames import GIFT_QUANTITY_MAX
from livecast.chat.service import ChatRoom, ChatService
from livecast.chat.store import ChatStore
from livecast.chat.ws import CHAT, chat_socket
from livecast.core.errors import Forbidden, NotFound, ValidationError
from livecast.core.events import RoomDeleted, StreamStarted, StreamStopped, UserDisabled
from livecast.core.tasks import cancel_and_wait
from livecast.keys import DB, EVENTS, ROOM_EXTRAS, ROOMS, SETTINGS, USERS
from livecast.rooms import RoomExtras
from livecast.users import User

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

PAGE_DEFAULT, PAGE_MAX = paging.PAGE_DEFAULT, paging.PAGE_MAX
LEADERBOARD_DEFAULT, LEADERBOARD_MAX = 10, 100
_SETTINGS_LIMITS = {"slow_mode_seconds": (0, 3600), "max_viewers": (0, 100_000)}


def _service(request: web.Request) -> ChatService:
    return request.app[CHAT]


async def _room(request: web.Request) -> ChatRoom:
    return await _service(request).room(request.match_info["slug"])


async def _managed(request: web.Request) -> tuple[User, ChatRoom]:
    user = await require_user(request)
    room = await _room(request)
    if not room.managed_by(user):
        raise Forbidden("only the room's owner or an admin may do this")
    return user, room


# -- comments ------------------------------------------------------------------------


@routes.get("/api/v1/rooms/{slug}/comments")
async def list_comments(request: web.Request) -> web.Response:
    """Newest first; ``cursor`` (or the older ``before``, an id) continues from a page's end."""
    room = await _room(request)
    before = paging.int_query(request, "before", None, 1, paging.INT64_MAX)
    after = paging.cursor_query(request, 1)
    if after is not None:
        before = after[0] if before is None else min(before, after[0])
    limit = paging.limit_query(request, PAGE_DEFAULT, PAGE_MAX)
    comments = await _service(request).store.page(room.id, before, limit + 1)
    comments, next_cursor = paging.page(comments, limit, lambda c: (c.id,))
    next_before = comments[-1].id if next_cursor is not None else None
    return web.json_response({"comments": [c.to_json() for c in comments], "next_before": next_before,
                              "next_cursor": next_cursor})


@routes.delete("/api/v1/rooms/{slug}/comments/{id}")
async def delete_comment(request: web.Request) -> web.Response:
    user, room = await _managed(request)
    comment_id = paging.parse_int(request.match_info["id"], 1, paging.INT64_MAX)
    if comment_id is None or not await _service(request).delete_comment(room, comment_id):
        raise NotFound("no such comment", code="comment_not_found")
    log.info("%s deleted comment %d in room %s", user.username, comment_id, room.slug)
    return web.Response(status=204)


# -- gifts ---------------------------------------------------------------------------


@routes.get("/api/v1/gifts")
async def list_gifts(request: web.Request) -> web.Response:
    gifts = [{"name": g.name, "display_name": g.display_name, "price": g.price} for g in request.app[SETTINGS].gifts]
    return web.json_response({"gifts": gifts})


@routes.post("/api/v1/rooms/{slug}/gifts")
async def send_gift(request: web.Request) -> web.Response:
    user = await require_user(request)
    data = await read_body(request)
    name = data.get("gift")
    if not isinstance(name, str):
        raise ValidationError("gift must be a gift name", field="gift")
    quantity = data.get("quantity", 1)
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= GIFT_QUANTITY_MAX:
        raise ValidationError(f"quantity must be an integer 1..{GIFT_QUANTITY_MAX}", field="quantity")
    gift, balance = await _service(request).send_gift(await _room(request), user, name, quantity)
    return web.json_response({"gift": gift, "coins": balance}, status=201)


@routes.get("/api/v1/rooms/{slug}/gifts/leaderboard")
async def leaderboard(request: web.Request) -> web.Response:
    room = await _room(request)
    limit = paging.limit_query(request, LEADERBOARD_DEFAULT, LEADERBOARD_MAX)
    return web.json_response({"leaderboard": await _service(request).store.leaderboard(room.id, limit)})


# -- bans and settings ---------------------------------------------------------------


@routes.get("/api/v1/rooms/{slug}/bans")
async def list_bans(request: web.Request) -> web.Response:
    _, room = await _managed(request)
    limit = paging.limit_query(request)
    after = paging.cursor_query(request, 1)
    bans = await _service(request).store.bans(room.id, limit + 1, 0 if after is None else after[0])
    bans, next_cursor = paging.page(bans, limit, lambda b: (b["position"],))
    return web.json_response({"bans": [{k: v for k, v in b.items() if k != "position"} for b in bans],
                              "next_cursor": next_cursor})


@routes.post("/api/v1/rooms/{slug}/bans/{username}")
async def ban_user(request: web.Request) -> web.Response:
    user, room = await _managed(request)
    target = await request.app[USERS].require_by_username(request.match_info["username"])
    created = await _service(request).ban(room, target, user)
    if created:
        log.info("%s banned %s from the chat of room %s", user.username, target.username, room.slug)
    return web.json_response({"ban": {"user": {"username": target.username}}}, status=201 if created else 200)


@routes.delete("/api/v1/rooms/{slug}/bans/{username}")
async def unban_user(request: web.Request) -> web.Response:
    user, room = await _managed(request)
    target = await request.app[USERS].require_by_username(request.match_info["username"])
    if not await _service(request).unban(room, target):
        raise NotFound("this user is not banned here", code="not_banned")
    log.info("%s unbanned %s in room %s", user.username, target.username, room.slug)
    return web.Response(status=204)


@routes.get("/api/v1/rooms/{slug}/chat-settings")
async def get_chat_settings(request: web.Request) -> web.Response:
    room = await _room(request)
    return web.json_response({"settings": room.settings.to_json()})


@routes.patch("/api/v1/rooms/{slug}/chat-settings")
async def patch_chat_settings(request: web.Request) -> web.Response:
    _, room = await _managed(request)
    data = await read_body(request)
    changes: dict[str, Any] = {}
    for name, (low, high) in _SETTINGS_LIMITS.items():
        if data.get(name) is None:
            continue
        value = data[name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValidationError(f"{name} must be an integer {low}..{high}", field=name)
        changes[name] = value
    if data.get("chat_enabled") is not None:
        if not isinstance(data["chat_enabled"], bool):
            raise ValidationError("chat_enabled must be true or false", field="chat_enabled")
        changes["chat_enabled"] = data["chat_enabled"]
    if not changes:
        raise ValidationError("nothing to update: give slow_mode_seconds, chat_enabled and/or max_viewers")
    settings = await _service(request).update_settings(room, changes)
    return web.json_response({"settings": settings.to_json()})


# -- wiring --------------------------------------------------------------------------


def setup(app: web.Application, bus: ChatBus,
          extras: RoomExtras) -> Callable[[web.Application], AsyncIterator[None]]:
    """Add chat to an origin app, on ``bus``; the room JSON gets ``viewers`` through ``extras``."""
    service = ChatService(app[SETTINGS], bus)
    app[CHAT] = service
    app.router.add_get("/api/v1/rooms/{slug}/chat", chat_socket, allow_head=False)
    app.add_routes(routes)
    app.add_routes(cluster_routes.routes)  # what edges call (cluster secret required)
    extras.register(lambda slug: {"viewers": service.viewers(slug)})
    app.on_shutdown.append(_close_sockets)
    return _chat_ctx


def _live_of(extras: RoomExtras) -> Callable[[str], bool | None]:
    """Whether a room is live, as the components that know (ingest) report it in room extras."""
    def live_of(slug: str) -> bool | None:
        live: bool | None = None
        for extra in extras:
            with contextlib.suppress(Exception):
                value = extra(slug).get("live")
                if isinstance(value, bool):
                    live = value
        return live

    return live_of


async def _chat_ctx(app: web.Application) -> AsyncIterator[None]:
    service = app[CHAT]
    await service.start(ChatStore(app[DB]), app[ROOMS])
    service.live_of = _live_of(app[ROOM_EXTRAS])
    service.emit = app[EVENTS].emit

    def on_event(event: object) -> None:
        if isinstance(event, StreamStarted):
            service.stream_changed(event.slug, True)
        elif isinstance(event, StreamStopped):
            service.stream_changed(event.slug, False)
        elif isinstance(event, RoomDeleted):
            service.room_deleted(event.slug)
        elif isinstance(event, UserDisabled):
            service.user_disabled(event.user_id)

    unsubscribe = app[EVENTS].subscribe(on_event)
    flusher = asyncio.get_running_loop().create_task(service.run_flusher())
    try:
        yield
    finally:
        unsubscribe()
        await cancel_and_wait(flusher)
        await service.close()
        log.info("chat stopped: %s", service.hub.snapshot())


async def _close_sockets(app: web.Application) -> None:
    if CHAT in app:
        await app[CHAT].hub.close_all(WSCloseCode.GOING_AWAY)
