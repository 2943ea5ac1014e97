"""Wires an edge node: the origin client, the HLS cache, the API proxy, chat and the
heartbeat. An edge has no RTMP listener and no database of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from livecast.delivery import routes as hls_routes
from livecast.edge import chat as edge_chat
from livecast.edge import heartbeat, proxy
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


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(_origin_ctx)  # first: everything below calls the origin
    edge_chat.setup(app)  # chat sockets (hosted on the bus, or proxied to the origin)
    heartbeat.setup(app)
    hls_routes.add_routes(app)
    proxy.setup(app)  # last: the catch-all for /api/v1/*
