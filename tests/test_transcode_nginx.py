"""The ladder through a standard HTTP cache: nginx (conf/nginx-cache.conf) in front of an origin
making a ladder serves the multivariant playlist, every rendition's playlist and segments,
and caches the segments."""

from __future__ import annotations

from typing import Any

import m3u8
import pytest
from helpers import make_room, rtmp_url, wait_for
from publisher import start_publisher
from test_nginx_cache import NginxCache, get, max_age
from test_transcode_ladder import HLS, LADDER

pytestmark = [pytest.mark.slow]


async def test_master_and_renditions_through_nginx(node_factory: Any) -> None:
    node = await node_factory(transcode=LADDER, hls=HLS)
    cache = NginxCache(f"127.0.0.1:{node.node.http_port}")  # in front of this in-process origin
    await cache.start()
    try:
        await _play_through(node, cache)
    finally:
        await cache.stop()


async def _play_through(node: Any, cache: NginxCache) -> None:
    room = await make_room(node)
    slug = room["slug"]
    publisher = await start_publisher(rtmp_url(node, room["stream_key"]), seconds=5.0, fps=30, gop=30,
                                      width=1280, height=720, realtime=True)

    async def master() -> bytes | None:
        status, _, _, body = await get(cache, f"/hls/{slug}/master.m3u8")
        return body if status == 200 and body.count(b"#EXT-X-STREAM-INF") == 3 else None

    body = await wait_for(master, timeout=30, what="the master playlist through nginx")
    _, _, cache_control, _ = await get(cache, f"/hls/{slug}/master.m3u8")
    assert 1 <= max_age(cache_control) <= 2  # live: half a target duration at most
    for variant in m3u8.loads(body.decode()).playlists:
        base = f"/hls/{slug}/" + variant.uri.rsplit("index.m3u8", 1)[0]
        status, _, _, text = await get(cache, base + "index.m3u8")
        assert status == 200, variant.uri
        first = m3u8.loads(text.decode()).segments[0].uri
        status, _, _, data = await get(cache, base + first)
        assert status == 200 and data
        status, cached, _, again = await get(cache, base + first)
        assert status == 200 and cached == "HIT" and again == data, (variant.uri, cached)
    await publisher.result()
