"""The edge's chat state (hub, bus, origin calls), shared by the hosted and proxied sockets."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web

from livecast.chat.bus.base import ChatBus
from livecast.chat.coalesce import Coalescer
from livecast.chat.cooldown import Cooldown
from livecast.chat.hub import ChatHub
from livecast.chat.service import VIEWERS_INTERVAL
from livecast.config import Settings
from livecast.core.errors import BadGateway, UpstreamError
from livecast.edge.upstream import OriginClient, upstream_errors


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
