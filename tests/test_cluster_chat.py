"""Multi-node chat with separate node processes on loopback: edges hosting sockets on a
real redis-server bus, edges without a bus proxying sockets to the origin, forwarded
refusals, identity forging, and Redis going away and coming back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from helpers import make_room, register_and_login, room_json
from procs import SECRET
from test_chat_support import TIMEOUT, chat_url, connect, next_frame

FAST = {"rate_count": 1000, "rate_seconds": 1.0}


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 20.0, what: str = "condition") -> None:
    """Poll ``check`` until it holds (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} not met within {timeout}s")


def assert_clean(*nodes: Any) -> None:
    """No node logged a traceback (a bad client or a lost Redis is never a crash)."""
    for node in nodes:
        assert "Traceback" not in node.log_text(), node.log_text()[-4000:]


async def bus_cluster(cluster: Any, edges: int = 2, **origin_chat: Any) -> tuple[Any, Any, list[Any]]:
    r = await cluster.redis()
    o = await cluster.node("origin", chat={"bus": r.url, **FAST, **origin_chat})
    nodes = [await cluster.node(f"edge{i}", role="edge", origin=o, chat={"bus": r.url}) for i in range(edges)]
    return r, o, nodes


async def test_comment_on_edge_reaches_other_edge_and_origin_and_survives_restart(cluster: Any) -> None:
    _, o, (a, b) = await bus_cluster(cluster)
    room = await make_room(o)
    slug = room["slug"]
    alice = await register_and_login(o)
    wa, hello_a = await connect(a, slug, alice)
    wb, hello_b = await connect(b, slug)
    bob = await register_and_login(o)
    wo, _ = await connect(o, slug, bob)
    assert hello_a["user"]["username"] == alice["user"]["username"] and hello_b["user"] is None
    assert hello_a["room"] == slug and hello_a["settings"]["chat_enabled"] is True

    await wa.send_json({"type": "comment", "text": "hello from edge A"})
    seen_b = await next_frame(wb, "comment")
    seen_o = await next_frame(wo, "comment")
    seen_a = await next_frame(wa, "comment")  # the sender's acknowledgement, through the origin
    assert seen_a == seen_b == seen_o and seen_b["text"] == "hello from edge A"
    assert seen_b["user"]["username"] == alice["user"]["username"] and seen_b["id"] > 0
    await wo.send_json({"type": "gift", "gift": "rose", "quantity": 2})  # origin -> edges
    gift = await next_frame(wa, "gift")
    assert gift["user"]["username"] == bob["user"]["username"] and gift["value"] == 10
    assert await next_frame(wb, "gift") == gift

    # Viewer counts are cluster-wide: the origin's room API and every node's frames.
    async def origin_counts_three() -> bool:
        return (await room_json(o, slug))["viewers"] == 3
    await until(origin_counts_three, what="origin room API counting the edges' viewers")
    extra, hello = await connect(a, slug)  # a hello counts the viewers of every node
    assert hello["viewers"] == 4
    await next_frame(wb, "viewers", lambda f: f["count"] == 4)
    await extra.close()
    # Likes from an edge are stored by the origin; the total reaches every node.
    await wa.send_json({"type": "like", "count": 7})
    await next_frame(wb, "likes", lambda f: f["total"] == 7)
    await next_frame(wo, "likes", lambda f: f["total"] == 7)

    await wb.close()
    await next_frame(wo, "viewers", lambda f: f["count"] == 2)  # edge B's viewer left, and the extra one

    # The origin restarts; the comment is in its history, on the origin and through an edge.
    await wo.close()
    await o.restart()
    _, hello = await connect(o, slug)
    assert [c["text"] for c in hello["history"]] == ["hello from edge A"]
    _, hello = await connect(b, slug)
    assert [c["text"] for c in hello["history"]] == ["hello from edge A"] and hello["likes"] == 7
    # Chat goes on after the restart: edge A's socket posts again and edge B's client sees it.
    wb2, _ = await connect(b, slug)
    await wa.send_json({"type": "comment", "text": "after the restart"})
    await next_frame(wb2, "comment", lambda f: f["text"] == "after the restart")
    assert_clean(o, a, b)


async def test_edge_without_bus_proxies_chat_socket_to_origin(cluster: Any) -> None:
    o = await cluster.node("origin", chat=FAST)
    e = await cluster.node("edge", role="edge", origin=o)
    room = await make_room(o)
    slug = room["slug"]
    alice, bob = await register_and_login(o), await register_and_login(o)
    we, hello_e = await connect(e, slug, alice)
    wo, _ = await connect(o, slug, bob)
    assert hello_e["user"]["username"] == alice["user"]["username"] and hello_e["viewers"] == 1

    await we.send_json({"type": "comment", "text": "edge to origin"})
    assert (await next_frame(wo, "comment"))["text"] == "edge to origin"
    await wo.send_json({"type": "comment", "text": "origin to edge"})
    assert (await next_frame(we, "comment", lambda f: f["text"] == "origin to edge"))["user"]["username"] == \
        bob["user"]["username"]
    await we.send_json({"type": "ping"})
    await next_frame(we, "pong")
    async with o.http.get(o.url(f"/api/v1/rooms/{slug}")) as r:
        assert (await r.json())["room"]["viewers"] == 2

    # Refusals come from the origin itself.
    anon, _ = await connect(e, slug)
    await anon.send_json({"type": "comment", "text": "x"})
    assert (await next_frame(anon, "error"))["code"] == "login_required"
    # The login cookie counts only from the edge's own pages.
    cookie = {"Cookie": f"livecast_session={alice['token']}"}
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(chat_url(e, slug), headers={**cookie, "Origin": "http://evil.example"})
        assert (await asyncio.wait_for(ws.receive_json(), TIMEOUT))["user"] is None
        await ws.close()
        ws = await http.ws_connect(chat_url(e, slug), headers={**cookie, "Origin": e.base})
        assert (await asyncio.wait_for(ws.receive_json(), TIMEOUT))["user"]["username"] == alice["user"]["username"]
        await ws.close()
    # No such room, or not a WebSocket: the origin's answers.
    async with e.http.get(chat_url(e, "no-such-room")) as r:
        assert r.status == 404 and (await r.json())["error"]["code"] == "room_not_found"
    async with e.http.get(chat_url(e, slug)) as r:
        assert r.status == 400 and (await r.json())["error"]["code"] == "websocket_required"
    assert_clean(o, e)


async def test_edge_with_bus_proxies_when_origin_has_none(cluster: Any) -> None:
    r = await cluster.redis()
    o = await cluster.node("origin", chat=FAST)
    e = await cluster.node("edge", role="edge", origin=o, chat={"bus": r.url})
    room = await make_room(o)
    alice = await register_and_login(o)
    we, _ = await connect(e, room["slug"], alice)
    wo, _ = await connect(o, room["slug"])
    await we.send_json({"type": "comment", "text": "still works"})
    assert (await next_frame(wo, "comment"))["text"] == "still works"
    assert "origin has no shared bus" in e.log_text()
    assert_clean(o, e)


def _same_error(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a["type"] == b["type"] == "error"
    assert {k: v for k, v in a.items() if k != "retry_after"} == {k: v for k, v in b.items() if k != "retry_after"}
    assert set(a) == set(b)


async def test_forwarded_posts_get_the_origins_error_frames(cluster: Any) -> None:
    _, o, (a,) = await bus_cluster(cluster, edges=1, rate_count=2, rate_seconds=600)
    room = await make_room(o)
    slug = room["slug"]
    mallory = await register_and_login(o)
    async with o.http.post(o.url(f"/api/v1/rooms/{slug}/bans/{mallory['user']['username']}"),
                           headers=room["headers"]) as r:
        assert r.status == 201, await r.text()
    on_edge, _ = await connect(a, slug, mallory)
    on_origin, _ = await connect(o, slug, mallory)
    for frame in ({"type": "comment", "text": "let me in"}, {"type": "like"}, {"type": "gift", "gift": "rose"}):
        await on_edge.send_json(frame)
        await on_origin.send_json(frame)
        edge_error, origin_error = await next_frame(on_edge, "error"), await next_frame(on_origin, "error")
        assert edge_error["code"] == "banned"
        _same_error(edge_error, origin_error)

    # Rate limited: the origin's limit covers posts from every node.
    fan = await register_and_login(o)
    fan_edge, _ = await connect(a, slug, fan)
    fan_origin, _ = await connect(o, slug, fan)
    await fan_edge.send_json({"type": "comment", "text": "one"})
    await next_frame(fan_edge, "comment", lambda f: f["text"] == "one")
    await fan_origin.send_json({"type": "comment", "text": "two"})
    await next_frame(fan_edge, "comment", lambda f: f["text"] == "two")
    await fan_edge.send_json({"type": "comment", "text": "three"})
    await fan_origin.send_json({"type": "comment", "text": "three"})
    edge_error, origin_error = await next_frame(fan_edge, "error"), await next_frame(fan_origin, "error")
    assert edge_error["code"] == "rate_limited" and edge_error["retry_after"] >= 1
    _same_error(edge_error, origin_error)

    # Unknown gift, anonymous posting and malformed frames match too.
    await fan_edge.send_json({"type": "gift", "gift": "nope"})
    await fan_origin.send_json({"type": "gift", "gift": "nope"})
    _same_error(await next_frame(fan_edge, "error"), await next_frame(fan_origin, "error"))
    anon_edge, _ = await connect(a, slug)
    anon_origin, _ = await connect(o, slug)
    for raw in ('{"type":"comment","text":"hi"}', "not json", '{"type":"warp"}'):
        await anon_edge.send_str(raw)
        await anon_origin.send_str(raw)
        _same_error(await next_frame(anon_edge, "error"), await next_frame(anon_origin, "error"))
    # An auth frame on the edge logs in through the origin.
    await anon_edge.send_json({"type": "auth", "token": "x" * 20})
    assert (await next_frame(anon_edge, "error"))["code"] == "invalid_token"
    await anon_edge.send_json({"type": "auth", "token": fan["token"]})
    assert (await next_frame(anon_edge, "auth_ok"))["user"]["username"] == fan["user"]["username"]
    assert_clean(o, a)


async def test_clients_cannot_forge_identity(cluster: Any) -> None:
    _, o, (a,) = await bus_cluster(cluster, edges=1)
    room = await make_room(o)
    slug = room["slug"]
    alice = await register_and_login(o)
    body = {"token": alice["token"], "frame": '{"type":"comment","text":"forged"}'}
    path = f"/internal/chat/rooms/{slug}/frame"
    for headers in ({}, {"X-Livecast-Cluster": "wrong"}, {"X-Livecast-Cluster": ""}):
        async with o.http.post(o.url(path), json=body, headers=headers) as r:
            assert r.status == 403 and (await r.json())["error"]["code"] == "cluster_only"
    async with o.http.post(o.url("/internal/chat/auth"), json={"token": alice["token"]}) as r:
        assert r.status == 403
    # Edges do not expose (or proxy) the internal routes.
    async with a.http.post(a.url(path), json=body, headers={"X-Livecast-Cluster": SECRET}) as r:
        assert r.status in (404, 405)
    # Node headers sent by a client to an edge give it no identity.
    forged = {"X-Livecast-Cluster": "wrong", "X-Livecast-Node": "origin", "X-Livecast-Client-Ip": "10.0.0.1",
              "X-Livecast-User": alice["user"]["username"]}
    ws, hello = await connect(a, slug, {"headers": forged})
    assert hello["user"] is None
    await ws.send_json({"type": "comment", "text": "forged"})
    assert (await next_frame(ws, "error"))["code"] == "login_required"
    # The login cookie counts only from the edge's own pages (as on the origin).
    cookie = {"Cookie": f"livecast_session={alice['token']}"}
    async with aiohttp.ClientSession() as http:
        other = await http.ws_connect(chat_url(a, slug), headers={**cookie, "Origin": "http://evil.example"})
        assert (await asyncio.wait_for(other.receive_json(), TIMEOUT))["user"] is None
        await other.close()
        other = await http.ws_connect(chat_url(a, slug), headers={**cookie, "Origin": a.base})
        assert (await asyncio.wait_for(other.receive_json(), TIMEOUT))["user"]["username"] == alice["user"]["username"]
        await other.close()
    # With the secret, the origin still needs the user's own valid token.
    async with o.http.post(o.url(path), json={**body, "token": "not-a-token"},
                           headers={"X-Livecast-Cluster": SECRET}) as r:
        assert r.status == 401 and (await r.json())["error"]["code"] == "login_required"
    await ws.close()
    assert_clean(o, a)


async def test_nodes_reconnect_when_redis_comes_back(cluster: Any) -> None:
    r, o, (a, b) = await bus_cluster(cluster)
    room = await make_room(o)
    slug = room["slug"]
    alice = await register_and_login(o)
    wa, _ = await connect(a, slug, alice)
    wb, _ = await connect(b, slug)
    await wa.send_json({"type": "comment", "text": "before"})
    await next_frame(wb, "comment", lambda f: f["text"] == "before")

    await r.stop()
    # While Redis is away the nodes keep running; the origin stores what is posted.
    await wa.send_json({"type": "comment", "text": "during"})
    await r.start()

    attempt = 0

    async def chat_resumed() -> bool:
        nonlocal attempt
        attempt += 1
        text = f"after {attempt}"
        await wa.send_json({"type": "comment", "text": text})
        try:
            await next_frame(wb, "comment", lambda f: f["text"] == text, timeout=1.0)
            return True
        except asyncio.TimeoutError:
            return False
    await until(chat_resumed, timeout=40.0, what="chat across edges after Redis came back")

    async def counts_back() -> bool:
        return (await room_json(o, slug))["viewers"] == 2
    await until(counts_back, what="viewer counts rebuilt after Redis came back")
    for node in (o, a, b):
        assert node.proc.returncode is None
    assert "reconnecting" in a.log_text() and "restored" in a.log_text()
    async with o.http.get(o.url(f"/api/v1/rooms/{slug}/comments")) as resp:
        texts = [c["text"] for c in (await resp.json())["comments"]]
    assert "during" in texts and "before" in texts
    assert_clean(o, a, b)


async def test_killed_edge_viewers_leave_the_cluster_count(cluster: Any) -> None:
    _, o, (a,) = await bus_cluster(cluster, edges=1)
    room = await make_room(o)
    slug = room["slug"]
    wa, _ = await connect(a, slug)
    wo, _ = await connect(o, slug)

    async def count(n: int) -> bool:
        return (await room_json(o, slug))["viewers"] == n
    await until(lambda: count(2), what="two viewers")
    await a.kill()  # no goodbye: its count expires (cluster.heartbeat_timeout)
    await until(lambda: count(1), what="the dead edge's viewer dropped")
    await next_frame(wo, "viewers", lambda f: f["count"] == 1)
    assert_clean(o)


async def test_redis_bus_keeps_room_order_between_nodes(cluster: Any) -> None:
    from livecast.chat.bus.base import RoomMessage
    from livecast.chat.bus.redis import RedisBus

    r = await cluster.redis()
    one, two = RedisBus(r.url, heartbeat=0.2, ttl=1.0), RedisBus(r.url, heartbeat=0.2, ttl=1.0)
    await one.start()
    await two.start()
    try:
        got: dict[str, list[RoomMessage]] = {"a": [], "b": []}
        for room, seen in got.items():
            two.subscribe(room, seen.append)
            await two.ready(room)
        local: list[RoomMessage] = []
        one.subscribe("a", local.append)
        for i in range(1000):  # publish never waits: all queued at once
            one.publish("a" if i % 2 else "b", RoomMessage("comment", f'{{"n":{i}}}', i))
        assert len(local) == 500  # the publishing node's own subscribers get them at once

        async def all_arrived() -> bool:
            return len(got["a"]) + len(got["b"]) == 1000
        await until(all_arrived, what="1000 messages over Redis")
        assert [m.ref for m in got["a"]] == list(range(1, 1000, 2))
        assert [m.ref for m in got["b"]] == list(range(0, 1000, 2))
        assert got["a"][0] == RoomMessage("comment", '{"n":1}', 1) and local == got["a"]

        one.set_viewers("a", 3)
        two.set_viewers("a", 2)

        async def totals(n: int) -> bool:
            return one.viewers("a", 3) == n and two.viewers("a", 2) == n
        await until(lambda: totals(5), what="cluster total of 5")
        assert any(m.kind == "viewers" and m.text == '{"type":"viewers","count":5}' for m in got["a"])
        await one.close()  # a node that stops takes its viewers out at once
        await until(lambda: _holds(two.viewers("a", 2) == 2), what="total back to 2")
    finally:
        await one.close()
        await two.close()


async def _holds(value: bool) -> bool:
    return value
