"""Gifts on a real node: catalog, paying in one transaction, no overdraft under
concurrency, leaderboard, refusals."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import aiohttp
import pytest

from helpers import make_room, register_and_login
from test_chat_support import TIMEOUT, coins, connect, error_code, make_admin, next_frame


async def test_catalog_lists_configured_gifts(node: Any) -> None:
    async with node.http.get(node.url("/api/v1/gifts")) as r:
        body = await r.json()
    assert body == {"gifts": [{"name": g.name, "display_name": g.display_name, "price": g.price}
                              for g in node.settings.gifts]}


async def test_gift_moves_coins_and_is_broadcast(node: Any) -> None:
    room = await make_room(node)
    fan = await register_and_login(node)
    viewer, _ = await connect(node, room["slug"])
    ws, _ = await connect(node, room["slug"], fan)
    await ws.send_json({"type": "gift", "gift": "star", "quantity": 2})
    gift = await next_frame(viewer, "gift")
    assert gift == await next_frame(ws, "gift")
    assert set(gift) == {"type", "id", "user", "gift", "quantity", "value", "ts"}
    assert (gift["gift"], gift["quantity"], gift["value"]) == ("star", 2, 40)
    assert gift["user"]["username"] == fan["user"]["username"]
    signup = node.settings.auth.signup_coins
    assert await coins(node, fan) == signup - 40 and await coins(node, room) == signup + 40

    # Too expensive: an error frame and nothing changes.
    await ws.send_json({"type": "gift", "gift": "rocket", "quantity": 1})
    assert await error_code(ws) == "insufficient_coins"
    assert await coins(node, fan) == signup - 40 and await coins(node, room) == signup + 40

    # Gifts to your own room are refused.
    own, _ = await connect(node, room["slug"], room)
    await own.send_json({"type": "gift", "gift": "heart"})
    assert await error_code(own) == "own_room"
    for sock in (viewer, ws, own):
        await sock.close()


async def test_rest_gift_and_leaderboard(node: Any) -> None:
    room = await make_room(node)
    slug = room["slug"]
    admin = await make_admin(node)
    fans = [await register_and_login(node) for _ in range(3)]
    async with node.http.post(node.url(f"/api/v1/admin/users/{fans[2]['user']['username']}/coins"),
                              json={"amount": 1000}, headers=admin["headers"]) as r:
        assert r.status == 200
    sends = [(fans[0], "rose", 1), (fans[1], "star", 1), (fans[0], "heart", 3), (fans[2], "rocket", 5)]
    for who, name, qty in sends:
        async with node.http.post(node.url(f"/api/v1/rooms/{slug}/gifts"), json={"gift": name, "quantity": qty},
                                  headers=who["headers"]) as r:
            assert r.status == 201, await r.text()
            body = await r.json()
            assert body["gift"]["gift"] == name and body["coins"] == await coins(node, who)
    async with node.http.post(node.url(f"/api/v1/rooms/{slug}/gifts"), json={"gift": "rocket", "quantity": 2},
                              headers=fans[0]["headers"]) as r:
        assert r.status == 409 and (await r.json())["error"]["code"] == "insufficient_coins"
    async with node.http.post(node.url(f"/api/v1/rooms/{slug}/gifts"), json={"gift": "rose"}) as r:
        assert r.status == 401
    async with node.http.get(node.url(f"/api/v1/rooms/{slug}/gifts/leaderboard")) as r:
        board = (await r.json())["leaderboard"]
    names = [f["user"]["username"] for f in fans]
    assert board == [
        {"user": {"username": names[2]}, "value": 500, "gifts": 5},
        {"user": {"username": names[1]}, "value": 20, "gifts": 1},
        {"user": {"username": names[0]}, "value": 8, "gifts": 4},
    ]
    async with node.http.get(node.url(f"/api/v1/rooms/{slug}/gifts/leaderboard?limit=1")) as r:
        assert len((await r.json())["leaderboard"]) == 1


@pytest.mark.slow
async def test_concurrent_gifts_never_overdraw(node_factory: Any) -> None:
    """100 heart frames (1 coin each) over 5 sockets plus 20 REST sends from a user
    holding 10 coins: exactly 10 succeed and no coin is created or lost."""
    node = await node_factory(auth={"signup_coins": 10}, chat={"max_errors": 1000})
    room = await make_room(node)
    slug = room["slug"]
    fan = await register_and_login(node)
    before = await coins(node, fan) + await coins(node, room)
    observer, _ = await connect(node, slug)
    sockets = [(await connect(node, slug, fan))[0] for _ in range(5)]

    async def rest_send(http: aiohttp.ClientSession) -> int:
        async with http.post(node.url(f"/api/v1/rooms/{slug}/gifts"), json={"gift": "heart"},
                             headers=fan["headers"]) as r:
            return r.status

    frame = {"type": "gift", "gift": "heart", "quantity": 1}
    async with aiohttp.ClientSession() as http:
        results = await asyncio.gather(
            *[ws.send_json(frame) for ws in sockets for _ in range(20)],
            *[rest_send(http) for _ in range(20)],
        )
    statuses = Counter(r for r in results if r is not None)
    assert set(statuses) <= {201, 409}

    async def count_refusals(ws: Any) -> int:
        count = 0
        try:
            while True:
                data = (await ws.receive(timeout=1.5)).json()
                if data["type"] == "error":
                    assert data["code"] == "insufficient_coins"
                    count += 1
        except asyncio.TimeoutError:
            return count

    refused_ws = sum(await asyncio.gather(*[count_refusals(ws) for ws in sockets]))
    gifts = 0
    try:
        while True:
            data = (await observer.receive(timeout=0.5)).json()
            gifts += data["type"] == "gift"
    except asyncio.TimeoutError:
        pass
    assert gifts == 10
    assert refused_ws + statuses[409] == 110 and refused_ws + statuses[409] + gifts == 120
    assert await coins(node, fan) == 0
    assert await coins(node, fan) + await coins(node, room) == before
    async with node.http.get(node.url(f"/api/v1/rooms/{slug}/gifts/leaderboard")) as r:
        assert (await r.json())["leaderboard"][0]["value"] == 10
    for ws in [observer, *sockets]:
        await asyncio.wait_for(ws.close(), TIMEOUT)
