"""End to end: a real RTMP publisher (PyAV + FFmpeg's RTMP client) into a real node, HLS
read back over HTTP with PyAV's own HLS demuxer. No mocks of the network or of PyAV."""

from __future__ import annotations

import asyncio

import pytest
from helpers import (
    get_playlist,
    make_room,
    media_sequence,
    room_json,
    rtmp_url,
    segment_uris,
    wait_playlist,
)
from publisher import PublishFailed, publish_async, read_hls_async, start_publisher

pytestmark = pytest.mark.slow  # real publishers in child processes, for seconds

FPS = 30


def _ended(text: str) -> bool:
    return "#EXT-X-ENDLIST" in text


@pytest.mark.parametrize("container", ["mpegts", "fmp4"])
async def test_publish_h264_aac_and_read_back_same_frames(node_factory, container: str) -> None:
    node = await node_factory(hls={"container": container, "segment_duration": 1.0, "window": 10})
    room = await make_room(node)
    sent = await publish_async(rtmp_url(node, room["stream_key"]), seconds=4.0, fps=FPS, gop=FPS)
    playlist = await wait_playlist(node, room["slug"], _ended)
    assert "#EXT-X-TARGETDURATION:" in playlist
    uris = segment_uris(playlist)
    assert len(uris) >= 3
    ext = ".m4s" if container == "fmp4" else ".ts"
    assert all(u.endswith(ext) for u in uris)
    if container == "fmp4":
        assert "#EXT-X-MAP:" in playlist

    frames, duration, codecs = await read_hls_async(node.url(f"/hls/{room['slug']}/index.m3u8"))
    assert "h264" in codecs and "aac" in codecs
    assert frames == sent.video_frames
    assert abs(duration - sent.video_frames / FPS) <= 1 / FPS + 1e-6


async def test_hevc_over_enhanced_rtmp_plays_as_fmp4(node_factory) -> None:
    node = await node_factory(hls={"container": "fmp4", "segment_duration": 1.0, "window": 10})
    room = await make_room(node)
    sent = await publish_async(rtmp_url(node, room["stream_key"]), seconds=3.0, fps=FPS, video="libx265", gop=FPS
    )
    await wait_playlist(node, room["slug"], _ended)
    frames, duration, codecs = await read_hls_async(node.url(f"/hls/{room['slug']}/index.m3u8"))
    assert "hevc" in codecs
    assert frames == sent.video_frames
    assert abs(duration - sent.video_frames / FPS) <= 1 / FPS + 1e-6


async def test_hevc_refused_when_output_is_mpegts(node) -> None:
    room = await make_room(node)
    with pytest.raises(PublishFailed):
        await publish_async(rtmp_url(node, room["stream_key"]), seconds=3.0, video="libx265")
    status, _ = await get_playlist(node, room["slug"])
    # The publisher was dropped before any segment was produced for an unplayable codec.
    assert status == 404 or "#EXT-X-ENDLIST" in _


async def test_wrong_key_is_rejected_and_room_stays_offline(node) -> None:
    room = await make_room(node)
    with pytest.raises(PublishFailed):
        await publish_async(rtmp_url(node, "lc_not-a-real-key"), seconds=1.0)
    status, _ = await get_playlist(node, room["slug"])
    assert status == 404
    assert (await room_json(node, room["slug"]))["live"] is False


async def test_audio_only_and_video_only(node_factory) -> None:
    node = await node_factory(hls={"segment_duration": 1.0, "window": 10})
    room = await make_room(node)
    await publish_async(rtmp_url(node, room["stream_key"]), seconds=3.0, video=None)
    text = await wait_playlist(node, room["slug"], _ended)
    assert len(segment_uris(text)) >= 2

    room2 = await make_room(node)
    sent = await publish_async(rtmp_url(node, room2["stream_key"]), seconds=3.0, audio=False)
    await wait_playlist(node, room2["slug"], _ended)
    frames, _, codecs = await read_hls_async(node.url(f"/hls/{room2['slug']}/index.m3u8"))
    assert codecs == ["h264"]
    assert frames == sent.video_frames


async def test_live_state_and_stream_info_in_room_api(node_factory) -> None:
    node = await node_factory(hls={"segment_duration": 1.0})
    room = await make_room(node)
    pub = await start_publisher(rtmp_url(node, room["stream_key"]), seconds=20, realtime=True, width=320, height=240)
    try:
        await wait_playlist(node, room["slug"], lambda t: len(segment_uris(t)) >= 2)
        info = await room_json(node, room["slug"])
        assert info["live"] is True
        stream = info["stream"]
        assert stream["video_codec"] == "h264" and stream["audio_codec"] == "aac"
        assert stream["width"] == 320 and stream["height"] == 240
        assert 20 <= stream["fps"] <= 40
        assert stream["bitrate"] > 0
        assert stream["uptime"] >= 0
        listed = [r["slug"] for r in await _rooms(node)]
        assert listed[0] == room["slug"]  # live rooms first
    finally:
        await pub.stop()
    await pub.result()
    await wait_playlist(node, room["slug"], _ended)
    for _ in range(50):
        if (await room_json(node, room["slug"]))["live"] is False:
            break
        await asyncio.sleep(0.1)
    assert (await room_json(node, room["slug"]))["live"] is False


async def _rooms(node) -> list[dict]:
    async with node.http.get(node.url("/api/v1/rooms")) as r:
        return (await r.json())["rooms"]


async def test_takeover_continues_playlist_with_discontinuity(node_factory) -> None:
    node = await node_factory(hls={"segment_duration": 1.0, "window": 20})
    room = await make_room(node)
    url = rtmp_url(node, room["stream_key"])
    a = await start_publisher(url, seconds=30, realtime=True)
    try:
        before = await wait_playlist(node, room["slug"], lambda t: len(segment_uris(t)) >= 2)
        seq = media_sequence(before)
        await publish_async(url, seconds=2.5, realtime=True)
        with pytest.raises(PublishFailed):  # the server closed the old publisher on takeover
            await a.result(timeout=15)
    finally:
        await a.stop()
    text = await wait_playlist(node, room["slug"], _ended)
    assert "#EXT-X-DISCONTINUITY" in text
    assert media_sequence(text) == seq
    assert set(segment_uris(before)) <= set(segment_uris(text))


async def test_stop_ends_playlist_and_reconnect_within_grace_continues(node_factory) -> None:
    node = await node_factory(hls={"segment_duration": 1.0, "window": 20, "reconnect_grace": 30})
    room = await make_room(node)
    url = rtmp_url(node, room["stream_key"])
    await publish_async(url, seconds=2.0)
    first = await wait_playlist(node, room["slug"], _ended)
    await publish_async(url, seconds=2.0)
    second = await wait_playlist(
        node, room["slug"], lambda t: _ended(t) and len(segment_uris(t)) > len(segment_uris(first))
    )
    assert media_sequence(second) == media_sequence(first)
    assert segment_uris(second)[: len(segment_uris(first))] == segment_uris(first)
    assert second.count("#EXT-X-DISCONTINUITY\n") + second.count("#EXT-X-DISCONTINUITY\r\n") >= 1
    assert second.count("#EXT-X-ENDLIST") == 1


async def test_segments_headers_and_range(node_factory) -> None:
    node = await node_factory(hls={"segment_duration": 1.0})
    room = await make_room(node)
    await publish_async(rtmp_url(node, room["stream_key"]), seconds=2.0)
    text = await wait_playlist(node, room["slug"], _ended)
    async with node.http.get(node.url(f"/hls/{room['slug']}/index.m3u8")) as r:
        assert r.headers["Content-Type"].startswith("application/vnd.apple.mpegurl")
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert r.headers["Cache-Control"] == "public, max-age=1"  # half the target, at least 1 s
    seg_url = node.url(f"/hls/{room['slug']}/{segment_uris(text)[0]}")
    async with node.http.get(seg_url) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "video/mp2t"
        assert "immutable" in r.headers["Cache-Control"]
        whole = await r.read()
    async with node.http.get(seg_url, headers={"Range": "bytes=188-375"}) as r:
        assert r.status == 206
        assert r.headers["Content-Range"] == f"bytes 188-375/{len(whole)}"
        assert await r.read() == whole[188:376]
    async with node.http.get(seg_url, headers={"Range": f"bytes={len(whole) + 10}-"}) as r:
        assert r.status == 416
    for huge in ("9" * 5000 + "-", "-" + "9" * 5000, f"0-{2**64}", "x-"):  # never a 5xx
        async with node.http.get(seg_url, headers={"Range": f"bytes={huge}"}) as r:
            assert r.status in (200, 206, 416), (huge[:20], r.status)
    async with node.http.head(seg_url) as r:
        assert r.status == 200 and int(r.headers["Content-Length"]) == len(whole)
    for path in ("/hls/nope/index.m3u8", f"/hls/{room['slug']}/missing-1.ts", "/hls/../etc/passwd"):
        async with node.http.get(node.url(path)) as r:
            assert r.status == 404
            if r.content_type == "application/json":
                assert (await r.json())["error"]["code"]


async def test_query_string_after_the_key_is_ignored(node_factory) -> None:
    node = await node_factory(hls={"segment_duration": 1.0})
    room = await make_room(node)
    sent = await publish_async(rtmp_url(node, room["stream_key"]) + "?obs=30.2&t=1", seconds=2.0)
    await wait_playlist(node, room["slug"], _ended)
    frames, _, _ = await read_hls_async(node.url(f"/hls/{room['slug']}/index.m3u8"))
    assert frames == sent.video_frames


async def test_publish_through_a_uvloop_server(tmp_path) -> None:
    """The production default runs on uvloop (its transports don't subclass asyncio's)."""
    import sys

    from conftest import make_settings

    settings = make_settings(tmp_path / "data")
    code = f"""
import asyncio, json, sys, uvloop
from livecast.config import load_settings
from livecast.server import start_node
async def main():
    node = await start_node(load_settings(None, environ={{}}, overrides={{
        "server": {{"host": "127.0.0.1", "http_port": 0, "rtmp_port": 0, "data_dir": {str(settings.data_path)!r}}},
        "auth": {{"bcrypt_rounds": 4}}, "hls": {{"segment_duration": 1.0}}}}))
    assert "uvloop" in type(asyncio.get_running_loop()).__module__
    print(json.dumps([node.http_port, node.rtmp_port]), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await node.stop()
with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
    r.run(main())
"""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    try:
        import json

        import aiohttp

        http_port, rtmp_port = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))

        class Remote:
            def __init__(self, session: aiohttp.ClientSession) -> None:
                self.http = session
                self.rtmp_port = rtmp_port

            def url(self, path: str) -> str:
                return f"http://127.0.0.1:{http_port}{path}"

        async with aiohttp.ClientSession() as session:
            remote = Remote(session)
            room = await make_room(remote)
            sent = await publish_async(rtmp_url(remote, room["stream_key"]), seconds=2.0)
            await wait_playlist(remote, room["slug"], _ended)
            frames, _, _ = await read_hls_async(remote.url(f"/hls/{room['slug']}/index.m3u8"))
            assert frames == sent.video_frames
    finally:
        if proc.returncode is None:
            proc.stdin.write(b"\n")
            await asyncio.wait_for(proc.wait(), 30)
