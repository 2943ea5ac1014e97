"""The chat WebSocket: ``GET /api/v1/rooms/{slug}/chat``.

Anyone may connect and read. Posting needs a user: the ``Authorization: Bearer`` header,
the login cookie (only when the browser's ``Origin`` is this server), or an
``{"type":"auth","token":...}`` frame. Frames are handled one at a time per socket;
whatever is refused is answered with an ``error`` frame, and a client that keeps
sending refused frames is closed with 1008.
"""

from __future__ import annotations

import abc
import logging
import time
from urllib.parse import urlsplit

from aiohttp import WSCloseCode, WSMsgType, web

from livecast.api.auth import COOKIE_NAME
from livecast.chat.admission import Refusal, request_address
from livecast.chat.frames import (
    AuthFrame, ClientFrame, CommentFrame, FrameError, GiftFrame, LikeFrame, PingFrame, encode, error_frame,
    error_from, parse_client_frame, user_json,
)
from livecast.chat.hub import CLOSE_TIMEOUT, ChatClient, ChatHub, pong_frame
from livecast.chat.service import ChatRoom, ChatService
from livecast.chat.wsguard import GuardedWebSocket
from livecast.config import ChatSettings
from livecast.core.errors import LivecastError, RateLimited, Unauthorized, ValidationError
from livecast.keys import SETTINGS, USERS
from livecast.users import User

log = logging.getLogger(__name__)

CHAT: web.AppKey[ChatService] = web.AppKey("chat")
HEARTBEAT = 30.0
# Messages larger than this are cut off by aiohttp itself (close 1009); between
# chat.max_frame_bytes and this they get a ``too_large`` error frame.
HARD_LIMIT_FACTOR = 4
ERROR_FORGIVE_PER_SECOND = 1.0

_PONG = encode({"type": "pong"})
_INTERNAL = encode(error_frame("internal", "the server could not handle this frame; try again"))


def _same_origin(request: web.Request) -> bool:
    """No Origin (not a browser) or the Origin is this server: the cookie may be used."""
    origin = request.headers.get("Origin")
    if not origin:
        return True
    netloc = urlsplit(origin).netloc.lower()
    public = request.app[SETTINGS].server.public_url
    return netloc == (request.host or "").lower() or bool(public and netloc == urlsplit(public).netloc.lower())


def connection_token(request: web.Request) -> str | None:
    """The token the upgrade request carries: Bearer first, then the login cookie (only
    from this server's own pages). Edges apply the same rule relative to their host."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    token = request.cookies.get(COOKIE_NAME)
    if token and _same_origin(request):
        return token
    return None


async def connection_user(request: web.Request) -> User | None:
    """The user the upgrade request carries (Bearer first, then the cookie), or None."""
    token = connection_token(request)
    return await request.app[USERS].user_for_token(token) if token else None


async def act(service: ChatService, room: ChatRoom, user: User | None, frame: ClientFrame) -> bool:
    """Carry out a comment, like or gift frame of ``user`` (True), or leave it (False).
    Edges' forwarded frames go through here too, so their errors are the same."""
    if isinstance(frame, CommentFrame):
        await service.post_comment(room, user, frame.text)
    elif isinstance(frame, LikeFrame):
        service.like(room, user, frame.count)
    elif isinstance(frame, GiftFrame):
        await service.send_gift(room, user, frame.gift, frame.quantity)
    else:
        return False
    return True


class FrameLoop(abc.ABC):
    """Reads one socket's frames one at a time; refused frames become error frames and
    a client refused too often is closed with 1008. Subclasses handle the frames."""

    def __init__(self, hub: ChatHub, chat: ChatSettings, client: ChatClient) -> None:
        self.hub = hub
        self.chat = chat
        self.client = client
        self.max_errors = max(1, chat.max_errors)
        self.errors = 0.0
        if isinstance(client.ws, GuardedWebSocket):
            client.ws.on_fail = self.failed
        self._last_error = time.monotonic()

    @abc.abstractmethod
    async def handle_text(self, text: str) -> None:
        """Handle one text frame; a ``LivecastError`` raised here is refused as an error frame."""

    def refuse(self, err: LivecastError) -> bool:
        """Send an error frame; True when this client has been refused too often."""
        return self.refuse_frame(encode(error_from(err)))

    def refuse_frame(self, text: str) -> bool:
        now = time.monotonic()
        self.errors = max(0.0, self.errors - (now - self._last_error) * ERROR_FORGIVE_PER_SECOND) + 1
        self._last_error = now
        self.hub.send(self.client, text)
        return self.errors > self.max_errors

    def failed(self, code: int) -> None:
        """The frame guard failed the connection (its close frame is written): nothing more
        is sent to or taken from this client; counted; an abuser's address cools down."""
        self.client.closing = True
        self.client.pending.clear()
        if code == WSCloseCode.POLICY_VIOLATION:
            self.hub.stats["closed_too_many_frames"] += 1
            self.hub.cooldown.block(self.client.address)
            log.info("chat socket from %s in room %s closed: over the frame budget", self.client.address,
                     self.client.room)
        elif code == WSCloseCode.PROTOCOL_ERROR:
            self.hub.stats["closed_protocol_error"] += 1
            log.info("chat socket from %s in room %s closed: protocol error (unmasked frame)", self.client.address,
                     self.client.room)

    def too_many_errors(self) -> None:
        log.info("closing chat client in room %s after repeated refused frames", self.client.room)
        frame = encode(error_frame("too_many_errors", "too many refused frames"))
        self.hub.close_text(self.client, WSCloseCode.POLICY_VIOLATION, frame)
        self.hub.stats["closed_too_many_errors"] += 1
        self.hub.cooldown.block(self.client.address)

    async def run(self) -> None:
        ws = self.client.ws
        async for msg in ws:
            if self.client.closing:
                break
            try:
                if msg.type == WSMsgType.TEXT:
                    await self.handle_text(msg.data)
                    continue
                if msg.type == WSMsgType.PING:  # autoping is off: the guard has counted it
                    self.hub.send_frame(self.client, pong_frame(msg.data))
                    continue
                if msg.type == WSMsgType.PONG:
                    continue
                if msg.type == WSMsgType.BINARY:
                    raise FrameError("send JSON text frames", code="invalid_frame")
                break  # ERROR
            except LivecastError as err:
                if self.refuse(err):
                    self.too_many_errors()
                    break
            except Exception:  # a bug or a database failure: report it, keep the socket
                log.exception("chat frame failed in room %s", self.client.room)
                self.hub.send(self.client, _INTERNAL)


class _Session(FrameLoop):
    """One origin connection's frame handling."""

    def __init__(self, request: web.Request, service: ChatService, room: ChatRoom, client: ChatClient) -> None:
        super().__init__(service.hub, service.chat, client)
        self.request = request
        self.service = service
        self.room = room

    async def handle_text(self, text: str) -> None:
        await self.handle(parse_client_frame(text, self.chat.max_frame_bytes))

    async def handle(self, frame: ClientFrame) -> None:
        service, room, client = self.service, self.room, self.client
        if await act(service, room, client.user, frame):
            return
        if isinstance(frame, PingFrame):
            service.hub.send(client, _PONG)
        elif isinstance(frame, AuthFrame):
            user = await self.request.app[USERS].user_for_token(frame.token)
            if user is None:
                raise Unauthorized("the token is not valid", code="invalid_token")
            service.hub.change_user(client, user)
            service.hub.send(client, encode({"type": "auth_ok", "user": user_json(user.username, user.role)}))


def chat_response(chat: ChatSettings) -> GuardedWebSocket:
    """A chat socket's response object, bounded by the chat settings: every frame the
    client sends, pings included, is charged to its frame budget, and unmasked frames
    fail the connection (livecast.chat.wsguard). Pings reach the frame loop (autoping
    off), which answers them through the client's bounded queue. aiohttp's heartbeat
    still works without autoping: any bytes received, the client's pong among them,
    reset it."""
    return GuardedWebSocket(
        frames_per_second=chat.frames_per_second, frame_burst=chat.frame_burst,
        max_msg_size=max(chat.max_frame_bytes * HARD_LIMIT_FACTOR, 16 * 1024),
        heartbeat=HEARTBEAT, autoping=False, compress=False, timeout=CLOSE_TIMEOUT,
    )


def chat_websocket(request: web.Request, chat: ChatSettings) -> GuardedWebSocket:
    """``chat_response``, or 400 if the request is not a WebSocket upgrade."""
    ws = chat_response(chat)
    if not ws.can_prepare(request).ok:
        raise ValidationError("this is a WebSocket endpoint; connect with a WebSocket client",
                              code="websocket_required")
    return ws


async def refuse(request: web.Request, ws: web.WebSocketResponse, refusal: Refusal) -> web.WebSocketResponse:
    """Complete the handshake only to say why the socket is not admitted, then close."""
    await ws.prepare(request)
    await ws.send_str(refusal.frame())
    await ws.close(code=refusal.close_code)
    return ws


def check_cooldown(hub: ChatHub, address: str) -> None:
    """429 (before any upgrade) for an address whose socket was just closed for abuse."""
    wait = hub.cooldown.retry_after(address)
    if wait > 0:
        hub.stats["refused_cooldown"] += 1
        raise RateLimited("a chat socket from your address was closed for abuse; try again later",
                          retry_after=wait)


async def chat_socket(request: web.Request) -> web.StreamResponse:
    service = request.app[CHAT]
    room = await service.room(request.match_info["slug"])
    chat = service.chat
    ws = chat_websocket(request, chat)
    address = request_address(request)
    check_cooldown(service.hub, address)
    user = await connection_user(request)
    client = ChatClient(ws, request.transport, room.slug, user, chat.send_queue, address)
    refusal = service.admit(room, client, request)
    if refusal is not None:
        return await refuse(request, ws, refusal)
    try:
        writer = await ws.prepare(request)
        client.drain_waiter = writer.drain
        await service.bus.ready(room.slug)  # on a shared bus: what is published from now on arrives
        hello, newest = await service.hello(room, client)
        service.hub.start(client, hello, newest)
        await _Session(request, service, room, client).run()
    finally:
        service.hub.leave(client)
        await client.stop()
    return ws
