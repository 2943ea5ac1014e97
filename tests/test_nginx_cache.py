"""A standard HTTP cache in front: Debian's nginx running conf/nginx-cache.conf (the very
file docs/DEPLOY.md shows, with only its listen port and upstream address rendered) in
front of an edge and in front of an origin, each a separate ``livecast serve`` process.

A real RTMP publisher (child process) feeds the origin; HLS is played back through nginx
with PyAV's HLS demuxer. The cache is shown working from both sides: nginx's
``X-Cache-Status`` header, and the request counters of the node behind it (an edge's
``livecast_edge_cache_lookups``, an origin's ``livecast_http_requests_total``).

nginx is required: the test fails (it does not skip) when it is missing; .ci/run
installs it.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from helpers import make_room, media_sequence, rtmp_url, segment_uris, wait_playlist
from procs import free_port, wait_listening
from prometheus_client.parser import text_string_to_metric_families
from publisher import publish_async, read_hls_async, start_publisher

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

CONF = Path(__file__).resolve().parent.parent / "conf" / "nginx-cache.conf"
FPS = 30
LISTEN_LINE = "listen 8088;"
UPSTREAM_LINE = "server 127.0.0.1:8080;"


def nginx_binary() -> str:
    exe = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if exe is None:
        raise AssertionError("nginx is not installed (apt-get install nginx; .ci/run installs it)")
    return exe


def render_config(text: str, port: int, upstream: str) -> str:
    """conf/nginx-cache.conf with its two "CHANGE ME" values set (the directives, not the
    comments that mention them), nothing else touched."""
    text, listens = re.subn(rf"^(\s*){re.escape(LISTEN_LINE)}", rf"\g<1>listen 127.0.0.1:{port};", text, flags=re.M)
    text, servers = re.subn(rf"^(\s*){re.escape(UPSTREAM_LINE)}", rf"\g<1>server {upstream};", text, flags=re.M)
    assert listens == 1 and servers == 1, (listens, servers)
    return text


class NginxCache:
    """Debian's nginx as its own process with the repository's cache config.

    The prefix is a fresh directory that the worker user can enter (0755): started as
    root (CI), the workers run as nobody, and nginx itself creates and chowns the cache
    and temp directories inside the prefix.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.prefix = Path(tempfile.mkdtemp(prefix="livecast-nginx-"))
        os.chmod(self.prefix, 0o755)
        self.proc: asyncio.subprocess.Process | None = None
        self.http = aiohttp.ClientSession(auto_decompress=False)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def log(self, name: str) -> str:
        path = self.prefix / name
        return path.read_text(errors="replace") if path.exists() else ""

    async def start(self) -> None:
        conf = self.prefix / "nginx.conf"
        conf.write_text(render_config(CONF.read_text(), self.port, self.upstream))
        self.proc = await asyncio.create_subprocess_exec(
            nginx_binary(), "-c", str(conf), "-p", f"{self.prefix}/", "-g", f"daemon off; pid {self.prefix}/nginx.pid;",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        if not await wait_listening(self.port, 15.0):
            if self.proc.returncode is not None:
                assert self.proc.stderr is not None
                err = (await self.proc.stderr.read()).decode(errors="replace")
                raise AssertionError(f"nginx exited with {self.proc.returncode}: {err}{self.log('error.log')}")
            raise AssertionError(f"nginx did not listen on {self.port}: {self.log('error.log')}")

    async def stop(self) -> None:
        await self.http.close()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: workers finish, then exit
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        shutil.rmtree(self.prefix, ignore_errors=True)


@pytest.fixture
async def nginx_cache() -> AsyncIterator[Callable[[Any], Awaitable[NginxCache]]]:
    started: list[NginxCache] = []

    async def make(node: Any) -> NginxCache:
        cache = NginxCache(f"127.0.0.1:{node.http_port}")
        started.append(cache)
        await cache.start()
        return cache

    yield make
    for cache in started:
        await cache.stop()


async def metrics(node: Any) -> dict[str, Any]:
    async with node.http.get(node.url("/metrics")) as r:
        assert r.status == 200
        return {f.name: f for f in text_string_to_metric_families(await r.text())}


async def segment_requests(node: Any) -> float:
    """How many segment requests reached ``node`` (an edge's cache lookups, or an origin's HTTP requests)."""
    families = await metrics(node)
    if node.role == "edge":
        return sum(s.value for s in families["livecast_edge_cache_lookups"].samples
                   if s.name.endswith("_total") and s.labels["kind"] == "segment")
    return sum(s.value for s in families["livecast_http_requests"].samples
               if s.name.endswith("_total") and s.labels["route"] == "hls_segment")


def max_age(cache_control: str) -> int:
    m = re.search(r"max-age=(\d+)", cache_control)
    assert m is not None, cache_control
    return int(m.group(1))


async def get(cache: NginxCache, path: str) -> tuple[int, str, str, bytes]:
    """(status, X-Cache-Status, Cache-Control, body) of a GET through nginx."""
    async with cache.http.get(cache.url(path)) as r:
        return r.status, r.headers.get("X-Cache-Status", ""), r.headers.get("Cache-Control", ""), await r.read()


async def play_and_check_cache(cluster: Any, cache: NginxCache, node: Any, origin: Any) -> None:
    """Publish, play through nginx (same frames), then show one segment's misses collapse."""
    room = await make_room(origin)
    sent = await publish_async(rtmp_url(origin, room["stream_key"]), seconds=4.0, fps=FPS, gop=FPS)
    slug = room["slug"]
    text = await wait_playlist(cache, slug, lambda t: "#EXT-X-ENDLIST" in t)
    uris = segment_uris(text)
    assert len(uris) >= 3

    # Cold cache: 40 viewers ask nginx for the same segment at once -> one request behind it.
    path = f"/hls/{slug}/{uris[1]}"
    async with node.http.get(node.url(path)) as r:
        assert r.status == 200
        expected = await r.read()
    before = await segment_requests(node)
    results = await asyncio.gather(*(get(cache, path) for _ in range(40)))
    assert all(status == 200 and body == expected for status, _, _, body in results)
    statuses = Counter(xcache for _, xcache, _, _ in results)
    assert statuses["MISS"] == 1 and statuses["HIT"] == 39, statuses
    assert all(max_age(cc) == 86400 and "immutable" in cc for _, _, cc, _ in results)
    assert await segment_requests(node) == before + 1

    # Played through nginx with PyAV's HLS demuxer: every frame that was sent.
    frames, duration, codecs = await read_hls_async(cache.url(f"/hls/{slug}/index.m3u8"))
    assert "h264" in codecs and "aac" in codecs
    assert frames == sent.video_frames
    assert abs(duration - sent.video_frames / FPS) <= 1 / FPS + 1e-6

    # Every segment is now in nginx's cache: replaying reaches nothing behind it.
    before = await segment_requests(node)
    for uri in uris:
        status, xcache, _, body = await get(cache, f"/hls/{slug}/{uri}")
        assert status == 200 and xcache == "HIT" and body
    assert await segment_requests(node) == before
    access = cache.log("access.log")
    assert f"GET {path} HTTP/1.1\" 200" in access and "cache=HIT" in access


async def test_nginx_in_front_of_edge_plays_and_caches(cluster: Any, nginx_cache: Any) -> None:
    origin = await cluster.node("origin", hls={"segment_duration": 1.0, "window": 10})
    edge = await cluster.node("edge", role="edge", origin=origin)
    cache = await nginx_cache(edge)
    await play_and_check_cache(cluster, cache, edge, origin)
    # A 404 is not cached: asked twice, it reaches the edge twice.
    for _ in range(2):
        status, xcache, cc, _ = await get(cache, "/hls/no-such-room/index.m3u8")
        assert status == 404 and xcache == "MISS" and cc == "no-cache"


async def test_nginx_in_front_of_origin_plays_caches_and_passes_api(cluster: Any, nginx_cache: Any) -> None:
    origin = await cluster.node("origin", hls={"segment_duration": 1.0, "window": 10})
    cache = await nginx_cache(origin)
    await play_and_check_cache(cluster, cache, origin, origin)

    # The API goes through and is never cached; /metrics stays private.
    for _ in range(2):
        async with cache.http.get(cache.url("/api/v1/rooms")) as r:
            assert r.status == 200 and "X-Cache-Status" not in r.headers
            assert "rooms" in await r.json()
    async with cache.http.get(cache.url("/metrics")) as r:
        assert r.status == 403
    # Chat: the WebSocket upgrade passes through nginx.
    room = await make_room(origin)
    async with cache.http.ws_connect(cache.url(f"/api/v1/rooms/{room['slug']}/chat")) as ws:
        await ws.send_json({"type": "ping"})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            frame = await ws.receive_json(timeout=10)
            if frame.get("type") == "pong":
                break
        else:
            raise AssertionError("no pong through nginx")


@pytest.mark.parametrize("behind", ["origin", "edge"])
async def test_live_playlists_not_cached_past_their_max_age(cluster: Any, nginx_cache: Any, behind: str) -> None:
    # 4 s segments: the origin says max-age=2 (half the target duration), which an edge
    # passes on reduced by the playlist's age -- enough for nginx to hold a playlist.
    origin = await cluster.node("origin", hls={"segment_duration": 4.0, "window": 6})
    node = origin if behind == "origin" else await cluster.node("edge", role="edge", origin=origin)
    cache = await nginx_cache(node)
    room = await make_room(origin)
    slug = room["slug"]
    publisher = await start_publisher(rtmp_url(origin, room["stream_key"]), seconds=40.0, fps=FPS, gop=FPS,
                                      realtime=True)
    try:
        await wait_playlist(cache, slug, lambda t: len(segment_uris(t)) >= 1, timeout=30)
        positions: set[int] = set()
        last = -1
        stored = expired = 0
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not (len(positions) >= 2 and expired >= 2):
            status, xcache, cc, body = await get(cache, f"/hls/{slug}/index.m3u8")
            assert status == 200 and cc.startswith("public, max-age=")
            text = body.decode()
            position = media_sequence(text) + len(segment_uris(text))
            assert position >= last  # never an older playlist than one already seen
            last = position
            positions.add(position)
            age = max_age(cc)
            if xcache in ("MISS", "EXPIRED") and age > 0:
                stored += 1
                # nginx holds it for max-age (counted in whole seconds): once that has
                # passed, the next request goes upstream again instead of being a HIT.
                await asyncio.sleep(age + 1.2)
                status, xcache, _, _ = await get(cache, f"/hls/{slug}/index.m3u8")
                assert status == 200 and xcache in ("EXPIRED", "MISS"), xcache
                expired += 1
            else:
                await asyncio.sleep(0.3)
        assert len(positions) >= 2  # the playlist moved on through the cache
        assert stored >= 1 and expired >= 2, (stored, expired)
    finally:
        await publisher.stop()
