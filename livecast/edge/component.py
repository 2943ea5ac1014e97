"""Wires an edge node: the origin client, the HLS cache, the API proxy, chat and the
heartbeat. An edge has no RTMP listener and no database of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import web

from livecast.chat.bus.base import ChatBus
from livecast.edge import chat as edge_chat
from livecast.edge import heartbeat, hls_routes, proxy
from livecast.edge.source import EdgeSource
from livecast.edge.upstream import ORIGIN, OriginClient
from livecast.keys import SETTINGS

EDGE_SOURCE: web.AppKey[EdgeSource] = web.AppKey("edge_source", EdgeSource)


async def _origin_ctx(app: web.Application) -> AsyncIterator[None]:
    client = OriginClient(app[SETTINGS])
    await client.start()
    app[ORIGIN] = client
    source = app[EDGE_SOURCE] = EdgeSource(app[SETTINGS], client)
    app[hls_routes.SOURCE] = source
    yield
    await client.close()


def setup(app: web.Application, bus: ChatBus | None) -> list[Callable[[web.Application], AsyncIterator[None]]]:
    """Routes of the edge's parts; returns their lifecycles in start order (the origin
    client first: every other part calls the origin)."""
    chat = edge_chat.setup(app, bus)  # chat sockets (hosted on a shared bus, or proxied to the origin)
    beat = heartbeat.setup(app)
    hls_routes.add_routes(app)
    proxy.setup(app)  # last route: the catch-all for /api/v1/*
    return [_origin_ctx, chat, beat]
