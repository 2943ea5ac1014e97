"""The edge's origin client with several origins: an origin that answers, even with 503
"room moving", is alive, so a call that runs out of time after such answers neither moves
the edge to another origin nor marks this one down. An origin that never answers does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from livecast.config import Settings
from livecast.core.errors import BadGateway, GatewayTimeout
from livecast.edge.upstream import OriginClient
from procs import free_port


@pytest.fixture
async def moving_origin() -> AsyncIterator[tuple[str, list[str]]]:
    """An origin that answers its first request 503 and then holds every later one past
    the caller's budget (a room moving between origins while the origin is slow)."""
    seen: list[str] = []
    never = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.path)
        if len(seen) == 1:
            return web.json_response({"error": {"code": "moving"}}, status=503)
        await never.wait()
        return web.Response()

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", seen
    never.set()
    await runner.cleanup()


def _client(origins: str) -> OriginClient:
    settings = Settings()
    settings.server.role = "edge"
    settings.server.origin = origins
    settings.cluster.secret = "s"
    settings.cluster.upstream_timeout = 0.6
    return OriginClient(settings)


async def test_an_origin_that_answered_is_kept_when_the_call_runs_out_of_time(
        moving_origin: tuple[str, list[str]]) -> None:
    alive, seen = moving_origin
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    client = _client(f"{alive},{dead}")
    await client.start()
    try:
        with pytest.raises((BadGateway, GatewayTimeout)):
            await client.get("/hls/room/index.m3u8")
        assert len(seen) >= 2, "the origin was asked again after its 503"
        assert client.base == alive
        assert client.failovers == 0
        assert client.up
    finally:
        await client.close()


async def test_an_origin_that_never_answers_is_left_for_the_next() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    other = f"http://127.0.0.1:{free_port()}"
    client = _client(f"{dead},{other}")
    await client.start()
    try:
        with pytest.raises(BadGateway):
            await client.get("/hls/room/index.m3u8")
        assert client.failovers >= 1
        assert not client.up
    finally:
        await client.close()
