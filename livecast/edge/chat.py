"""Chat on an edge: ``GET /api/v1/rooms/{slug}/chat``, at the same URL as on the origin.

With ``chat.bus`` set (Redis), the edge hosts its viewers' sockets itself: room events
arrive over the bus, and whatever a client posts is forwarded to the origin with the
client's own token and the cluster secret (``/internal/chat/...``), where it is
authenticated, validated, stored and published like a post made on the origin
(livecast.edge.chat_hosted). Without a bus, each chat socket is proxied to the origin's
socket (livecast.edge.chat_proxy): chat still works, with every socket held by the origin.

Either way the edge reads the client's identity itself (Bearer header, or the login
cookie only from pages of the edge's own host) and never passes the client's own
``X-Livecast-*`` headers on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import WSCloseCode, web

from livecast.chat.bus.base import ChatBus
from livecast.chat.hub import CLOSE_TIMEOUT
from livecast.edge import chat_hosted, chat_proxy
from livecast.edge.chat_state import EDGE_CHAT, EdgeChat
from livecast.edge.upstream import ORIGIN
from livecast.keys import SETTINGS

log = logging.getLogger(__name__)


def setup(app: web.Application, bus: ChatBus | None) -> Callable[[web.Application], AsyncIterator[None]]:
    """Add chat to an edge app: hosted on ``bus`` (a shared one), or proxied without.
    Call after the origin client's context is registered."""
    settings = app[SETTINGS]
    app[EDGE_CHAT] = EdgeChat(settings, bus)
    handler = chat_hosted.chat_socket if bus is not None else chat_proxy.chat_socket
    app.router.add_get("/api/v1/rooms/{slug}/chat", handler, allow_head=False)
    app.on_shutdown.append(_close_sockets)
    return _edge_chat_ctx


async def _edge_chat_ctx(app: web.Application) -> AsyncIterator[None]:
    edge = app[EDGE_CHAT]
    edge.origin = app[ORIGIN]
    edge.ws_session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, enable_cleanup_closed=True),
        cookie_jar=aiohttp.DummyCookieJar(),
    )
    if edge.bus is not None:
        await edge.bus.start()
        log.info("edge chat: hosting sockets on the shared bus")
    else:
        log.info("edge chat: no chat.bus; chat sockets are proxied to the origin")
    try:
        yield
    finally:
        edge._viewers.close()
        if edge.bus is not None:
            await edge.bus.close()
        await edge.ws_session.close()


async def _close_sockets(app: web.Application) -> None:
    edge = app[EDGE_CHAT]
    if edge.hub is not None:
        with contextlib.suppress(Exception):
            await edge.hub.close_all(WSCloseCode.GOING_AWAY)
    for ws in list(edge.proxied):
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await ws.close(code=WSCloseCode.GOING_AWAY)
