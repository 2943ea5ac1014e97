"""Moderation on a real node: deleting comments, bans, chat settings (chat off, slow
mode, viewer limit), the per-user rate limit, disabled accounts."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from helpers import make_room, register_and_login
from test_chat_support import TIMEOUT, chat_url, connect, error_code, make_admin, next_frame, post


async def _patch_settings(node: Any, slug: str, who: dict[str, Any], **body: Any) -> tuple[int, Any]:
    async with node.http.patch(node.url(f"/api/v1/rooms/{slug}/chat-settings"), json=body,
                               headers=who["headers"]) as r:
        return r.status, await r.json()


async def test_owner_and_admin_delete_comments(node: Any) -> None:
    room = await make_room(node)
    slug = room["slug"]
    fan = await register_and_login(node)
    admin = await make_admin(node)
    ws, _ = await connect(node, slug, fan)
    first, second = await post(ws, "first"), await post(ws, "second")
    url = node.url(f"/api/v1/rooms/{slug}/comments/{first['id']}")
    for who, status in ((None, 401), (fan, 403)):
        async with node.http.delete(url, headers=who["headers"] if who else {}) as r:
            assert r.status == status
    async with node.http.delete(url, headers=room["headers"]) as r:
        assert r.status == 204
    assert (await next_frame(ws, "deleted")) == {"type": "deleted", "id": first["id"]}
    async with node.http.delete(url, headers=admin["headers"]) as r:
        assert r.status == 404 and (await r.json())["error"]["code"] == "comment_not_found"
    async with node.http.delete(node.url(f"/api/v1/rooms/{slug}/comments/{second['id']}"),
                                headers=admin["headers"]) as r:
        assert r.status == 204
    async with node.http.get(node.url(f"/api/v1/rooms/{slug}/comments")) as r:
        assert (await r.json())["comments"] == []
    _, hello = await connect(node, slug)
    assert hello["history"] == []
    await ws.close()


async def test_bans(node: Any) -> None:
    room = await make_room(node)
    slug = room["slug"]
    fan, other = await register_and_login(node), await register_and_login(node)
    name = fan["user"]["username"]
    ws, _ = await connect(node, slug, fan)
    await post(ws, "before the ban")
    ban_url = node.url(f"/api/v1/rooms/{slug}/bans/{name}")
    async with node.http.post(ban_url, headers=other["headers"]) as r:
        assert r.status == 403
    async with node.http.post(ban_url, headers=room["headers"]) as r:
        assert r.status == 201 and (await r.json())["ban"]["user"]["username"] == name
    async with node.http.post(ban_url, headers=room["headers"]) as r:
        assert r.status == 200
    for frame in ({"type": "comment", "text": "banned?"}, {"type": "gift", "gift": "heart"}, {"type": "like"}):
        await ws.send_json(frame)
        assert await error_code(ws) == "banned"
    await ws.send_json({"type": "ping"})
    await next_frame(ws, "pong")  # still connected, still reading
    async with node.http.get(node.url(f"/api/v1/rooms/{slug}/bans"), headers=room["headers"]) as r:
        bans = (await r.json())["bans"]
    assert [b["user"]["username"] for b in bans] == [name]
    assert bans[0]["by"]["username"] == room["owner"]["username"]
    async with node.http.get(node.url(f"/api/v1/rooms/{slug}/bans"), headers=other["headers"]) as r:
        assert r.status == 403
    owner_ban = node.url(f"/api/v1/rooms/{slug}/bans/{room['owner']['username']}")
    async with node.http.post(owner_ban, headers=room["headers"]) as r:
        assert r.status == 403 and (await r.json())["error"]["code"] == "cannot_ban"
    async with node.http.post(node.url(f"/api/v1/rooms/{slug}/bans/nobody_here"), headers=room["headers"]) as r:
        assert r.status == 404
    async with node.http.delete(ban_url, headers=room["headers"]) as r:
        assert r.status == 204
    async with node.http.delete(ban_url, headers=room["headers"]) as r:
        assert r.status == 404 and (await r.json())["error"]["code"] == "not_banned"
    await post(ws, "after the ban")
    await ws.close()


async def test_chat_settings_and_chat_disabled(node: Any) -> None:
    room = await make_room(node)
    slug = room["slug"]
    fan = await register_and_login(node)
    async with node.http.get(node.url(f"/api/v1/rooms/{slug}/chat-settings")) as r:
        assert (await r.json())["settings"] == {"slow_mode_seconds": 0, "chat_enabled": True, "max_viewers": 0}
    assert (await _patch_settings(node, slug, fan, chat_enabled=False))[0] == 403
    for bad in ({"slow_mode_seconds": 3601}, {"slow_mode_seconds": "5"}, {"chat_enabled": 1},
                {"max_viewers": -1}, {"max_viewers": 100001}, {}):
        assert (await _patch_settings(node, slug, room, **bad))[0] == 400, bad
    ws, _ = await connect(node, slug, fan)
    owner, _ = await connect(node, slug, room)
    status, body = await _patch_settings(node, slug, room, chat_enabled=False)
    assert status == 200 and body["settings"]["chat_enabled"] is False
    assert (await next_frame(ws, "settings"))["chat_enabled"] is False
    await ws.send_json({"type": "comment", "text": "quiet please?"})
    assert await error_code(ws) == "chat_disabled"
    await post(owner, "the owner may still talk")
    await _patch_settings(node, slug, room, chat_enabled=True)
    await post(ws, "back on")
    for sock in (ws, owner):
        await sock.close()


async def test_slow_mode_exempts_owner(node: Any) -> None:
    room = await make_room(node)
    slug = room["slug"]
    fan = await register_and_login(node)
    await _patch_settings(node, slug, room, slow_mode_seconds=60)
    ws, hello = await connect(node, slug, fan)
    assert hello["settings"]["slow_mode_seconds"] == 60
    await post(ws, "one")
    await ws.send_json({"type": "comment", "text": "two"})
    frame = await next_frame(ws, "error")
    assert frame["code"] == "slow_mode" and 50 <= frame["retry_after"] <= 60
    owner, _ = await connect(node, slug, room)
    await post(owner, "owner one")
    await post(owner, "owner two")
    for sock in (ws, owner):
        await sock.close()


async def test_rate_limit(node_factory: Any) -> None:
    node = await node_factory(chat={"rate_count": 3, "rate_seconds": 60})
    room = await make_room(node)
    fan = await register_and_login(node)
    ws, _ = await connect(node, room["slug"], fan)
    for i in range(3):
        await post(ws, f"quick {i}")
    await ws.send_json({"type": "comment", "text": "one too many"})
    frame = await next_frame(ws, "error")
    assert frame["code"] == "rate_limited" and frame["retry_after"] >= 1
    # The limit is per user, not per socket.
    second, _ = await connect(node, room["slug"], fan)
    await second.send_json({"type": "comment", "text": "other socket"})
    assert await error_code(second) == "rate_limited"
    for sock in (ws, second):
        await sock.close()


async def test_max_viewers(node: Any) -> None:
    room = await make_room(node)
    slug = room["slug"]
    fan = await register_and_login(node)
    await _patch_settings(node, slug, room, max_viewers=2)
    a, _ = await connect(node, slug, fan)
    b, _ = await connect(node, slug)
    # A visitor from another address (one from b's address would be the same viewer).
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))) as other, \
            other.ws_connect(chat_url(node, slug)) as full:
        frame = await asyncio.wait_for(full.receive_json(), TIMEOUT)
        assert frame["type"] == "error" and frame["code"] == "room_full"
        msg = await asyncio.wait_for(full.receive(), TIMEOUT)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1013
    # A second socket of a user already inside does not count; the owner always gets in.
    again, hello = await connect(node, slug, fan)
    assert hello["viewers"] == 2
    owner, hello = await connect(node, slug, room)
    assert hello["viewers"] == 3
    for sock in (a, b, again, owner):
        await sock.close()


async def test_disabled_user_can_no_longer_post(node: Any) -> None:
    room = await make_room(node)
    fan = await register_and_login(node)
    admin = await make_admin(node)
    ws, _ = await connect(node, room["slug"], fan)
    await post(ws, "still fine")
    async with node.http.patch(node.url(f"/api/v1/admin/users/{fan['user']['username']}"),
                               json={"disabled": True}, headers=admin["headers"]) as r:
        assert r.status == 200
    assert await error_code(ws) == "account_disabled"
    await ws.send_json({"type": "comment", "text": "am I gone?"})
    assert await error_code(ws) == "login_required"
    await ws.send_json({"type": "auth", "token": fan["token"]})
    assert await error_code(ws) == "invalid_token"
    await ws.close()
