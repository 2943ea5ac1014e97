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
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import WSCloseCode, web

from livecast.chat.bus import ChatBus, make_bus
from livecast.chat.coalesce import Coalescer
from livecast.chat.cooldown import Cooldown
from livecast.chat.hub import CLOSE_TIMEOUT, ChatHub
from livecast.chat.service import VIEWERS_INTERVAL
from livecast.config import Settings
from livecast.edge.upstream import ORIGIN, OriginClient, upstream_errors
from livecast.core.errors import BadGateway, UpstreamError
from livecast.keys import SETTINGS

log = logging.getLogger(__name__)


class OriginRefused(UpstreamError):
    """The origin refused a forwarded call; ``frame`` is the error frame it answered with."""

    def __init__(self, status: int, error: dict[str, Any]) -> None:
        super().__init__(status, str(error.get("code", "upstream_error")), str(error.get("message", "")))
        self.frame = {"type": "error", **error}


class EdgeChat:
    """The edge's chat state: its hub and bus (hosted mode) and its origin calls."""

    def __init__(self, settings: Settings, bus: ChatBus | None) -> None:
        self.settings = settings
        self.chat = settings.chat
        self.bus = bus
        self._viewers = Coalescer(VIEWERS_INTERVAL, self._publish_viewers)
        self.hub = ChatHub(bus, self._viewers.mark, self.chat.abuse_block_seconds) if bus is not None else None
        self.origin: OriginClient | None = None
        self.ws_session: aiohttp.ClientSession | None = None  # proxied sockets (no pool limit)
        self.warned_no_bus = False
        self.proxied: set[web.WebSocketResponse] = set()  # sockets relayed to the origin
        self.cooldown = Cooldown(self.chat.abuse_block_seconds)  # proxied sockets' abusers

    def _publish_viewers(self, slug: str) -> None:
        if self.bus is not None and self.hub is not None:
            self.bus.set_viewers(slug, self.hub.viewers(slug))

    def viewers(self, slug: str) -> int:
        if self.bus is None or self.hub is None:
            return 0
        return self.bus.viewers(slug, self.hub.viewers(slug))

    async def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` to an origin internal route; ``OriginRefused`` for an error answer."""
        origin = self.origin
        assert origin is not None
        try:
            with upstream_errors():
                async with origin.session.post(origin.url(path), json=body, headers=origin.headers(),
                                               timeout=aiohttp.ClientTimeout(total=origin.timeout)) as resp:
                    data = await resp.json(content_type=None)
        except ValueError as err:
            raise BadGateway("the origin answered something that is not JSON") from err
        if not isinstance(data, dict):
            raise BadGateway("the origin answered something unexpected")
        error = data.get("error")
        if resp.status >= 400 or error is not None:
            if resp.status >= 500 and not isinstance(error, dict):
                raise BadGateway(f"the origin answered {resp.status}")
            raise OriginRefused(resp.status, error if isinstance(error, dict) else {})
        return data


EDGE_CHAT: web.AppKey[EdgeChat] = web.AppKey("edge_chat", EdgeChat)


def setup(app: web.Application) -> None:
    """Add chat to an edge app. Call after the origin client's context is registered."""
    from livecast.edge import chat_hosted, chat_proxy

    settings = app[SETTINGS]
    bus = make_bus(settings.chat, settings.cluster.heartbeat_interval,
                   settings.cluster.heartbeat_timeout) if settings.chat.bus else None
    app[EDGE_CHAT] = EdgeChat(settings, bus)
    handler = chat_hosted.chat_socket if bus is not None else chat_proxy.chat_socket
    app.router.add_get("/api/v1/rooms/{slug}/chat", handler, allow_head=False)
    app.cleanup_ctx.append(_edge_chat_ctx)
    app.on_shutdown.append(_close_sockets)


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
