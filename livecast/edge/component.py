"""Wires an edge node: the origin client, the HLS cache, the API proxy, chat and the
heartbeat. An edge has no RTMP listener and no database of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from livecast.edge.upstream import ORIGIN, OriginClient
from livecast.keys import SETTINGS


async def _origin_ctx(app: web.Application) -> AsyncIterator[None]:
    client = OriginClient(app[SETTINGS])
    await client.start()
    app[ORIGIN] = client
    yield
    await client.close()


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(_origin_ctx)  # first: everything below calls the origin
