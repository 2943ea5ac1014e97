"""An edge without a chat bus: each chat socket is relayed to the origin's chat socket.

The edge decides the identity as the origin would (Bearer header, or the login cookie
only from the edge's own pages) and opens the origin socket with that token as a Bearer
header plus the cluster secret; the client's own headers (Origin, cookies,
``X-Livecast-*``) are not passed on. Frames are relayed as they are, in both
directions, one at a time: a client that does not read stalls only its own origin
socket, which the origin then drops like any slow reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

from livecast.chat.admission import request_address
from livecast.chat.hub import CLOSE_TIMEOUT
from livecast.chat.ws import HEARTBEAT, chat_response, connection_token
from livecast.cluster import client_ip
from livecast.core.errors import RateLimited
from livecast.core.tasks import cancel_and_wait
from livecast.edge.chat_state import EDGE_CHAT, EdgeChat
from livecast.edge.upstream import upstream_errors

log = logging.getLogger(__name__)


async def _relay_plain(request: web.Request, path: str) -> web.Response:
    """The origin's answer to a plain GET of the socket URL (its 404 or 400 as is)."""
    fetched = await request.app[EDGE_CHAT].origin.get(path)  # type: ignore[union-attr]
    return web.Response(status=fetched.status, body=fetched.body,
                        content_type=fetched.headers.get("Content-Type", "application/json").split(";")[0])


def _retry_after(err: aiohttp.WSServerHandshakeError) -> float:
    try:
        return float(err.headers.get("Retry-After", 1)) if err.headers else 1.0
    except ValueError:
        return 1.0


def _failed(edge: EdgeChat, address: str, code: int) -> None:
    """The frame guard failed a proxied socket; over its budget, its address cools down."""
    if code == WSCloseCode.POLICY_VIOLATION:
        edge.cooldown.block(address)
        log.info("proxied chat socket from %s closed: over the frame budget", address)


async def _pump(source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
                sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse) -> None:
    async for msg in source:
        if msg.type == WSMsgType.TEXT:
            await sink.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await sink.send_bytes(msg.data)
        elif msg.type == WSMsgType.PING:  # the client's ping (counted by its frame guard): answered here
            await source.pong(msg.data)
        elif msg.type == WSMsgType.PONG:
            continue
        else:
            break


async def chat_socket(request: web.Request) -> web.StreamResponse:
    edge = request.app[EDGE_CHAT]
    origin, session = edge.origin, edge.ws_session
    assert origin is not None and session is not None
    path = f"/api/v1/rooms/{request.match_info['slug']}/chat"
    ws = chat_response(edge.chat)
    if not ws.can_prepare(request).ok:
        return await _relay_plain(request, path)
    address = request_address(request)
    wait = edge.cooldown.retry_after(address)
    if wait > 0:
        raise RateLimited("a chat socket from your address was closed for abuse; try again later", retry_after=wait)
    token = connection_token(request)
    extra = {"X-Livecast-Client-Ip": client_ip(request)}  # the origin's per-address caps apply to the viewer
    if token:
        extra["Authorization"] = f"Bearer {token}"
    with upstream_errors():
        try:
            upstream = await session.ws_connect(
                origin.url(path), headers=origin.headers(extra), heartbeat=HEARTBEAT, max_msg_size=0,
                compress=0, timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=CLOSE_TIMEOUT),
            )
        except aiohttp.WSServerHandshakeError as err:
            if err.status == 429:  # the viewer's address is cooling down after an abuse close
                raise RateLimited("a chat socket from your address was closed for abuse; try again later",
                                  retry_after=_retry_after(err)) from err
            return await _relay_plain(request, path)  # e.g. the room does not exist: the origin's 404
    ws.on_fail = lambda code: _failed(edge, address, code)
    edge.proxied.add(ws)
    try:
        await ws.prepare(request)
        down = asyncio.create_task(_pump(upstream, ws))
        up = asyncio.create_task(_pump(ws, upstream))
        await asyncio.wait({down, up}, return_when=asyncio.FIRST_COMPLETED)
        for task in (down, up):
            await cancel_and_wait(task)  # a pump's own ConnectionError/RuntimeError stays inside it
        if upstream.closed and upstream.close_code and upstream.close_code not in (1005, 1006):
            code = upstream.close_code  # the origin's reason (1008, room deleted, ...)
        else:
            code = WSCloseCode.GOING_AWAY if upstream.closed else WSCloseCode.OK
        with contextlib.suppress(ConnectionError, RuntimeError, asyncio.TimeoutError):
            await ws.close(code=code)
    finally:
        edge.proxied.discard(ws)
        with contextlib.suppress(ConnectionError, RuntimeError, asyncio.TimeoutError):
            await upstream.close()
    return ws
