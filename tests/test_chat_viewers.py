"""Viewer limits on a real node: distinct viewers, the per-address socket cap, and
logged-in viewers getting in ahead of one address's anonymous sockets.

127.0.0.1 and 127.0.0.2 (and .3) are different client addresses on loopback."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from livecast.chat.ws import CHAT
from helpers import make_room, register_and_login
from test_chat_support import TIMEOUT, chat_url, connect, next_frame


@pytest.fixture
async def sessions() -> AsyncIterator[dict[str, aiohttp.ClientSession]]:
    """One client session per source address."""
    made = {ip: aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(ip, 0), limit=0))
            for ip in ("127.0.0.1", "127.0.0.2", "127.0.0.3")}
    yield made
    for session in made.values():
        await session.close()


async def _patch_max_viewers(node: Any, room: dict[str, Any], limit: int) -> None:
    async with node.http.patch(node.url(f"/api/v1/rooms/{room['slug']}/chat-settings"),
                               json={"max_viewers": limit}, headers=room["headers"]) as r:
        assert r.status == 200, await r.text()


async def _try(session: aiohttp.ClientSession, node: Any, slug: str,
               who: dict[str, Any] | None = None) -> tuple[str, Any]:
    """Open a socket: ("hello", ws) if admitted, else (error code, close code)."""
    ws = await session.ws_connect(chat_url(node, slug), headers=dict(who["headers"]) if who else {})
    first = await asyncio.wait_for(ws.receive_json(), TIMEOUT)
    if first["type"] == "hello":
        return "hello", ws
    msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
    await ws.close()
    return first["code"], msg.data if msg.type == aiohttp.WSMsgType.CLOSE else None


async def _open_many(session: aiohttp.ClientSession, node: Any, slug: str,
                     count: int) -> tuple[list[Any], Counter[Any]]:
    limit = asyncio.Semaphore(50)

    async def one() -> tuple[str, Any]:
        async with limit:
            return await _try(session, node, slug)

    results = await asyncio.gather(*[one() for _ in range(count)])
    admitted = [ws for kind, ws in results if kind == "hello"]
    refused = Counter((kind, code) for kind, code in results if kind != "hello")
    return admitted, refused


@pytest.mark.slow
async def test_a_room_with_max_viewers_still_admits_a_logged_in_viewer_while_one_address_holds_anonymous_sockets(
        node: Any, sessions: dict[str, aiohttp.ClientSession]) -> None:
    room = await make_room(node)
    slug = room["slug"]
    await _patch_max_viewers(node, room, 3)
    cap = node.settings.chat.max_sockets_per_address
    assert cap == 10  # the default

    # 50 anonymous sockets from one address: the cap is admitted, as one viewer.
    crowd, refused = await _open_many(sessions["127.0.0.1"], node, slug, 50)
    assert len(crowd) == cap and refused == {("too_many_connections", 1013): 50 - cap}
    assert node.node.app[CHAT].viewers(slug) == 1

    # A logged-in viewer from that very address gets in: an anonymous socket makes room.
    fan = await register_and_login(node)
    kind, fan_ws = await _try(sessions["127.0.0.1"], node, slug, fan)
    assert kind == "hello"
    closes = await asyncio.gather(*[_closed_by_server(ws) for ws in crowd])
    assert sorted(c for c in closes if c is not None) == [("displaced", 1013)]
    # A new visitor from another address gets in too.
    kind, visitor = await _try(sessions["127.0.0.2"], node, slug)
    assert kind == "hello"
    assert node.node.app[CHAT].viewers(slug) == 3
    # Now the room is full for a new anonymous address...
    assert await _try(sessions["127.0.0.3"], node, slug) == ("room_full", 1013)
    # ...but not for a logged-in viewer: the crowded address gives up another socket.
    late = await register_and_login(node)
    kind, late_ws = await _try(sessions["127.0.0.3"], node, slug, late)
    assert kind == "hello"
    assert node.node.app[CHAT].viewers(slug) == 4
    # and the owner always gets in.
    kind, owner_ws = await _try(sessions["127.0.0.3"], node, slug, room)
    assert kind == "hello"
    for ws in (*crowd, fan_ws, visitor, late_ws, owner_ws):
        await ws.close()


async def _closed_by_server(ws: Any, wait: float = 0.5) -> tuple[str, int] | None:
    """(error code, close code) if the server closed this socket within ``wait`` seconds."""
    code = None
    try:
        while True:
            msg = await asyncio.wait_for(ws.receive(), wait)
            if msg.type == aiohttp.WSMsgType.TEXT and msg.json()["type"] == "error":
                code = msg.json()["code"]
            elif msg.type == aiohttp.WSMsgType.CLOSE:
                return code or "", int(msg.data)
            elif msg.type != aiohttp.WSMsgType.TEXT:
                return code or "", -1
    except TimeoutError:
        return None


@pytest.mark.slow
async def test_500_sockets_from_one_address_only_the_cap_is_accepted(
        node_factory: Any, sessions: dict[str, aiohttp.ClientSession]) -> None:
    node = await node_factory(chat={"max_sockets_per_address": 10})
    room = await make_room(node)
    slug = room["slug"]
    other = await make_room(node, "Other room")
    crowd, refused = await _open_many(sessions["127.0.0.1"], node, slug, 450)
    more, refused_more = await _open_many(sessions["127.0.0.1"], node, other["slug"], 50)  # the cap spans rooms
    assert len(crowd) == 10 and not more
    assert refused + refused_more == {("too_many_connections", 1013): 490}
    assert node.node.app[CHAT].hub.stats["refused_too_many_connections"] == 490
    # Another address is not affected, and a closed socket frees its place.
    kind, ws = await _try(sessions["127.0.0.2"], node, slug)
    assert kind == "hello"
    await crowd.pop().close()
    await _eventually(lambda: node.node.app[CHAT].hub.sockets_from("127.0.0.1") == 9)
    kind, again = await _try(sessions["127.0.0.1"], node, slug)
    assert kind == "hello"
    for sock in (*crowd, ws, again):
        await sock.close()


async def test_anonymous_sockets_count_once_per_address(node: Any, sessions: dict[str, aiohttp.ClientSession]) -> None:
    room = await make_room(node)
    slug = room["slug"]
    a1, _ = await connect(node, slug, session=sessions["127.0.0.1"])
    a2, hello = await connect(node, slug, session=sessions["127.0.0.1"])
    assert hello["viewers"] == 1
    b, hello = await connect(node, slug, session=sessions["127.0.0.2"])
    assert hello["viewers"] == 2
    await a1.close()
    await b.close()
    await next_frame(a2, "viewers", lambda f: f["count"] == 1)
    await a2.close()


async def _eventually(predicate: Any, timeout: float = TIMEOUT) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met"
        await asyncio.sleep(0.02)
