"""Pull sources: a room fed from a remote HLS playlist (served over HTTP by the test) and
from nginx-rtmp over RTMP; the pull worker remuxes in a child process, the room's HLS
yields the source's frames; the puller reconnects and the playlist continues with a
discontinuity; a publish with the room's key takes precedence; on-demand pulls start on
the first playlist request and stop after ``relay.idle_seconds``."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from helpers import make_room, room_json, rtmp_url, wait_for, wait_playlist
from nginx_rtmp import NginxRtmp
from procs import free_port
from publisher import publish_async, read_hls_async, start_publisher
from rtsp_server import RtspServer

pytestmark = pytest.mark.slow
FPS = 30


def make_hls(directory: Path, seconds: int = 3) -> None:
    """A finished HLS stream (H.264 + AAC in MPEG-TS, 1 s segments) made by Debian's ffmpeg."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", f"testsrc=size=320x240:rate={FPS}",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", str(seconds),
         "-c:v", "libx264", "-g", str(FPS), "-preset", "ultrafast", "-c:a", "aac",
         "-f", "hls", "-hls_time", "1", "-hls_list_size", "0", str(directory / "index.m3u8")],
        check=True, timeout=60)


@pytest.fixture
async def hls_server(tmp_path: Path) -> AsyncIterator[str]:
    make_hls(tmp_path / "src")
    app = web.Application()
    app.router.add_static("/src/", tmp_path / "src")
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    yield f"http://127.0.0.1:{port}/src/index.m3u8"
    await runner.cleanup()


async def _set_source(node: Any, room: dict[str, Any], **body: Any) -> tuple[int, dict[str, Any]]:
    async with node.http.patch(node.url(f"/api/v1/rooms/{room['slug']}"), json=body, headers=room["headers"]) as r:
        return r.status, await r.json()


async def _source_state(node: Any, room: dict[str, Any]) -> str:
    return str(((await room_json(node, room["slug"], room["headers"])).get("source") or {}).get("state"))


async def test_pull_from_hls_url_plays_and_reconnects_with_discontinuity(node_factory: Any, hls_server: str) -> None:
    node = await node_factory(relay={"retry_first": 3.0, "retry_max": 3.0})
    room = await make_room(node)
    for bad in ("ftp://x/y", "http://127.0.0.1/x.mp4", "rtmp://", 5):
        status, err = await _set_source(node, room, source_url=bad)
        assert status == 400 and err["error"]["field"] == "source_url", (bad, err)
    status, body = await _set_source(node, room, source_url=hls_server)
    assert status == 200, body
    assert body["room"]["source"]["url"] == hls_server  # the owner sees it
    public = await room_json(node, room["slug"])
    assert "url" not in public["source"]
    await wait_playlist(node, room["slug"], lambda t: "#EXT-X-ENDLIST" in t)
    frames, _, codecs = await read_hls_async(node.url(f"/hls/{room['slug']}/index.m3u8"))
    assert abs(frames - 3 * FPS) <= 1 and "h264" in codecs and "aac" in codecs, (frames, codecs)
    # The source ended; the puller comes back after its backoff and the playlist continues.
    await wait_playlist(node, room["slug"], lambda t: "#EXT-X-DISCONTINUITY" in t, timeout=30)
    status, _ = await _set_source(node, room, source_url="")
    assert status == 200


async def test_pull_from_nginx_rtmp_plays_the_source_frames(node_factory: Any) -> None:
    nginx = NginxRtmp()
    await nginx.start()
    try:
        node = await node_factory(relay={"retry_first": 30.0, "retry_max": 30.0})
        room = await make_room(node)
        status, body = await _set_source(node, room, source_url=f"{nginx.url}/cam1")
        assert status == 200, body
        # nginx logs (at info level) each player's play command: the puller has subscribed.
        await wait_for(lambda: "play: name='cam1'" in nginx.log(), timeout=30, what="the puller playing on nginx")
        sent = await publish_async(f"{nginx.url}/cam1", seconds=3.0, fps=FPS, gop=FPS, realtime=True)
        await wait_playlist(node, room["slug"], lambda t: "#EXT-X-ENDLIST" in t, timeout=40)
        frames, _, codecs = await read_hls_async(node.url(f"/hls/{room['slug']}/index.m3u8"))
        assert abs(frames - sent.video_frames) <= 1 and "h264" in codecs, (frames, sent, codecs)
    finally:
        await nginx.stop()


async def test_publish_with_the_key_takes_precedence_over_the_pull(node_factory: Any, hls_server: str) -> None:
    node = await node_factory(relay={"retry_first": 0.5, "retry_max": 0.5})
    room = await make_room(node)
    pub = await start_publisher(rtmp_url(node, room["stream_key"]), seconds=4.0, fps=FPS, gop=FPS, realtime=True)
    try:
        await wait_playlist(node, room["slug"], lambda t: "#EXTINF" in t)
        status, _ = await _set_source(node, room, source_url=hls_server)
        assert status == 200
        await wait_for(lambda: _source_is(node, room, "waiting"), what="the pull waits for the publisher")
        for _ in range(10):  # the publisher keeps the room while the pull keeps retrying
            info = await room_json(node, room["slug"], room["headers"])
            assert not info["stream"]["peer"].startswith("pull "), info["stream"]
            await asyncio.sleep(0.1)  # sampling the room while the publisher is live
    finally:
        sent = await pub.result()
    assert sent.video_frames == 4 * FPS
    # Once the publisher has left, the pull feeds the room.
    await wait_for(lambda: _fed_by_pull(node, room), timeout=20, what="the pull takes the free room")


async def _fed_by_pull(node: Any, room: dict[str, Any]) -> bool:
    source = (await room_json(node, room["slug"], room["headers"]))["source"]
    return source["state"] == "live" or (source["state"] == "retrying" and source["reason"] == "the source ended")


async def _source_is(node: Any, room: dict[str, Any], state: str) -> bool:
    return await _source_state(node, room) == state


async def test_on_demand_pull_starts_on_first_playlist_request_and_stops_when_idle(node_factory: Any) -> None:
    nginx = NginxRtmp()
    await nginx.start()
    pub = await start_publisher(f"{nginx.url}/cam2", seconds=30.0, fps=FPS, gop=FPS, realtime=True)
    try:
        node = await node_factory(relay={"idle_seconds": 2.0, "retry_first": 0.5, "retry_max": 1.0})
        room = await make_room(node)
        status, body = await _set_source(node, room, source_url=f"{nginx.url}/cam2", source_on_demand=True)
        assert status == 200 and body["room"]["source"]["on_demand"] is True, body
        assert body["room"]["source"]["state"] == "idle" and body["room"]["live"] is False
        # The first viewer's playlist request starts the pull and gets the playlist.
        async with node.http.get(node.url(f"/hls/{room['slug']}/index.m3u8")) as r:
            assert r.status == 200, await r.text()
            assert "#EXTINF" in await r.text()
        await wait_for(lambda: _watched_and_live(node, room), what="room live from the on-demand pull")
        # No more requests: after relay.idle_seconds the pull stops and the room is offline.
        await wait_for(lambda: _offline(node, room), timeout=15, what="on-demand pull stopped when idle")
        assert await _source_state(node, room) == "idle"
    finally:
        await pub.stop()
        await pub.proc.wait()
        await nginx.stop()


async def _watched_and_live(node: Any, room: dict[str, Any]) -> bool:
    """A viewer's playlist request (keeps the on-demand pull wanted), then: is the room live?"""
    async with node.http.get(node.url(f"/hls/{room['slug']}/index.m3u8")) as r:
        await r.read()
    return bool((await room_json(node, room["slug"]))["live"])


async def _offline(node: Any, room: dict[str, Any]) -> bool:
    return not (await room_json(node, room["slug"]))["live"]


async def test_pull_from_rtsp_server_plays_the_source_frames(node_factory: Any, tmp_path: Path) -> None:
    server = RtspServer(tmp_path, seconds=3.0, fps=FPS)
    await server.start()
    try:
        node = await node_factory(relay={"retry_first": 30.0, "retry_max": 30.0})
        room = await make_room(node)
        status, body = await _set_source(node, room, source_url=server.url)
        assert status == 200, body
        await wait_playlist(node, room["slug"], lambda t: "#EXT-X-ENDLIST" in t, timeout=40)
        frames, _, codecs = await read_hls_async(node.url(f"/hls/{room['slug']}/index.m3u8"))
        assert abs(frames - server.frames) <= 1 and codecs == ["h264"], (frames, server.frames, codecs)
    finally:
        await server.close()
