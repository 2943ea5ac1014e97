"""The chat WebSocket on a real node: delivery, history, paging, persistence across a
restart, authentication, refusals and error frames."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from typing import Any

import aiohttp
import pytest

from livecast.core.events import StreamStarted, StreamStopped
from livecast.keys import EVENTS
from helpers import make_room, register_and_login, room_json, wait_for
from test_chat_support import TIMEOUT, chat_url, coins, connect, error_code, next_frame, post


async def test_comment_reaches_other_client_with_stored_id(node: Any) -> None:
    room = await make_room(node)
    alice = await register_and_login(node)
    wa, hello_a = await connect(node, room["slug"], alice)
    wb, hello_b = await connect(node, room["slug"])
    assert hello_a["room"] == room["slug"] and hello_a["history"] == [] and hello_a["live"] is False
    assert hello_a["user"]["username"] == alice["user"]["username"] and hello_b["user"] is None
    assert hello_b["viewers"] == 2 and hello_b["likes"] == 0

    await wa.send_json({"type": "comment", "text": "hello room"})
    seen_b = await next_frame(wb, "comment")
    seen_a = await next_frame(wa, "comment")  # the sender's acknowledgement
    assert seen_a == seen_b
    assert isinstance(seen_b["id"], int) and seen_b["id"] > 0
    assert seen_b["user"] == {"username": alice["user"]["username"], "role": alice["user"]["role"]}
    assert seen_b["text"] == "hello room" and seen_b["ts"].endswith("Z")
    assert set(seen_b) == {"type", "id", "user", "text", "ts"}

    # Presence: the room API shows the open sockets; B leaving is broadcast (coalesced).
    assert (await room_json(node, room["slug"]))["viewers"] == 2
    await wb.close()
    await next_frame(wa, "viewers", lambda f: f["count"] == 1)
    await wa.close()


async def test_history_on_connect_and_paging(node_factory: Any) -> None:
    node = await node_factory(chat={"rate_count": 1000})
    room = await make_room(node)
    slug = room["slug"]
    ws, _ = await connect(node, slug, room)
    for i in range(55):
        await ws.send_json({"type": "comment", "text": f"c{i}"})
    ids = [(await next_frame(ws, "comment", lambda f, i=i: f["text"] == f"c{i}"))["id"] for i in range(55)]
    await ws.close()

    _, hello = await connect(node, slug)
    history = hello["history"]
    assert len(history) == 50 and [c["id"] for c in history] == ids[5:]  # the last 50, oldest first
    assert history[-1]["text"] == "c54"

    async with node.http.get(node.url(f"/api/v1/rooms/{slug}/comments?limit=20")) as r:
        page = await r.json()
    assert [c["id"] for c in page["comments"]] == ids[::-1][:20]  # newest first
    async with node.http.get(node.url(f"/api/v1/rooms/{slug}/comments"),
                             params={"before": page["next_before"], "limit": 100}) as r:
        rest = await r.json()
    assert [c["id"] for c in rest["comments"]] == ids[::-1][20:] and rest["next_before"] is None
    async with node.http.get(node.url(f"/api/v1/rooms/{slug}/comments")) as r:
        assert len((await r.json())["comments"]) == 50
    for query in ("limit=0", "limit=101", "before=x", "before=-1"):
        async with node.http.get(node.url(f"/api/v1/rooms/{slug}/comments?{query}")) as r:
            assert r.status == 400, query
    async with node.http.get(node.url("/api/v1/rooms/no-such-room/comments")) as r:
        assert r.status == 404


async def test_restart_keeps_comments_likes_and_balances(node_factory: Any, tmp_path: Any) -> None:
    node = await node_factory()
    room = await make_room(node)
    slug = room["slug"]
    fan = await register_and_login(node)
    ws, _ = await connect(node, slug, fan)
    acked = await post(ws, "survives a restart")
    await ws.send_json({"type": "like", "count": 7})
    await ws.send_json({"type": "like"})
    await next_frame(ws, "likes", lambda f: f["total"] == 8)
    await ws.send_json({"type": "gift", "gift": "rose", "quantity": 3})
    gift = await next_frame(ws, "gift")
    assert gift["value"] == 15 and gift["quantity"] == 3
    await ws.close()
    await node.stop()

    node = await node_factory()
    _, hello = await connect(node, slug)
    assert [c["id"] for c in hello["history"]] == [acked["id"]]
    assert hello["likes"] == 8
    signup = node.settings.auth.signup_coins
    for who, expected in ((fan, signup - 15), (room, signup + 15)):  # sessions survive too
        assert await coins(node, who) == expected


@pytest.mark.slow
async def test_likes_are_flushed_within_a_second(node: Any) -> None:
    room = await make_room(node)
    ws, _ = await connect(node, room["slug"], room)
    for _ in range(5):
        await ws.send_json({"type": "like", "count": 10})
    await next_frame(ws, "likes", lambda f: f["total"] == 50)

    def stored() -> tuple[int, ...] | None:
        with sqlite3.connect(node.settings.db_path) as db:
            row: tuple[int, ...] | None = db.execute("SELECT likes FROM room_chat").fetchone()
            return row

    # no shutdown: the background flusher writes it (every second)
    await wait_for(lambda: stored() == (50,), timeout=5, what="the likes flushed")
    assert stored() == (50,)
    await ws.close()


async def test_likes_frames_are_coalesced(node: Any) -> None:
    room = await make_room(node)
    ws, _ = await connect(node, room["slug"], room)
    for _ in range(10):
        await ws.send_json({"type": "like", "count": 2})
    totals = []
    while not totals or totals[-1] != 20:
        totals.append((await next_frame(ws, "likes"))["total"])
    assert len(totals) < 10 and totals == sorted(totals)
    await ws.close()


async def test_anonymous_cannot_post_until_auth_frame(node: Any) -> None:
    room = await make_room(node)
    fan = await register_and_login(node)
    ws, _ = await connect(node, room["slug"])
    for frame in ({"type": "comment", "text": "hi"}, {"type": "like"}, {"type": "gift", "gift": "heart"}):
        await ws.send_json(frame)
        assert await error_code(ws) == "login_required"
    await ws.send_json({"type": "auth", "token": "x" * 43})
    assert await error_code(ws) == "invalid_token"
    await ws.send_json({"type": "auth", "token": fan["token"]})
    ok = await next_frame(ws, "auth_ok")
    assert ok["user"]["username"] == fan["user"]["username"]
    assert (await post(ws, "now I can"))["user"]["username"] == fan["user"]["username"]
    async with node.http.get(node.url(f"/api/v1/rooms/{room['slug']}/comments")) as r:
        assert [c["text"] for c in (await r.json())["comments"]] == ["now I can"]
    await ws.close()


async def test_cookie_login_works_only_from_this_origin(node: Any) -> None:
    room = await make_room(node)
    fan = await register_and_login(node)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(node.url("/api/v1/auth/login"),
                             json={"username": fan["user"]["username"], "password": "correct horse 1"}) as r:
            assert r.status == 200
        ws, hello = await connect(node, room["slug"], session=http)
        assert hello["user"]["username"] == fan["user"]["username"]
        await post(ws, "via cookie")
        await ws.close()
        ws, hello = await connect(node, room["slug"], session=http, origin="https://evil.example")
        assert hello["user"] is None
        await ws.close()


async def test_script_text_comes_back_unchanged(node: Any) -> None:
    room = await make_room(node)
    ws, _ = await connect(node, room["slug"], room)
    other, _ = await connect(node, room["slug"])
    text = "<script>alert(1)</script> & \"quotes\" 'x' <b>é</b> 🎉"
    assert (await post(ws, text))["text"] == text
    assert (await next_frame(other, "comment"))["text"] == text
    async with node.http.get(node.url(f"/api/v1/rooms/{room['slug']}/comments")) as r:
        raw = await r.text()
    assert json.loads(raw)["comments"][0]["text"] == text
    assert "&lt;" not in raw and "\\u003c" not in raw
    await ws.close()
    await other.close()


async def test_text_is_trimmed_and_control_characters_removed(node: Any) -> None:
    room = await make_room(node)
    ws, _ = await connect(node, room["slug"], room)
    await ws.send_json({"type": "comment", "text": "  line one\r\nline\x00 two\x07\t\u0085  "})
    assert (await next_frame(ws, "comment"))["text"] == "line one\nline two"
    for text, code in (("   \n\t ", "empty_comment"), ("x" * 501, "too_long")):
        await ws.send_json({"type": "comment", "text": text})
        assert await error_code(ws) == code
    await ws.send_str('{"type":"comment","text":"lone \\ud800 surrogate"}')
    assert (await next_frame(ws, "comment"))["text"] == "lone  surrogate"
    await ws.close()


async def test_malformed_and_oversize_frames_get_error_frames(node: Any) -> None:
    room = await make_room(node)
    ws, _ = await connect(node, room["slug"], room)
    cases = [
        ("not json", "invalid_json"),
        ("[1, 2]", "invalid_json"),
        ("[" * 2000 + "]" * 2000, "invalid_json"),
        ('{"text": "no type"}', "invalid_frame"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "comment", "text": 5}', "invalid_frame"),
        ('{"type": "like", "count": "3"}', "invalid_frame"),
        ('{"type": "like", "count": 51}', "invalid_frame"),
        ('{"type": "like", "count": true}', "invalid_frame"),
        ('{"type": "gift", "gift": "rose", "quantity": 101}', "invalid_frame"),
        ('{"type": "gift", "gift": "unicorn"}', "unknown_gift"),
        (json.dumps({"type": "comment", "text": "x" * 5000}), "too_large"),
    ]
    for raw, code in cases:
        await ws.send_str(raw)
        frame = await next_frame(ws, "error")
        assert frame["code"] == code, (raw[:40], frame)
        assert frame["message"]
    await ws.send_bytes(b"\x00\x01")
    assert await error_code(ws) == "invalid_frame"
    await ws.send_json({"type": "ping"})
    assert (await next_frame(ws))["type"] == "pong"  # still open
    # Far beyond the limit, aiohttp itself ends the connection (1009 message too big).
    await ws.send_str("x" * (node.settings.chat.max_frame_bytes * 8))
    msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED) and ws.close_code == 1009


async def test_repeated_refusals_close_with_1008(node_factory: Any) -> None:
    node = await node_factory(chat={"max_errors": 5})
    room = await make_room(node)
    ws, _ = await connect(node, room["slug"])
    for _ in range(7):
        await ws.send_str("garbage")
    codes = []
    while True:
        msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
        if msg.type != aiohttp.WSMsgType.TEXT:
            break
        if msg.json()["type"] == "error":
            codes.append(msg.json()["code"])
    assert codes == ["invalid_json"] * 6 + ["too_many_errors"]
    assert ws.close_code == 1008


async def test_websocket_endpoint_errors(node: Any) -> None:
    async with node.http.get(node.url("/api/v1/rooms/nope-nope/chat")) as r:
        assert r.status == 404 and (await r.json())["error"]["code"] == "room_not_found"
    room = await make_room(node)
    async with node.http.get(chat_url(node, room["slug"])) as r:
        assert r.status == 400 and (await r.json())["error"]["code"] == "websocket_required"


async def test_stream_frames_follow_ingest_events(node: Any) -> None:
    room = await make_room(node)
    ws, _ = await connect(node, room["slug"])
    node.node.app[EVENTS].emit(StreamStarted(room["slug"]))
    assert (await next_frame(ws, "stream"))["live"] is True
    node.node.app[EVENTS].emit(StreamStopped(room["slug"]))
    assert (await next_frame(ws, "stream"))["live"] is False
    await ws.close()


async def test_room_deleted_closes_its_sockets(node: Any) -> None:
    room = await make_room(node)
    ws, _ = await connect(node, room["slug"])
    async with node.http.delete(node.url(f"/api/v1/rooms/{room['slug']}"), headers=room["headers"]) as r:
        assert r.status == 204
    assert await error_code(ws) == "room_deleted"
    msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_shutdown_closes_sockets_with_1001(node: Any) -> None:
    room = await make_room(node)
    async with aiohttp.ClientSession() as http:
        ws, _ = await connect(node, room["slug"], session=http)

        async def until_closed() -> aiohttp.WSMessage:
            while True:
                msg = await ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    return msg

        reader = asyncio.ensure_future(until_closed())
        await asyncio.wait_for(node.stop(), TIMEOUT)
        msg = await asyncio.wait_for(reader, TIMEOUT)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1001
