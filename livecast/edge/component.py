"""Wires an edge node: the origin client, the HLS cache, the API proxy, chat and the
heartbeat. An edge has no RTMP listener and no database of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import web

from livecast.chat.bus.base import ChatBus
from livecast.config import Settings
from livecast.delivery import routes as hls_routes
from livecast.edge import chat as edge_chat
from livecast.edge import heartbeat, proxy, vod
from livecast.edge.renditions import EdgeRenditions
from livecast.edge.source import EdgeSource
from livecast.edge.upstream import ORIGIN, OriginClient

Lifecycle = Callable[[web.Application], AsyncIterator[None]]


def _origin_lifecycle(client: OriginClient) -> Lifecycle:
    async def origin_client(app: web.Application) -> AsyncIterator[None]:
        await client.start()
        try:
            yield
        finally:
            await client.close()

    return origin_client


def setup(app: web.Application, settings: Settings,
          bus: ChatBus | None) -> tuple[list[Lifecycle], EdgeSource]:
    """Build the edge's parts and routes; returns their lifecycles in start order (the
    origin client first: every other part calls the origin) and the HLS source."""
    client = OriginClient(settings)
    source = EdgeSource(settings, client)
    app[ORIGIN] = client  # the handlers' way to the origin
    app[hls_routes.SOURCE] = source
    chat = edge_chat.setup(app, bus)  # chat sockets (hosted on a shared bus, or proxied to the origin)
    beat = heartbeat.setup(app)
    vod.setup(app, source)  # before the live HLS routes
    hls_routes.add_routes(app)
    relay = EdgeRenditions(client, source.cache)  # a transcoding ladder's playlists, renditions, thumbnails
    hls_routes.add_rendition_routes(app, relay)
    hls_routes.set_master(app, relay)
    hls_routes.set_thumbnails(app, relay)
    proxy.setup(app)  # last route: the catch-all for /api/v1/*
    return [_origin_lifecycle(client), chat, beat], source
