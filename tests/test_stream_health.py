"""Stream health in the room API: A/V drift, late packets, keyframe and bitrate warnings."""

from __future__ import annotations

import asyncio
import time

import pytest
from helpers import make_room, room_json, rtmp_url
from publisher import start_publisher

from livecast.core.media import Codec, MediaUnit, Track
from livecast.pipeline.hub import COLLAPSE_SECONDS, LiveStream, StreamHub, StreamStats


def _video(dts: int, key: bool = False, size: int = 1000) -> MediaUnit:
    return MediaUnit(Track.VIDEO, Codec.H264, dts, dts, key, b"x" * size)


def _audio(dts: int, size: int = 100) -> MediaUnit:
    return MediaUnit(Track.AUDIO, Codec.AAC, dts, dts, False, b"a" * size)


def test_drift_and_late_packets_per_track() -> None:
    stats = StreamStats()
    assert stats.av_drift_ms is None
    stats.add(_video(0, key=True))
    stats.add(_audio(0))
    stats.add(_video(40))
    stats.add(_audio(100))
    assert stats.av_drift_ms == 60
    stats.add(_audio(90))  # backwards on audio: late
    stats.add(_video(50))  # forward on video even though behind audio: not late
    stats.add(_video(45))  # backwards on video: late
    assert stats.late == 2
    assert stats.av_drift_ms == 50  # latest in-order dts of each track


def test_bitrate_collapse_needs_every_recent_second_low() -> None:
    stats = StreamStats()
    dts = 0
    for _ in range(10 * 25):  # 10 s at 25 fps, 25 kB/s
        stats.add(_video(dts, key=dts % 1000 == 0))
        dts += 40
    assert not stats.bitrate_collapsed()
    for _ in range((COLLAPSE_SECONDS - 1) * 25):  # 2 s at 1 % of that
        stats.add(_video(dts, size=10))
        dts += 40
    assert not stats.bitrate_collapsed()
    for _ in range(2 * 25):  # past COLLAPSE_SECONDS
        stats.add(_video(dts, size=10))
        dts += 40
    assert stats.bitrate_collapsed()
    for _ in range(25):  # recovers
        stats.add(_video(dts, size=2000))
        dts += 40
    assert not stats.bitrate_collapsed()


def test_info_has_health_fields_and_no_peer() -> None:
    hub = StreamHub()
    hub.keyframe_limit = 1.0
    stream, _ = hub.start("room", "10.1.2.3:5555")
    for i in range(100):  # a keyframe every 2 s
        stream.write(_video(i * 40, key=i % 50 == 0))
    info = stream.info()
    assert info["keyframe_interval"] == 2.0
    assert info["warnings"] == ["keyframe_interval"]
    assert info["late_packets"] == 0 and info["av_drift_ms"] is None
    assert "10.1.2.3" not in str(info)
    assert LiveStream("x", "p").warnings() == []  # no limit set: no keyframe warning


@pytest.mark.slow
async def test_long_gop_raises_keyframe_warning_in_room_api(node_factory) -> None:
    node = await node_factory(hls={"segment_duration": 1.0})
    room = await make_room(node)
    fps = 10
    publisher = await start_publisher(rtmp_url(node, room["stream_key"]), seconds=7.0, fps=fps, gop=fps * 5,
                                      realtime=True)
    try:
        deadline = time.monotonic() + 15
        stream = None
        while time.monotonic() < deadline:
            stream = (await room_json(node, room["slug"]))["stream"]
            if stream and stream["keyframe_interval"]:
                break
            await asyncio.sleep(0.2)
        assert stream is not None and stream["keyframe_interval"] == 5.0, stream
        assert "keyframe_interval" in stream["warnings"]
        assert "bitrate_collapse" not in stream["warnings"]
        assert isinstance(stream["av_drift_ms"], int) and abs(stream["av_drift_ms"]) < 1000
        assert stream["late_packets"] == 0 and stream["dropped_packets"] == 0
        assert "peer" not in stream  # anonymous view
        owner_view = (await room_json(node, room["slug"], headers=room["headers"]))["stream"]
        assert owner_view["peer"].startswith("127.0.0.1:")  # the owner sees the publisher's address
    finally:
        await publisher.stop()
        await asyncio.wait_for(publisher.proc.wait(), 30)
