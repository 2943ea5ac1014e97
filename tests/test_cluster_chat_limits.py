"""Chat limits through edges (separate node processes): an edge passes the viewer's
address on, so per-address caps apply to viewers, not to the edge; an edge that hosts
sockets applies the cap and the frame budget itself."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from helpers import make_room
from test_chat_support import TIMEOUT, chat_url, connect


@pytest.fixture
async def second_address() -> AsyncIterator[aiohttp.ClientSession]:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0)))
    yield session
    await session.close()


async def refused(node: Any, slug: str) -> tuple[str, int]:
    async with node.http.ws_connect(chat_url(node, slug)) as ws:
        frame = await asyncio.wait_for(ws.receive_json(), TIMEOUT)
        assert frame["type"] == "error", frame
        msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
        return frame["code"], int(msg.data) if msg.type == aiohttp.WSMsgType.CLOSE else -1


async def test_proxying_edge_passes_the_viewer_address_to_the_origin_cap(
        cluster: Any, second_address: aiohttp.ClientSession) -> None:
    o = await cluster.node("origin", chat={"max_sockets_per_address": 2})
    e = await cluster.node("edge", role="edge", origin=o)  # no bus: sockets are proxied
    room = await make_room(o)
    slug = room["slug"]
    held = [(await connect(e, slug))[0] for _ in range(2)]
    assert await refused(e, slug) == ("too_many_connections", 1013)
    other, _ = await connect(e, slug, session=second_address, autoping=False)  # not the edge's address: admitted
    # The proxying edge applies the frame budget itself, and keeps the flooder out a while.
    assert await flood(other) == (["too_many_frames"], 1008)
    try:
        await second_address.ws_connect(chat_url(e, slug))
        raise AssertionError("the flooder's address was let in again at once")
    except aiohttp.WSServerHandshakeError as err:
        assert err.status == 429
    for ws in held:
        await ws.close()


async def flood(ws: Any) -> tuple[list[str], int]:
    """Ping until the server closes: the error codes seen and the close code."""
    try:
        for _ in range(200):
            await ws.ping(b"x")
    except ConnectionError:
        pass  # already closed: the frames below say how
    codes: list[str] = []
    while True:
        msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
        if msg.type == aiohttp.WSMsgType.TEXT:
            if msg.json()["type"] == "error":
                codes.append(msg.json()["code"])
        elif msg.type not in (aiohttp.WSMsgType.PING, aiohttp.WSMsgType.PONG):
            return codes, int(msg.data) if msg.type == aiohttp.WSMsgType.CLOSE else -1


async def test_hosting_edge_applies_the_cap_and_the_frame_budget(
        cluster: Any, second_address: aiohttp.ClientSession) -> None:
    r = await cluster.redis()
    o = await cluster.node("origin", chat={"bus": r.url})
    e = await cluster.node("edge", role="edge", origin=o,
                           chat={"bus": r.url, "max_sockets_per_address": 2, "frame_burst": 30})
    room = await make_room(o)
    slug = room["slug"]
    held = [(await connect(e, slug))[0] for _ in range(2)]
    assert await refused(e, slug) == ("too_many_connections", 1013)
    flooder, _ = await connect(e, slug, session=second_address, autoping=False)
    assert await flood(flooder) == (["too_many_frames"], 1008)
    for ws in held:
        await ws.close()
