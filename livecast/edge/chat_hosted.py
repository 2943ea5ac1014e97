"""An edge-hosted chat socket (``chat.bus`` set): events from the bus, posts to the origin.

The socket joins the edge's hub (and so the room's bus subscription) before its
history is fetched from the origin, so nothing published in between is missed; frames
delivered meanwhile are held and sent after the hello, minus the comments the history
already holds (as on the origin). Ping is answered here; auth, comment, like and gift
frames go to the origin with the client's token, and the origin's refusals are sent to
the client as they are, counted like the origin counts refused frames.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import WSCloseCode, web

from livecast.chat.admission import admit, request_address
from livecast.chat.frames import (
    AuthFrame,
    CommentFrame,
    GiftFrame,
    LikeFrame,
    PingFrame,
    encode,
    error_from,
    parse_client_frame,
    user_json,
)
from livecast.chat.hub import ChatClient
from livecast.chat.ws import (
    FrameLoop,
    chat_websocket,
    check_cooldown,
    connection_token,
    refuse,
)
from livecast.core.errors import BadGateway, GatewayTimeout, LivecastError, Unauthorized
from livecast.edge import chat_proxy
from livecast.edge.chat_state import EDGE_CHAT, EdgeChat, OriginRefused
from livecast.users import User

log = logging.getLogger(__name__)

_PONG = encode({"type": "pong"})


def _user(data: Any) -> User | None:
    """The identity the origin vouched for (only what chat needs of a user)."""
    if not isinstance(data, dict):
        return None
    return User(id=int(data["id"]), username=str(data["username"]), role=str(data["role"]), coins=0,
                disabled=False, created_at="")


class EdgeSession(FrameLoop):
    def __init__(self, edge: EdgeChat, client: ChatClient, token: str | None) -> None:
        assert edge.hub is not None
        super().__init__(edge.hub, edge.chat, client)
        self.edge = edge
        self.token = token
        self.path = f"/internal/chat/rooms/{client.room}/frame"

    def refuse(self, err: LivecastError) -> bool:
        if isinstance(err, BadGateway | GatewayTimeout):  # the origin is away: not the client's fault
            self.hub.send(self.client, encode(error_from(err)))
            return False
        frame = err.frame if isinstance(err, OriginRefused) else error_from(err)
        return self.refuse_frame(encode(frame))

    async def handle_text(self, text: str) -> None:
        frame = parse_client_frame(text, self.chat.max_frame_bytes)
        if isinstance(frame, PingFrame):
            self.hub.send(self.client, _PONG)
        elif isinstance(frame, AuthFrame):
            data = await self.edge.call("/internal/chat/auth", {"token": frame.token})
            user = _user(data.get("user"))
            if user is None:
                raise Unauthorized("the token is not valid", code="invalid_token")
            self.token = frame.token
            self.hub.change_user(self.client, user)
            self.hub.send(self.client, encode({"type": "auth_ok", "user": user_json(user.username, user.role)}))
        elif isinstance(frame, CommentFrame | LikeFrame | GiftFrame):
            if self.token is None:
                raise Unauthorized("log in to take part in the chat", code="login_required")
            await self.edge.call(self.path, {"token": self.token, "frame": text})


async def chat_socket(request: web.Request) -> web.StreamResponse:
    edge = request.app[EDGE_CHAT]
    hub, bus = edge.hub, edge.bus
    assert hub is not None and bus is not None
    slug = request.match_info["slug"]
    address = request_address(request)
    check_cooldown(hub, address)
    token = connection_token(request)
    path = f"/internal/chat/rooms/{slug}/join"
    info = await edge.call(path, {"token": token})  # RoomNotFound & co. as the origin answers them
    if not info.get("shared_bus"):
        if not edge.warned_no_bus:
            edge.warned_no_bus = True
            log.error("chat.bus is set on this edge but the origin has no shared bus; proxying chat sockets")
        return await chat_proxy.chat_socket(request)
    chat = edge.chat
    ws = chat_websocket(request, chat)
    user = _user(info.get("user"))
    token = token if user is not None else None
    client = ChatClient(ws, request.transport, slug, user, chat.send_queue, address)
    refusal = admit(hub, client, max_sockets=chat.max_sockets_per_address,
                    max_viewers=int(info["room"]["settings"].get("max_viewers") or 0),
                    manager=bool(info.get("manager")), viewers=edge.viewers(slug), request=request)
    if refusal is not None:
        return await refuse(request, ws, refusal)
    try:
        writer = await ws.prepare(request)
        client.drain_waiter = writer.drain
        await bus.ready(slug)
        try:
            info = await edge.call(path, {"token": token, "history": chat.history})
        except LivecastError as err:
            frame = err.frame if isinstance(err, OriginRefused) else error_from(err)
            hub.close_text(client, WSCloseCode.TRY_AGAIN_LATER, encode(frame))
            return ws
        room = info["room"]
        hello = {
            "type": "hello", "room": slug, "live": bool(room.get("live")), "viewers": edge.viewers(slug),
            "likes": room.get("likes", 0), "history": info.get("history", []),
            "user": user_json(user.username, user.role) if user else None, "settings": room.get("settings"),
        }
        hub.start(client, encode(hello), int(info.get("newest") or 0))
        await EdgeSession(edge, client, token).run()
    finally:
        hub.leave(client)
        await client.stop()
    return ws
