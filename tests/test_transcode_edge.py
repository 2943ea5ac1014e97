"""The ladder through an edge (separate processes): the edge relays the multivariant playlist,
every rendition's playlist and segments, and the thumbnail; /play sends viewers to the
edge's master playlist."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import m3u8
import pytest
from helpers import make_room, rtmp_url, wait_for
from publisher import start_publisher
from test_transcode_ladder import HLS, LADDER

pytestmark = [pytest.mark.slow, pytest.mark.cluster]


async def _get(node: Any, path: str) -> tuple[int, bytes, Any]:
    async with node.http.get(node.url(path)) as r:
        return r.status, await r.read(), r.headers


async def test_an_edge_relays_the_ladder(cluster: Any) -> None:
    origin = await cluster.node("origin", transcode={**LADDER, "thumbnail_interval": 1.0}, hls=HLS)
    edge = await cluster.node("edge", role="edge", origin=origin)
    room = await make_room(origin)
    slug = room["slug"]
    publisher = await start_publisher(rtmp_url(origin, room["stream_key"]), seconds=6.0, fps=30, gop=30,
                                      width=1280, height=720, realtime=True)

    async def master() -> bytes | None:
        status, body, _ = await _get(edge, f"/hls/{slug}/master.m3u8")
        return body if status == 200 and body.count(b"#EXT-X-STREAM-INF") == 3 else None

    body = await wait_for(master, timeout=30, what="the master playlist through the edge")
    for variant in m3u8.loads(body.decode()).playlists:
        base = f"/hls/{slug}/" + variant.uri.rsplit("index.m3u8", 1)[0]
        status, text, _ = await _get(edge, base + "index.m3u8")
        assert status == 200, variant.uri
        first = m3u8.loads(text.decode()).segments[0].uri
        status, data, headers = await _get(edge, base + first)
        assert status == 200 and data and "immutable" in headers["Cache-Control"]
    status, jpeg, headers = await wait_for(
        lambda: _thumbnail(edge, slug), timeout=15, what="the thumbnail through the edge")
    assert jpeg[:2] == b"\xff\xd8" and headers["Content-Type"] == "image/jpeg"
    deadline = time.monotonic() + 15
    play = ""
    while time.monotonic() < deadline and not play.startswith(edge.base):
        async with origin.http.get(origin.url(f"/api/v1/rooms/{slug}/play")) as r:
            play = (await r.json())["hls_url"]
        await asyncio.sleep(0.2)
    assert play == f"{edge.base}/hls/{slug}/master.m3u8"
    await publisher.result()


async def _thumbnail(node: Any, slug: str) -> tuple[int, bytes, Any] | None:
    status, body, headers = await _get(node, f"/hls/{slug}/thumbnail.jpg")
    return (status, body, headers) if status == 200 else None
