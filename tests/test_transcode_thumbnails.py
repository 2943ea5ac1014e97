"""Live thumbnails: a JPEG of the latest keyframe, made in a worker process, with or without a ladder."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import av
import pytest
from helpers import make_room, room_json, rtmp_url, wait_for
from publisher import start_publisher

pytestmark = pytest.mark.slow  # a real publisher and a decoding worker, for seconds


def _size(jpeg: bytes) -> tuple[int, int]:
    with av.open(io.BytesIO(jpeg)) as container:
        frame = next(container.decode(video=0))
        return frame.width, frame.height


async def test_thumbnail_of_a_live_room_without_a_ladder(node_factory: Any) -> None:
    node = await node_factory(transcode={"thumbnail_interval": 1.0})
    room = await make_room(node)
    slug = room["slug"]
    async with node.http.get(node.url(f"/hls/{slug}/thumbnail.jpg")) as r:
        assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
    publisher = await start_publisher(rtmp_url(node, room["stream_key"]), seconds=6.0, fps=30, gop=30,
                                      width=1280, height=720, realtime=True)

    async def url() -> str | None:
        return (await room_json(node, slug)).get("thumbnail_url")

    assert await wait_for(url, timeout=20, what="a thumbnail_url") == f"/hls/{slug}/thumbnail.jpg"
    async with node.http.get(node.url(f"/hls/{slug}/thumbnail.jpg")) as r:
        assert r.status == 200 and r.headers["Content-Type"] == "image/jpeg"
        assert r.headers["Cache-Control"] == "public, max-age=1"
        first = await r.read()
    assert first[:2] == b"\xff\xd8"
    assert await asyncio.to_thread(_size, first) == (640, 360)  # at most 640 wide, aspect kept

    async def changed() -> bool:
        async with node.http.get(node.url(f"/hls/{slug}/thumbnail.jpg")) as r:
            return r.status == 200 and await r.read() != first

    await wait_for(changed, timeout=10, what="a newer thumbnail")  # the picture moves
    async with node.http.get(node.url(f"/r/{slug}")) as r:
        page = await r.text()
    assert f'<meta property="og:image" content="{node.base}/hls/{slug}/thumbnail.jpg">' in page
    await publisher.result()
