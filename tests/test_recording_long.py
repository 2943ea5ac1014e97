"""The issue's figures on ONE long real-time recorded publish, shared by this module's tests:
a 60 s broadcast (1 s GOPs and segments, a live playlist window of 3) with recording on.
While it is live, the module's fixture sends comments at known moments, reads the DVR
playlist and a segment from the first minute, and clips the last 20 s; the tests then check
each part against what was sent. ``LIVECAST_RECORDING_LONG_SECONDS`` shortens the broadcast
for a quick local run (the clip and the DVR checks need at least 30 s)."""

from __future__ import annotations

import asyncio
import io
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
import av
import pytest
import pytest_asyncio

from conftest import Node, make_settings
from helpers import make_room, register_and_login, rtmp_url, wait_for
from livecast.server import start_node
from publisher import Published, read_hls_async, start_publisher
from test_recording import FPS, _decode_mp4, _finished, _recordings

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(300)]

SECONDS = float(os.environ.get("LIVECAST_RECORDING_LONG_SECONDS", "60"))
CLIP_SECONDS = 20
GOP = 1.0  # the publisher's keyframe interval (s): a clip starts on a keyframe
COMMENTS = (("early", 2.0), ("later", SECONDS - 12.0))  # (text, seconds into the recording)


@dataclass
class Broadcast:
    node: Node
    slug: str
    sent: Published | None = None
    recording: dict[str, Any] = field(default_factory=dict)
    comments: list[tuple[str, float]] = field(default_factory=list)  # (text, wall time sent)
    live_playlist: str = ""
    dvr_playlist: str = ""
    dvr_first_frames: int = 0
    clip: dict[str, Any] = field(default_factory=dict)


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def broadcast(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Broadcast]:
    settings = make_settings(tmp_path_factory.mktemp("long") / "data",
                             recording={"enabled": True, "min_free_bytes": 0},
                             hls={"segment_duration": 1.0, "window": 3})
    node = Node(await start_node(settings), settings, aiohttp.ClientSession())
    try:
        room = await make_room(node)
        b = Broadcast(node, room["slug"])
        viewer = await register_and_login(node)
        publisher = await start_publisher(rtmp_url(node, room["stream_key"]), seconds=SECONDS, fps=FPS,
                                          gop=int(GOP * FPS), realtime=True)
        try:
            await _while_live(b, viewer)
        finally:
            b.sent = await publisher.result(timeout=SECONDS + 60)
        b.recording = await _finished(node, b.slug)
        yield b
    finally:
        await node.stop()


async def _while_live(b: Broadcast, viewer: dict[str, Any]) -> None:
    """Comments at known moments, the DVR playlist with a segment of the first minute, and a
    clip of the last 20 s, all while the room is live."""
    from test_chat_support import connect, next_frame, post

    node, slug = b.node, b.slug
    async with node.http.get(node.url(f"/hls/{slug}/dvr.m3u8")) as r:
        assert r.status == 404  # not live yet
    ws, _ = await connect(node, slug, viewer)
    try:
        async def started() -> float | None:
            found = await _recordings(node, slug)
            return _ts(found[0]["started_at"]) if found else None

        began = float(await wait_for(started, timeout=20, what="the recording to start"))
        for text, at in COMMENTS:
            await wait_for(lambda at=at: time.time() >= began + at, timeout=SECONDS, what=f"{at} s in")
            assert (await post(ws, text))["text"] == text
            b.comments.append((text, time.time()))
        await ws.send_json({"type": "gift", "gift": "rose", "quantity": 1})
        await next_frame(ws, "gift")
    finally:
        await ws.close()

    async def recorded(seconds: float) -> bool:
        found = await _recordings(node, slug)
        return bool(found) and found[0]["duration"] >= seconds

    await wait_for(lambda: recorded(CLIP_SECONDS + 5), timeout=SECONDS, what="25 recorded seconds")
    async with node.http.post(node.url(f"/api/v1/rooms/{slug}/clips"), json={"seconds": CLIP_SECONDS},
                              headers=viewer["headers"]) as r:
        assert r.status == 201, await r.text()
        b.clip = (await r.json())["clip"]
    async with node.http.get(node.url(f"/hls/{slug}/dvr.m3u8")) as r:
        assert r.status == 200
        b.dvr_playlist = await r.text()
    async with node.http.get(node.url(f"/hls/{slug}/index.m3u8")) as r:
        b.live_playlist = await r.text()
    first = next(line for line in b.dvr_playlist.splitlines() if line.startswith("/vod/"))
    async with node.http.get(node.url(first)) as r:
        assert r.status == 200
        b.dvr_first_frames = await asyncio.to_thread(_video_frames, await r.read())


def _video_frames(segment: bytes) -> int:
    """Decoded video frames of one MPEG-TS segment."""
    with av.open(io.BytesIO(segment), format="mpegts") as container:
        return sum(1 for _ in container.decode(container.streams.video[0]))


async def test_a_long_real_time_publish_gives_a_complete_recording(broadcast: Broadcast) -> None:
    """The VOD playlist, read by PyAV, has the frames that were sent (within one) and the same
    duration; download.mp4 decodes with the same frame count."""
    node, recording, sent = broadcast.node, broadcast.recording, broadcast.sent
    assert sent is not None and sent.seconds >= SECONDS - 1
    assert recording["status"] == "complete" and abs(recording["duration"] - sent.seconds) < 0.2
    frames, duration, codecs = await read_hls_async(node.url(recording["playlist_url"]), timeout=120)
    assert abs(frames - sent.video_frames) <= 1, (frames, sent)
    assert abs(duration - sent.seconds) <= 1.5 / FPS, (duration, sent)
    assert "h264" in codecs and "aac" in codecs
    async with node.http.get(node.url(f"/vod/{recording['id']}/download.mp4")) as r:
        assert r.status == 200
        decoded, seconds = await asyncio.to_thread(_decode_mp4, await r.read())
    assert abs(decoded - sent.video_frames) <= 1, (decoded, sent)
    assert abs(seconds - sent.seconds) <= 1.5 / FPS


async def test_a_clip_of_the_last_20_s_of_a_live_room_lasts_20_s(broadcast: Broadcast) -> None:
    clip = broadcast.clip
    assert clip["recording"] == broadcast.recording["id"]
    assert abs(clip["duration"] - CLIP_SECONDS) <= GOP
    async with broadcast.node.http.get(broadcast.node.url(clip["url"])) as r:
        assert r.status == 200 and r.headers["Content-Type"] == "video/mp4"
        frames, seconds = await asyncio.to_thread(_decode_mp4, await r.read())
    assert abs(seconds - CLIP_SECONDS) <= GOP + 1 / FPS, seconds
    assert abs(frames - seconds * FPS) <= 1


async def test_dvr_serves_the_first_minute_while_the_live_playlist_keeps_its_window(broadcast: Broadcast) -> None:
    dvr, live = broadcast.dvr_playlist, broadcast.live_playlist
    assert "#EXT-X-PLAYLIST-TYPE:EVENT" in dvr and "#EXT-X-ENDLIST" not in dvr
    assert "#EXT-X-MEDIA-SEQUENCE:0" in dvr and dvr.count("#EXTINF") >= CLIP_SECONDS + 5
    assert live.count("#EXTINF") <= 3 and "#EXT-X-MEDIA-SEQUENCE:0" not in live
    # the broadcast's first segment (media sequence 0), fetched and decoded while live
    assert abs(broadcast.dvr_first_frames - GOP * FPS) <= 1, broadcast.dvr_first_frames


async def test_chat_replay_places_comments_at_their_media_time(broadcast: Broadcast) -> None:
    node, recording = broadcast.node, broadcast.recording
    began = _ts(recording["started_at"])
    async with node.http.get(node.url(f"/api/v1/recordings/{recording['id']}/chat")) as r:
        assert r.status == 200
        events = (await r.json())["events"]
    comments = {e["text"]: e for e in events if e["type"] == "comment"}
    for text, wall in broadcast.comments:
        assert abs(comments[text]["offset"] - (wall - began)) < 1.0, (comments[text], wall - began)
    (first, t1), (second, t2) = broadcast.comments
    assert abs(comments[second]["offset"] - comments[first]["offset"] - (t2 - t1)) < 0.5
    async with node.http.get(node.url(f"/api/v1/recordings/{recording['id']}/chat"),
                             params={"from": comments[second]["offset"] - 0.01, "to": SECONDS + 10}) as r:
        later = [e.get("text") for e in (await r.json())["events"]]
    assert first not in later and second in later
    assert [e["type"] for e in events].count("gift") == 1
    async with node.http.get(node.url(f"/api/v1/recordings/{recording['id']}/chat?from=-1")) as r:
        assert r.status == 400 and (await r.json())["error"]["field"] == "from"
