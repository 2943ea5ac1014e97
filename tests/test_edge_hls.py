"""Origin/edge HLS: separate OS processes on loopback, a real RTMP publisher into the
origin, HLS read back through edges with PyAV's HLS demuxer. Upstream requests are
counted outside the edge, by a counting HTTP proxy between the edge and the origin."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import aiohttp
import m3u8
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from helpers import make_room, media_sequence, rtmp_url, segment_uris, wait_playlist
from procs import SECRET
from publisher import publish_async, read_hls_async, start_publisher

FPS = 30
HLS = {"segment_duration": 1.0, "window": 10}


def _ended(text: str) -> bool:
    return "#EXT-X-ENDLIST" in text


class CountingProxy:
    """An HTTP hop that forwards GETs to the origin and counts them per path."""

    def __init__(self, origin: Any) -> None:
        self.origin = origin
        self.counts: Counter[str] = Counter()
        self.queries: Counter[str] = Counter()  # path with query string
        self.headers_seen: list[dict[str, str]] = []
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.session: aiohttp.ClientSession | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _forward(self, request: web.Request) -> web.Response:
        self.counts[request.rel_url.path] += 1
        self.queries[request.rel_url.path_qs] += 1
        self.headers_seen.append(dict(request.headers))
        assert self.session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with self.session.request(request.method, self.origin.url(request.rel_url.path_qs),
                                        headers=headers, data=await request.read()) as r:
            body = await r.read()
            out = {k: v for k, v in r.headers.items()
                   if k.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server")}
            return web.Response(status=r.status, body=body, headers=out)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def counting_proxy() -> Any:
    proxies: list[CountingProxy] = []

    async def make(origin: Any) -> CountingProxy:
        proxy = CountingProxy(origin)
        await proxy.start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        await proxy.close()


async def test_play_through_two_edges_same_frames(cluster) -> None:
    origin = await cluster.node("origin", hls=HLS)
    edge_a = await cluster.node("edgeA", role="edge", origin=origin)
    edge_b = await cluster.node("edgeB", role="edge", origin=origin)
    room = await make_room(origin)
    sent = await publish_async(rtmp_url(origin, room["stream_key"]), seconds=4.0, fps=FPS, gop=FPS)
    await wait_playlist(origin, room["slug"], _ended)
    for edge in (edge_a, edge_b):
        assert await wait_playlist(edge, room["slug"], _ended)
        frames, duration, codecs = await read_hls_async(edge.url(f"/hls/{room['slug']}/index.m3u8"))
        assert "h264" in codecs and "aac" in codecs
        assert frames == sent.video_frames
        assert abs(duration - sent.video_frames / FPS) <= 1 / FPS + 1e-6


async def test_concurrent_misses_make_one_upstream_request(cluster, counting_proxy) -> None:
    origin = await cluster.node("origin", hls=HLS)
    proxy = await counting_proxy(origin)
    edge = await cluster.node("edge", role="edge", origin=proxy)
    room = await make_room(origin)
    await publish_async(rtmp_url(origin, room["stream_key"]), seconds=3.0, fps=FPS, gop=FPS)
    text = await wait_playlist(origin, room["slug"], _ended)
    uris = segment_uris(text)
    path = f"/hls/{room['slug']}/{uris[1]}"
    async with origin.http.get(origin.url(path)) as r:
        expected = await r.read()
    assert proxy.counts[path] == 0

    async def fetch() -> tuple[int, bytes]:
        async with edge.http.get(edge.url(path)) as r:
            return r.status, await r.read()

    results = await asyncio.gather(*(fetch() for _ in range(200)))
    assert all(status == 200 and body == expected for status, body in results)
    assert proxy.counts[path] == 1
    # Cached from now on; the playlist, too, is coalesced.
    assert (await fetch())[0] == 200 and proxy.counts[path] == 1
    plist = f"/hls/{room['slug']}/index.m3u8"
    statuses = await asyncio.gather(*(edge.http.get(edge.url(plist)) for _ in range(100)))
    for resp in statuses:
        assert resp.status == 200
        resp.release()
    assert proxy.counts[plist] == 1
    # Every upstream request carried the cluster secret.
    assert all(h.get("X-Livecast-Cluster") == SECRET for h in proxy.headers_seen)
    async with edge.http.get(edge.url("/metrics")) as r:
        families = {f.name: f for f in text_string_to_metric_families(await r.text())}
    lookups = {(s.labels["kind"], s.labels["result"]): s.value for s in families["livecast_edge_cache_lookups"].samples
               if s.name.endswith("_total")}
    # 201 lookups: those before the fetch finished missed (and shared it), the rest hit.
    assert lookups[("segment", "miss")] >= 1 and lookups[("segment", "hit")] >= 1
    assert lookups[("segment", "miss")] + lookups[("segment", "hit")] == 201
    coalesced = next(s.value for s in families["livecast_edge_coalesced_requests"].samples if s.name.endswith("_total"))
    assert coalesced >= lookups[("segment", "miss")] - 1  # every segment miss but one joined the first fetch
    upstream = next(s.value for s in families["livecast_edge_upstream_requests"].samples if s.name.endswith("_total"))
    # The metric counts HLS and API requests; the heartbeat (not a fetch) goes beside it.
    assert upstream == sum(n for p, n in proxy.counts.items() if p != "/api/v1/cluster/heartbeat")


async def test_edge_playlist_headers_and_never_older(cluster, counting_proxy) -> None:
    origin = await cluster.node("origin", hls={"segment_duration": 1.0, "window": 4})
    edge = await cluster.node("edge", role="edge", origin=origin)
    room = await make_room(origin)
    publisher = await start_publisher(rtmp_url(origin, room["stream_key"]), seconds=8.0, fps=FPS, gop=FPS,
                                      realtime=True)
    try:
        await wait_playlist(origin, room["slug"], lambda t: len(segment_uris(t)) >= 2)
        last = -1
        deadline = time.monotonic() + 4.0
        seen = set()
        while time.monotonic() < deadline:
            async with edge.http.get(edge.url(f"/hls/{room['slug']}/index.m3u8")) as r:
                assert r.status == 200
                cache_control = r.headers["Cache-Control"]
                assert cache_control.startswith("public, max-age=")
                assert int(cache_control.rsplit("=", 1)[1]) <= 1  # at most half the 1 s target (rounded up to 1 s)
                text = await r.text()
            position = media_sequence(text) + len(segment_uris(text))
            assert position >= last
            last = position
            seen.add(position)
            await asyncio.sleep(0.05)
        assert len(seen) >= 2  # it moved, i.e. the edge did refresh within the test
    finally:
        await publisher.stop()


async def test_origin_down_then_back(cluster) -> None:
    origin = await cluster.node("origin", hls=HLS)
    edge = await cluster.node("edge", role="edge", origin=origin)
    room = await make_room(origin)
    await publish_async(rtmp_url(origin, room["stream_key"]), seconds=3.0, fps=FPS, gop=FPS)
    text = await wait_playlist(edge, room["slug"], _ended)
    uris = segment_uris(text)
    cached = f"/hls/{room['slug']}/{uris[0]}"
    async with edge.http.get(edge.url(cached)) as r:
        assert r.status == 200
        body = await r.read()

    await origin.kill()
    async with edge.http.get(edge.url(cached)) as r:  # what the edge holds is still served
        assert r.status == 200 and await r.read() == body
    async with edge.http.get(edge.url(f"/hls/{room['slug']}/index.m3u8")) as r:
        assert r.status == 200 and "#EXT-X-ENDLIST" in await r.text()
    for path in (f"/hls/{room['slug']}/{uris[-1]}", "/hls/no-such-room/index.m3u8", "/api/v1/rooms"):
        started = time.monotonic()
        async with edge.http.get(edge.url(path)) as r:
            elapsed = time.monotonic() - started
            assert r.status in (502, 504), (path, r.status)
            error = (await r.json())["error"]
            assert error["code"] in ("upstream_unavailable", "upstream_timeout")
        assert elapsed < 5.0, (path, elapsed)
    async with edge.http.get(edge.url("/healthz")) as r:
        assert r.status == 200  # the edge itself stays up

    await origin.start()  # same ports, same data directory; the edge is not restarted
    room_after = room  # the room and its key survive the restart (SQLite)
    publisher = await start_publisher(rtmp_url(origin, room_after["stream_key"]), seconds=3.0, fps=FPS, gop=FPS)
    try:
        text = await wait_playlist(edge, room["slug"], lambda t: bool(set(segment_uris(t)) - set(uris)), timeout=30)
    finally:
        await publisher.stop()
    fresh = [u for u in segment_uris(text) if u not in uris]
    async with edge.http.get(edge.url(f"/hls/{room['slug']}/{fresh[0]}")) as r:
        assert r.status == 200
    async with edge.http.get(edge.url("/api/v1/rooms")) as r:
        assert r.status == 200


async def test_api_through_edge_keeps_cookies_and_strips_cluster_headers(cluster, counting_proxy) -> None:
    origin = await cluster.node("origin")
    proxy = await counting_proxy(origin)
    edge = await cluster.node("edge", role="edge", origin=proxy)
    creds = {"username": "edgeuser", "password": "correct horse 1"}
    async with edge.http.post(edge.url("/api/v1/auth/register"), json=creds) as r:
        assert r.status == 201, await r.text()
    async with edge.http.post(edge.url("/api/v1/auth/login"), json=creds,
                              headers={"X-Livecast-Cluster": "forged", "X-Livecast-Client-Ip": "6.6.6.6"}) as r:
        assert r.status == 200
        assert "livecast_session" in r.cookies  # Set-Cookie came through
        assert not any(k.lower().startswith("x-livecast-cluster") for k in r.headers)
        token = (await r.json())["token"]
        cookie = r.cookies["livecast_session"].value
    forwarded = proxy.headers_seen[-1]
    assert forwarded["X-Livecast-Cluster"] == SECRET  # the edge's own, not the client's
    assert forwarded["X-Livecast-Client-Ip"] == "127.0.0.1"
    async with edge.http.get(edge.url("/api/v1/me"), headers={"Cookie": f"livecast_session={cookie}"}) as r:
        assert r.status == 200 and (await r.json())["user"]["username"] == "edgeuser"
    async with edge.http.get(edge.url("/api/v1/me"), headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200
    async with edge.http.post(edge.url("/api/v1/rooms"), json={"title": "x" * 5000},
                              headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 400 and "error" in await r.json()  # the origin's validation error, as it was
    async with edge.http.get(edge.url("/api/v1/me")) as r:
        assert r.status == 401 and (await r.json())["error"]["code"] == "unauthorized"
    async with edge.http.get(edge.url("/")) as r:  # the web UI is served by the edge itself
        assert r.status == 200 and "text/html" in r.headers["Content-Type"]
    assert "/" not in proxy.counts


LL = {"low_latency": True, "part_target": 0.2, "segment_duration": 1.0, "window": 10}


def _next_part(text: str) -> tuple[int, int, str]:
    """(msn, part) of the part after the newest listed one, and the preload-hinted URI."""
    parsed = m3u8.loads(text)
    last = len(parsed.segments) - 1
    msn, parts = parsed.media_sequence + last, len(parsed.segments[last].parts)
    return msn, parts, parsed.preload_hint.uri


async def test_ll_hls_blocking_and_hints_coalesce_through_an_edge(cluster, counting_proxy) -> None:
    origin = await cluster.node("origin", hls=LL)
    proxy = await counting_proxy(origin)
    edge = await cluster.node("edge", role="edge", origin=proxy)
    room = await make_room(origin)
    slug = room["slug"]
    publisher = await start_publisher(rtmp_url(origin, room["stream_key"]), seconds=10.0, fps=FPS, gop=FPS,
                                      realtime=True)
    try:
        text = await wait_playlist(edge, slug, lambda t: "#EXT-X-PART:" in t and "#EXTINF" in t)
        for _ in range(3):
            msn, part, hint = _next_part(text)
            params = f"_HLS_msn={msn}&_HLS_part={part}"
            plist = f"/hls/{slug}/index.m3u8?{params}"
            hinted = f"/hls/{slug}/{hint}"

            async def get(path: str) -> tuple[int, bytes]:
                async with edge.http.get(edge.url(path)) as r:
                    return r.status, await r.read()

            # 50 viewers held on the same next part, 50 on the hinted part: asked before they exist.
            results = await asyncio.gather(*(get(plist) for _ in range(50)), *(get(hinted) for _ in range(50)))
            assert all(status == 200 for status, _ in results)
            playlists = {body for _, body in results[:50]}
            assert all(f'URI="{hint}"'.encode() in body for body in playlists)  # the held answer lists the part
            assert len({body for _, body in results[50:]}) == 1  # one part, same bytes for everyone
            assert results[50][1][4:8] == b"moof"
            upstream_plist = sum(n for q, n in proxy.queries.items() if q.startswith(f"/hls/{slug}/index.m3u8?")
                                 and f"_HLS_msn={msn}&_HLS_part={part}" in q)
            assert upstream_plist == 1  # 50 held viewers, one held upstream request
            assert proxy.counts[hinted] == 1
            text = playlists.pop().decode()
        async with edge.http.get(edge.url(f"/hls/{slug}/index.m3u8"), params={"_HLS_msn": "x"}) as r:
            assert r.status == 400 and (await r.json())["error"]["code"]  # the origin's refusal, passed on
        for raw in ("\u00b2", "\u0661", "9" * 40, "-1", str(2**63)):  # boundary integers: never a 5xx
            async with edge.http.get(edge.url(f"/hls/{slug}/index.m3u8"), params={"_HLS_msn": raw}) as r:
                assert r.status == 400, (raw, r.status)
    finally:
        await publisher.stop()
