"""LL-HLS end to end: a real RTMP publisher into a real node, blocking requests and
preload hint fetches over real HTTP, the stream read back with PyAV's HLS demuxer."""

from __future__ import annotations

import asyncio

import aiohttp
import m3u8
import pytest
from helpers import make_room, rtmp_url, wait_playlist
from publisher import read_hls_async, start_publisher
from test_llhls_playlist import check_ll_rules

pytestmark = pytest.mark.slow  # real publishers in child processes, for seconds

FPS = 30
LL = {"low_latency": True, "part_target": 0.2, "segment_duration": 1.0, "window": 10}


def position(text: str) -> tuple[int, int]:
    """(media sequence, part index) of the newest listed part."""
    parsed = m3u8.loads(text)
    last = len(parsed.segments) - 1
    return parsed.media_sequence + last, len(parsed.segments[last].parts) - 1


async def test_blocking_reload_and_preload_hint_over_http(node_factory) -> None:
    node = await node_factory(hls=LL)
    room = await make_room(node)
    slug = room["slug"]
    url = node.url(f"/hls/{slug}/index.m3u8")
    publisher = await start_publisher(rtmp_url(node, room["stream_key"]), seconds=8.0, fps=FPS, gop=FPS, realtime=True)
    text = await wait_playlist(node, slug, lambda t: "#EXT-X-PART:" in t and "#EXTINF" in t)
    check_ll_rules(text, m3u8.loads(text))
    for _ in range(5):
        msn, part = position(text)
        hint = m3u8.loads(text).preload_hint.uri
        # the hinted part and the playlist that will list it, both asked for before they exist
        part_get = asyncio.create_task(node.http.get(node.url(f"/hls/{slug}/{hint}")))
        async with node.http.get(url, params={"_HLS_msn": str(msn), "_HLS_part": str(part + 1)}) as r:
            assert r.status == 200, await r.text()
            assert r.headers["Cache-Control"].startswith("public, max-age=")
            text = await r.text()
        assert position(text) >= (msn, part + 1)
        assert f'URI="{hint}"' in text  # the new part is the one that was hinted
        check_ll_rules(text, m3u8.loads(text))
        async with await asyncio.wait_for(part_get, 10) as r:
            assert r.status == 200
            data = await r.read()
        assert data[4:8] == b"moof"
        async with node.http.get(node.url(f"/hls/{slug}/{hint}")) as again:
            assert await again.read() == data  # a part URL never changes content
    # refused at once: too far ahead, part without msn, malformed
    msn, part = position(text)
    for params in ({"_HLS_msn": str(msn + 3)}, {"_HLS_part": "1"}, {"_HLS_msn": "x"}):
        async with node.http.get(url, params=params) as r:
            assert r.status == 400, params
            assert (await r.json())["error"]["code"]
    # a request held when the publisher stops is answered (ENDLIST, or 503), never left hanging.
    # msn is the segment in progress, so msn + 2 is over a segment duration away: the request is held.
    held = asyncio.create_task(node.http.get(url, params={"_HLS_msn": str(msn + 2)}))
    async with aiohttp.ClientSession() as other:  # a later request, on its own connection, answered first
        async with other.get(url) as r:
            assert r.status == 200
            assert position(await r.text())[0] < msn + 2
    assert not held.done()  # still held right before the stop: the answer below comes after it
    await publisher.stop()
    await publisher.result()
    async with await asyncio.wait_for(held, 30) as r:
        assert r.status in (200, 503)
        if r.status == 200:
            body = await r.text()  # answered by the stop, not by the wanted segment arriving
            assert "#EXT-X-ENDLIST" in body and position(body)[0] < msn + 2, body
    await wait_playlist(node, slug, lambda t: "#EXT-X-ENDLIST" in t)


async def test_ll_stream_reads_back_with_the_same_frames(node_factory) -> None:
    node = await node_factory(hls=LL)
    room = await make_room(node)
    publisher = await start_publisher(rtmp_url(node, room["stream_key"]), seconds=4.0, fps=FPS, gop=FPS)
    sent = await publisher.result()
    text = await wait_playlist(node, room["slug"], lambda t: "#EXT-X-ENDLIST" in t)
    check_ll_rules(text, m3u8.loads(text))
    frames, duration, codecs = await read_hls_async(node.url(f"/hls/{room['slug']}/index.m3u8"))
    assert "h264" in codecs and "aac" in codecs
    assert frames == sent.video_frames
    assert abs(duration - sent.video_frames / FPS) <= 1 / FPS + 1e-6
