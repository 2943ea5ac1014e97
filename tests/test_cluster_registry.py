"""Edge registration and selection: the selection policy and registry without sockets,
the load meter on an in-process app, then origin and edges as separate processes on
loopback (heartbeats, ``/play``, ``/api/v1/cluster``, an edge killed with SIGKILL)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from helpers import make_room, wait_for
from livecast.api.cluster import Candidate, Registry, choose_node, parse_heartbeat, rendezvous_score
from livecast.cluster import CLUSTER_HEADER
from livecast.cluster.load import LOAD, LoadMeter
from livecast.cluster.load import setup as setup_load
from livecast.core.errors import Unavailable, ValidationError
from livecast.web.routes import CONTENT_SECURITY_POLICY, content_security_policy
from procs import SECRET

NODE_NS = [f"edge-{i}" for i in range(4)]
SLUGS = [f"room-{i}" for i in range(200)]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the policy ------------------------------------------------------------------------


def test_no_candidates_means_none() -> None:
    assert choose_node("room", []) is None


def test_least_loaded_wins_when_loads_differ() -> None:
    nodes = [Candidate("a", 100), Candidate("b", 3), Candidate("c", 40)]
    assert {choose_node(slug, nodes).id for slug in SLUGS} == {"b"}  # type: ignore[union-attr]


def test_close_loads_spread_rooms_and_each_room_sticks() -> None:
    first = {slug: choose_node(slug, [Candidate(n, 10) for n in NODE_NS]) for slug in SLUGS}
    assert {c.id for c in first.values() if c} == set(NODE_NS)  # every edge gets rooms
    for jitter in ([10, 11, 12, 9], [12, 9, 10, 11], [14, 10, 11, 12]):  # within the margin
        nodes = [Candidate(n, load) for n, load in zip(NODE_NS, jitter, strict=False)]
        for slug in SLUGS:
            assert choose_node(slug, nodes) == Candidate(first[slug].id, nodes[NODE_NS.index(first[slug].id)].load)  # type: ignore[union-attr]


def test_closeness_is_relative_for_big_loads() -> None:
    # 1000 vs 1200 is within 25 %; 1000 vs 1300 is not.
    slug = next(s for s in SLUGS if rendezvous_score(s, "b") > rendezvous_score(s, "a"))
    assert choose_node(slug, [Candidate("a", 1000), Candidate("b", 1200)]).id == "b"  # type: ignore[union-attr]
    assert choose_node(slug, [Candidate("a", 1000), Candidate("b", 1300)]).id == "a"  # type: ignore[union-attr]


def test_a_room_moves_only_when_its_edge_leaves() -> None:
    nodes = [Candidate(n, 0) for n in NODE_NS]
    before = {s: choose_node(s, nodes).id for s in SLUGS}  # type: ignore[union-attr]
    after = {s: choose_node(s, nodes[1:]).id for s in SLUGS}  # type: ignore[union-attr]
    for slug in SLUGS:
        if before[slug] != NODE_NS[0]:
            assert after[slug] == before[slug]


# -- the registry ------------------------------------------------------------------------


def test_registry_drops_edges_after_the_timeout_then_forgets_them() -> None:
    clock = Clock()
    registry = Registry(2.0, clock=clock)
    registry.heartbeat("http://a.test:1", 0, 0.0, True)
    assert registry.choose("room").url == "http://a.test:1"  # type: ignore[union-attr]
    clock.now += 2.5
    assert registry.choose("room") is None
    listed = registry.nodes()[0].to_json(clock.now, registry.timeout)
    assert listed["state"] == "stale" and listed["last_seen_seconds"] == 2.5
    registry.heartbeat("http://a.test:1", 0, 0.0, True)
    assert registry.choose("room") is not None
    clock.now += registry.forget_after + 1
    assert registry.nodes() == []


def test_registry_skips_unhealthy_edges_and_is_bounded() -> None:
    clock = Clock()
    registry = Registry(2.0, max_nodes=3, clock=clock)
    registry.heartbeat("http://sick.test", 0, 0.0, False)
    assert registry.choose("room") is None
    registry.heartbeat("http://a.test", 0, 0.0, True)
    registry.heartbeat("http://b.test", 0, 0.0, True)
    with pytest.raises(Unavailable):
        registry.heartbeat("http://c.test", 0, 0.0, True)
    registry.heartbeat("http://a.test", 5, 1.0, True)  # known nodes still beat
    clock.now += registry.forget_after + 1
    registry.heartbeat("http://c.test", 0, 0.0, True)  # the forgotten made room
    assert [n.url for n in registry.nodes()] == ["http://c.test"]


@pytest.mark.parametrize("body, field", [
    ({"viewers": 0, "bytes_per_second": 0, "healthy": True}, "url"),
    ({"url": "ftp://a.test", "viewers": 0, "bytes_per_second": 0, "healthy": True}, "url"),
    ({"url": "http://u:p@a.test", "viewers": 0, "bytes_per_second": 0, "healthy": True}, "url"),
    ({"url": "http://a.test/?x=1", "viewers": 0, "bytes_per_second": 0, "healthy": True}, "url"),
    ({"url": "http://a.test/" + "x" * 600, "viewers": 0, "bytes_per_second": 0, "healthy": True}, "url"),
    ({"url": "http://", "viewers": 0, "bytes_per_second": 0, "healthy": True}, "url"),
    ({"url": 5, "viewers": 0, "bytes_per_second": 0, "healthy": True}, "url"),
    ({"url": "http://a.test", "viewers": -1, "bytes_per_second": 0, "healthy": True}, "viewers"),
    ({"url": "http://a.test", "viewers": True, "bytes_per_second": 0, "healthy": True}, "viewers"),
    ({"url": "http://a.test", "viewers": 1.5, "bytes_per_second": 0, "healthy": True}, "viewers"),
    ({"url": "http://a.test", "viewers": 0, "bytes_per_second": float("nan"), "healthy": True}, "bytes_per_second"),
    ({"url": "http://a.test", "viewers": 0, "bytes_per_second": "9", "healthy": True}, "bytes_per_second"),
    ({"url": "http://a.test", "viewers": 0, "bytes_per_second": 0, "healthy": "yes"}, "healthy"),
    ({"url": "http://a.test", "viewers": 0, "bytes_per_second": 0}, "healthy"),
])
def test_heartbeat_validation(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_heartbeat(body)
    assert err.value.field == field


def test_heartbeat_parsing_normalizes_the_url() -> None:
    assert parse_heartbeat({"url": "https://edge.test:8443/", "viewers": 3, "bytes_per_second": 2.5,
                            "healthy": True, "future": "ignored"}) == ("https://edge.test:8443", 3, 2.5, True)


def test_csp_allows_the_cluster_media_origins() -> None:
    assert content_security_policy([]) == CONTENT_SECURITY_POLICY
    csp = content_security_policy(["http://edge.test:8081"])
    assert "media-src 'self' blob: http://edge.test:8081;" in csp
    assert "connect-src 'self' ws: wss: http://edge.test:8081;" in csp
    assert "script-src 'self';" in csp


# -- the load meter ----------------------------------------------------------------------


def test_load_meter_counts_distinct_recent_clients_and_bytes() -> None:
    clock = Clock()
    meter = LoadMeter(viewer_window=10, rate_window=5, max_clients=3, clock=clock)
    for ip, ua in [("1.1.1.1", "a"), ("1.1.1.1", "a"), ("1.1.1.1", "b"), ("2.2.2.2", "a")]:
        meter.playlist_fetched(ip, ua)
    assert meter.viewers() == 3
    meter.playlist_fetched("3.3.3.3", "a")  # over max_clients: the oldest is forgotten
    assert meter.viewers() == 3
    clock.now += 6
    meter.playlist_fetched("1.1.1.1", "a")
    clock.now += 5
    assert meter.viewers() == 1
    for _ in range(5):
        meter.bytes_sent(1000)
        clock.now += 1
    assert meter.bytes_per_second() == 1000
    clock.now += 10
    assert meter.bytes_per_second() == 0


async def test_load_middleware_measures_hls_responses() -> None:
    app = web.Application()
    setup_load(app)

    async def playlist(request: web.Request) -> web.Response:
        if request.match_info["slug"] == "gone":
            return web.Response(status=404, body=b"{}")
        return web.Response(body=b"#EXTM3U\n" + b"x" * 992)

    async def page(request: web.Request) -> web.Response:
        return web.Response(body=b"y" * 5000)

    app.router.add_get("/hls/{slug}/index.m3u8", playlist)
    app.router.add_get("/other", page)
    async with TestClient(TestServer(app)) as client:
        for ua in ("one", "two", "two"):
            async with client.get("/hls/room/index.m3u8", headers={"User-Agent": ua}) as r:
                assert r.status == 200 and len(await r.read()) == 1000
        async with client.get("/hls/gone/index.m3u8", headers={"User-Agent": "three"}) as r:
            assert r.status == 404
        async with client.get("/other", headers={"User-Agent": "four"}) as r:
            assert r.status == 200
        meter = app[LOAD]
        assert meter.viewers() == 2
        assert meter.bytes_total == 3 * 1000 + 2


# -- separate processes on loopback --------------------------------------------------------


async def get_json(node: Any, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with node.http.get(node.url(path), headers=headers or {}) as r:
        return r.status, await r.json()


async def beat(node: Any, body: Any, secret: str | None = SECRET, **kwargs: Any) -> tuple[int, Any]:
    headers = {CLUSTER_HEADER: secret} if secret is not None else {}
    async with node.http.post(node.url("/api/v1/cluster/heartbeat"), json=body, headers=headers, **kwargs) as r:
        return r.status, await r.json()


async def play(node: Any, slug: str) -> dict[str, Any]:
    status, body = await get_json(node, f"/api/v1/rooms/{slug}/play")
    assert status == 200, body
    return dict(body)


async def wait_play(node: Any, slug: str, role: str, url: str | None = None, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = await play(node, slug)
        if body["node"]["role"] == role and (url is None or body["node"]["url"] == url):
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"/play did not answer {role} {url or ''} within {timeout}s; last: {body}")


async def make_admin(origin: Any) -> dict[str, str]:
    data_dir = origin.sections["server"]["data_dir"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECAST_")}
    env["LIVECAST_AUTH_BCRYPT_ROUNDS"] = "4"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "livecast", "user", "create", "boss", "--role", "admin", "--password-stdin",
        "--data-dir", str(data_dir), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env=env, cwd=str(Path(data_dir).parent))
    out, _ = await asyncio.wait_for(proc.communicate(b"boss password 1\n"), 30)
    assert proc.returncode == 0, out.decode()
    async with origin.http.post(origin.url("/api/v1/auth/login"),
                                json={"username": "boss", "password": "boss password 1"}) as r:
        assert r.status == 200, await r.text()
        token = (await r.json())["token"]
    origin.http.cookie_jar.clear()
    return {"Authorization": f"Bearer {token}"}


def fake(url: str, viewers: int) -> dict[str, Any]:
    return {"url": url, "viewers": viewers, "bytes_per_second": 0, "healthy": True}


async def test_play_is_the_origin_without_edges(cluster: Any) -> None:
    origin = await cluster.node("origin")
    room = await make_room(origin)
    body = await play(origin, room["slug"])
    assert body["node"] == {"id": "origin", "url": origin.base, "role": "origin"}
    assert body["hls_url"] == f"{origin.base}/hls/{room['slug']}/index.m3u8"
    status, body = await get_json(origin, "/api/v1/rooms/no-such-room/play")
    assert status == 404 and body["error"]["code"] == "room_not_found"


async def test_killed_edge_drops_out_after_the_heartbeat_timeout(cluster: Any) -> None:
    origin = await cluster.node("origin")
    edge = await cluster.node("edgeA", role="edge", origin=origin)
    room = await make_room(origin)
    body = await wait_play(origin, room["slug"], "edge", edge.base)
    assert body["hls_url"] == f"{edge.base}/hls/{room['slug']}/index.m3u8"
    assert body["node"]["id"].startswith("edge-")
    # The room page on the origin may now load media from the edge.
    async with origin.http.get(origin.url(f"/r/{room['slug']}")) as r:
        assert r.status == 200
        assert f"media-src 'self' blob: {edge.base}" in r.headers["Content-Security-Policy"]
    await edge.kill()
    await wait_play(origin, room["slug"], "origin")
    admin = await make_admin(origin)
    status, listed = await get_json(origin, "/api/v1/cluster", admin)
    assert status == 200
    edges = [n for n in listed["nodes"] if n["role"] == "edge"]
    assert [(n["url"], n["state"]) for n in edges] == [(edge.base, "stale")]


async def test_gracefully_stopped_edge_leaves_and_a_restarted_one_returns(cluster: Any) -> None:
    origin = await cluster.node("origin", cluster={"heartbeat_timeout": 60.0})
    edge = await cluster.node("edgeA", role="edge", origin=origin)
    room = await make_room(origin)
    await wait_play(origin, room["slug"], "edge", edge.base)
    await edge.stop()  # says healthy=false on its way out: no waiting for the 60 s timeout
    await wait_play(origin, room["slug"], "origin")
    await edge.start()
    await wait_play(origin, room["slug"], "edge", edge.base)


async def test_least_loaded_edge_is_chosen_and_a_room_sticks(cluster: Any) -> None:
    origin = await cluster.node("origin", cluster={"heartbeat_timeout": 60.0})
    edge = await cluster.node("edgeA", role="edge", origin=origin)  # a real edge, 0 viewers
    rooms = [(await make_room(origin, f"Room {i}"))["slug"] for i in range(6)]
    await wait_play(origin, rooms[0], "edge", edge.base)
    # A busy edge: never chosen while the real one is nearly idle.
    assert (await beat(origin, fake("http://127.0.0.1:9/busy", 500)))[0] == 200
    for slug in rooms:
        assert (await play(origin, slug))["node"]["url"] == edge.base
    # Three edges with close loads (the real one stays at 0): rooms spread, each sticks.
    assert (await beat(origin, fake("http://127.0.0.1:9/busy", 0)))[0] == 200
    assert (await beat(origin, fake("http://127.0.0.1:9/other", 1)))[0] == 200
    chosen = {slug: (await play(origin, slug))["node"]["url"] for slug in rooms}
    for viewers in ([1, 0], [0, 2], [3, 1], [2, 2]):  # loads stay close: no room moves
        assert (await beat(origin, fake("http://127.0.0.1:9/busy", viewers[0])))[0] == 200
        assert (await beat(origin, fake("http://127.0.0.1:9/other", viewers[1])))[0] == 200
        for slug in rooms:
            assert (await play(origin, slug))["node"]["url"] == chosen[slug]
    # One fake edge overloaded: its rooms move, the others stay.
    assert (await beat(origin, fake("http://127.0.0.1:9/busy", 900)))[0] == 200
    for slug in rooms:
        now = (await play(origin, slug))["node"]["url"]
        assert now != "http://127.0.0.1:9/busy"
        if chosen[slug] != "http://127.0.0.1:9/busy":
            assert now == chosen[slug]


async def test_cluster_listing_is_for_admins(cluster: Any) -> None:
    origin = await cluster.node("origin")
    edge = await cluster.node("edgeA", role="edge", origin=origin)
    room = await make_room(origin)
    await wait_play(origin, room["slug"], "edge", edge.base)
    status, body = await get_json(origin, "/api/v1/cluster")
    assert status == 401 and body["error"]["code"]
    status, body = await get_json(origin, "/api/v1/cluster", room["headers"])  # a streamer
    assert status == 403
    status, body = await get_json(origin, "/api/v1/cluster", await make_admin(origin))
    assert status == 200
    nodes = {n["role"]: n for n in body["nodes"]}
    assert nodes["origin"]["url"] == origin.base and nodes["origin"]["state"] == "live"
    listed = nodes["edge"]
    assert listed["url"] == edge.base and listed["state"] == "live" and listed["healthy"] is True
    assert listed["viewers"] == 0 and listed["bytes_per_second"] >= 0
    assert 0 <= listed["last_seen_seconds"] < 60


async def test_heartbeat_needs_the_secret_and_a_valid_body(cluster: Any) -> None:
    origin = await cluster.node("origin")
    room = await make_room(origin)
    good = fake("http://127.0.0.1:9/edge", 0)
    for secret in (None, "wrong secret", ""):
        status, body = await beat(origin, good, secret)
        assert status == 403 and body["error"]["code"] == "cluster_only"
    assert (await play(origin, room["slug"]))["node"]["role"] == "origin"
    headers = {CLUSTER_HEADER: SECRET, "Content-Type": "application/json"}
    for raw in (b"{", b"[]", b"\"x\"", b"{\"url\": \"http://a.test\"}", b"{\"url\": \"javascript:1\", "
                b"\"viewers\": 0, \"bytes_per_second\": 0, \"healthy\": true}"):
        async with origin.http.post(origin.url("/api/v1/cluster/heartbeat"), data=raw, headers=headers) as r:
            assert r.status == 400, raw
            assert (await r.json())["error"]["code"] in ("malformed_json", "invalid")
    async with origin.http.post(origin.url("/api/v1/cluster/heartbeat"), data=b"{" + b" " * 200_000 + b"}",
                                headers=headers) as r:
        assert r.status == 413
    status, body = await beat(origin, good)
    assert status == 200 and body["node"]["url"] == "http://127.0.0.1:9/edge"
    assert body["media_origins"] == ["http://127.0.0.1:9"]


async def test_edge_keeps_beating_while_the_origin_is_down(cluster: Any) -> None:
    origin = await cluster.node("origin")
    edge = await cluster.node("edgeA", role="edge", origin=origin)
    room = await make_room(origin)
    await wait_play(origin, room["slug"], "edge", edge.base)
    await origin.stop()
    deadline = time.monotonic() + 20
    while "edge heartbeat to" not in edge.log_text() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert "edge heartbeat to" in edge.log_text()
    # a few more failed heartbeats: a stand-in on the origin's port counts them and hangs up
    attempts: list[None] = []

    def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        attempts.append(None)
        writer.close()

    stand_in = await asyncio.start_server(hang_up, "127.0.0.1", origin.http_port)
    async with stand_in:
        await wait_for(lambda: len(attempts) >= 3, timeout=20, what="three more failed heartbeats")
    await stand_in.wait_closed()
    await origin.start()  # same port and data: the registry starts empty
    await wait_play(origin, room["slug"], "edge", edge.base)
    assert edge.proc.returncode is None
    assert edge.log_text().count("edge heartbeat to") <= 2  # logged once down, once back


async def test_edges_report_real_viewers_and_the_idle_edge_is_chosen(cluster: Any) -> None:
    from helpers import rtmp_url, wait_playlist
    from publisher import publish_async

    origin = await cluster.node("origin", hls={"segment_duration": 1.0, "window": 10})
    busy = await cluster.node("edgeA", role="edge", origin=origin)
    idle = await cluster.node("edgeB", role="edge", origin=origin)
    room = await make_room(origin)
    admin = await make_admin(origin)
    await publish_async(rtmp_url(origin, room["stream_key"]), seconds=2.0, fps=30, gop=30)
    await wait_playlist(origin, room["slug"], lambda text: "#EXT-X-ENDLIST" in text)
    viewers = 12  # over the closeness margin
    deadline = time.monotonic() + 20
    listed: dict[str, Any] = {}
    while time.monotonic() < deadline:
        for i in range(viewers):  # distinct players (User-Agent) polling their playlist
            async with busy.http.get(busy.url(f"/hls/{room['slug']}/index.m3u8"),
                                     headers={"User-Agent": f"player {i}"}) as r:
                assert r.status == 200
                await r.read()
        status, body = await get_json(origin, "/api/v1/cluster", admin)
        assert status == 200
        listed = {n["url"]: n for n in body["nodes"]}
        if (busy.base in listed and listed[busy.base]["viewers"] == viewers and idle.base in listed
                and listed[busy.base]["bytes_per_second"] > 0):  # bytes count from the next whole second
            break
        await asyncio.sleep(0.2)
    assert listed[busy.base]["viewers"] == viewers, listed
    assert listed[busy.base]["bytes_per_second"] > 0
    assert listed[idle.base]["viewers"] == 0
    assert (await play(origin, room["slug"]))["node"]["url"] == idle.base
