"""The transcoding ladder end to end: a real 720p30 RTMP publish, renditions made in a worker
process, the multivariant playlist and every rendition's segments read back over HTTP."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
from typing import Any

import av
import m3u8
import pytest
from helpers import make_room, room_json, rtmp_url, segment_uris, wait_for
from publisher import start_publisher

from livecast.config import ConfigError
from livecast.transcode.component import LADDERS

pytestmark = pytest.mark.slow  # real publishers and transcoding workers, for seconds

FPS = 30
LADDER = {"enabled": True, "renditions": [
    {"name": "480p", "height": 480, "video_bitrate": 800_000, "preset": "ultrafast"},
    {"name": "240p", "height": 240, "video_bitrate": 300_000, "preset": "ultrafast"},
]}
HLS = {"segment_duration": 1.0, "window": 20}
SIZES = {"source": (1280, 720), "480p": (854, 480), "240p": (426, 240)}


async def _get(node: Any, path: str) -> tuple[int, bytes]:
    async with node.http.get(node.url(path)) as r:
        return r.status, await r.read()


async def _rendition(node: Any, slug: str, name: str) -> tuple[list[float], bytes]:
    """(EXTINF durations, the whole media as one byte stream) of a finished rendition."""
    base = f"/hls/{slug}/" if name == "source" else f"/hls/{slug}/{name}/"
    status, body = await _get(node, base + "index.m3u8")
    assert status == 200, body
    playlist = m3u8.loads(body.decode())
    assert playlist.is_endlist
    data = b""
    if playlist.segment_map:
        status, init = await _get(node, base + playlist.segment_map[0].uri)
        assert status == 200
        data += init
    for uri in segment_uris(body.decode()):
        status, seg = await _get(node, base + uri)
        assert status == 200
        data += seg
    return [s.duration for s in playlist.segments], data


def _decode(data: bytes) -> tuple[int, set[tuple[int, int]]]:
    with av.open(io.BytesIO(data)) as container:
        sizes = set()
        frames = 0
        for frame in container.decode(video=0):
            frames += 1
            sizes.add((frame.width, frame.height))
        return frames, sizes


def _measured_bits(durations: list[float], data_sizes: list[int]) -> tuple[int, int]:
    rates = [size * 8 / d for size, d in zip(data_sizes, durations, strict=True)]
    return int(max(rates)), int(sum(data_sizes) * 8 / sum(durations))


async def _check_master(node: Any, slug: str) -> dict[str, Any]:
    status, body = await _get(node, f"/hls/{slug}/master.m3u8")
    assert status == 200, body
    master = m3u8.loads(body.decode())
    variants = {p.uri: p.stream_info for p in master.playlists}
    assert set(variants) == {"index.m3u8", "480p/index.m3u8", "240p/index.m3u8"}, body
    for uri, info in variants.items():
        name = "source" if uri == "index.m3u8" else uri.split("/")[0]
        assert info.resolution == SIZES[name]
        assert re.fullmatch(r"avc1\.[0-9a-f]{6},mp4a\.40\.2", info.codecs), info.codecs
        assert info.frame_rate == pytest.approx(FPS, abs=0.5)
        assert info.bandwidth >= info.average_bandwidth > 0
    return variants


async def _check_ll(node: Any, slug: str) -> None:
    """Every rendition's LL playlist reports the others, and same-numbered segments have the same parts."""
    parts: dict[str, dict[int, list[float]]] = {}
    for name, base in (("source", ""), ("480p", "480p/"), ("240p", "240p/")):
        status, body = await _get(node, f"/hls/{slug}/{base}index.m3u8")
        assert status == 200
        text = body.decode()
        reports = re.findall(r'#EXT-X-RENDITION-REPORT:URI="([^"]+)",LAST-MSN=\d+', text)
        assert len(reports) == 2, text
        playlist = m3u8.loads(text)
        parts[name] = {playlist.media_sequence + i: [p.duration for p in seg.parts]
                       for i, seg in enumerate(playlist.segments) if seg.uri and seg.parts}
    common = set(parts["source"]) & set(parts["480p"]) & set(parts["240p"])
    assert common, parts
    for msn in common:
        assert parts["source"][msn] == parts["480p"][msn] == parts["240p"][msn], (msn, parts)


async def _publish_and_check(node: Any, low_latency: bool = False) -> None:
    room = await make_room(node)
    slug = room["slug"]
    publisher = await start_publisher(rtmp_url(node, room["stream_key"]), seconds=4.0, fps=FPS, gop=FPS,
                                      width=1280, height=720, realtime=True)
    await wait_for(lambda: _master_ready(node, slug), timeout=30, what="three variants in the master playlist")
    variants = await wait_for(lambda: _bandwidth_matches(node, slug), timeout=20,
                              what="a master playlist unchanged while its segments are measured")
    body = await room_json(node, slug)
    assert {r["name"] for r in body["renditions"]} == {"source", "480p", "240p"}
    assert body["hls_url"] == f"/hls/{slug}/master.m3u8"
    if low_latency:
        await _check_ll(node, slug)
    async with node.http.get(node.url(f"/api/v1/rooms/{slug}/play")) as r:
        assert (await r.json())["hls_url"] == node.url(f"/hls/{slug}/master.m3u8")
    published = await publisher.result()
    await wait_for(lambda: _all_ended(node, slug), timeout=30, what="every rendition ended")
    durations: dict[str, list[float]] = {}
    for name, size in SIZES.items():
        extinf, data = await _rendition(node, slug, name)
        durations[name] = extinf
        frames, sizes = await asyncio.to_thread(_decode, data)
        assert sizes == {size}, (name, sizes)
        assert abs(frames - published.video_frames) <= 1, (name, frames, published.video_frames)
    assert durations["480p"] == durations["source"] == durations["240p"]
    assert variants["480p/index.m3u8"].average_bandwidth > variants["240p/index.m3u8"].average_bandwidth


async def _bandwidth_matches(node: Any, slug: str) -> dict[str, Any] | None:
    """The master's BANDWIDTH and AVERAGE-BANDWIDTH within 20% of the listed segments' bit rates."""
    _, before = await _get(node, f"/hls/{slug}/master.m3u8")
    variants = await _check_master(node, slug)
    measured = {}
    for uri in variants:
        base = f"/hls/{slug}/" + uri.rsplit("index.m3u8", 1)[0]
        _, body = await _get(node, base + "index.m3u8")
        playlist = m3u8.loads(body.decode())
        segments = [s for s in playlist.segments if s.uri]  # LL-HLS: not the one being made
        sizes = [len((await _get(node, base + s.uri))[1]) for s in segments]
        if len(sizes) < 2:
            return None
        measured[uri] = _measured_bits([s.duration for s in segments], sizes)
    _, after = await _get(node, f"/hls/{slug}/master.m3u8")
    if before != after:
        return None  # a segment came meanwhile: measure again
    for uri, info in variants.items():
        peak, average = measured[uri]
        assert info.bandwidth == pytest.approx(peak, rel=0.2), (uri, info.bandwidth, peak)
        assert info.average_bandwidth == pytest.approx(average, rel=0.2), (uri, info.average_bandwidth, average)
    return variants


async def _master_ready(node: Any, slug: str) -> bool:
    status, body = await _get(node, f"/hls/{slug}/master.m3u8")
    return status == 200 and body.count(b"#EXT-X-STREAM-INF") == 3


async def _all_ended(node: Any, slug: str) -> bool:
    for base in (f"/hls/{slug}/", f"/hls/{slug}/480p/", f"/hls/{slug}/240p/"):
        status, body = await _get(node, base + "index.m3u8")
        if status != 200 or b"#EXT-X-ENDLIST" not in body:
            return False
    return True


async def test_ladder_renditions_are_aligned_and_listed(node_factory: Any) -> None:
    node = await node_factory(transcode=LADDER, hls=HLS)
    await _publish_and_check(node)


async def test_ladder_with_low_latency_hls(node_factory: Any) -> None:
    node = await node_factory(transcode=LADDER, hls={**HLS, "low_latency": True, "part_target": 0.25})
    await _publish_and_check(node, low_latency=True)


async def test_a_killed_worker_is_restarted_and_the_source_goes_on(node_factory: Any) -> None:
    node = await node_factory(transcode=LADDER, hls=HLS)
    room = await make_room(node)
    slug = room["slug"]
    publisher = await start_publisher(rtmp_url(node, room["stream_key"]), seconds=9.0, fps=FPS, gop=FPS,
                                      width=1280, height=720, realtime=True)
    await wait_for(lambda: _master_ready(node, slug), timeout=30, what="three variants in the master playlist")
    ladder = node.node.app[LADDERS].get(slug)
    assert ladder is not None and ladder.worker_pid is not None
    pid = ladder.worker_pid
    _, before = await _get(node, f"/hls/{slug}/480p/index.m3u8")
    listed = len(m3u8.loads(before.decode()).segments)
    os.kill(pid, signal.SIGKILL)
    await wait_for(lambda: ladder.worker_pid not in (None, pid), timeout=10, what="a new worker")

    async def rendition_back() -> bool:
        _, body = await _get(node, f"/hls/{slug}/480p/index.m3u8")
        return len(m3u8.loads(body.decode()).segments) >= listed + 2

    await wait_for(rendition_back, timeout=10, what="new 480p segments after the restart")
    assert ladder.restarts == 1
    published = await publisher.result()
    await wait_for(lambda: _all_ended(node, slug), timeout=30, what="every rendition ended")
    extinf, data = await _rendition(node, slug, "source")
    frames, _ = await asyncio.to_thread(_decode, data)
    assert abs(frames - published.video_frames) <= 1  # the source never lost a frame
    _, body = await _get(node, f"/hls/{slug}/index.m3u8")
    assert b"#EXT-X-DISCONTINUITY\n" not in body
    assert all(d == pytest.approx(1.0, abs=0.05) for d in extinf), extinf


async def test_an_encoder_ffmpeg_does_not_offer_is_refused_at_start(node_factory: Any) -> None:
    missing = next((e for e in ("h264_nvenc", "h264_qsv", "h264_vaapi") if e not in av.codecs_available), None)
    if missing is None:
        pytest.skip("this FFmpeg offers every hardware encoder")
    with pytest.raises(ConfigError, match="not offered"):
        await node_factory(transcode={**LADDER, "encoder": missing})


async def test_a_rendition_that_falls_behind_is_dropped_and_reported(node_factory: Any) -> None:
    heavy = {"enabled": True, "max_lag": 1.0, "renditions": [
        {"name": "heavy", "height": 718, "video_bitrate": 3_000_000, "preset": "veryslow"},
        {"name": "240p", "height": 240, "video_bitrate": 300_000, "preset": "ultrafast"},
    ]}
    node = await node_factory(transcode=heavy, hls=HLS)
    room = await make_room(node)
    slug = room["slug"]
    publisher = await start_publisher(rtmp_url(node, room["stream_key"]), seconds=6.0, fps=FPS, gop=FPS,
                                      width=1280, height=720, realtime=True)
    ladders = node.node.app[LADDERS]
    await wait_for(lambda: (ladder := ladders.get(slug)) is not None and "heavy" in ladder.dropped,
                   timeout=20, what="the heavy rendition dropped")
    body = await room_json(node, slug)
    assert "rendition_dropped" in body["stream"]["warnings"]
    reported = {r["name"]: r for r in body["renditions"]}
    assert "behind real time" in reported["heavy"]["dropped"] and reported["240p"]["dropped"] is None
    async with node.http.get(node.url("/metrics")) as r:
        assert "livecast_transcode_renditions_dropped_total 1.0" in await r.text()
    published = await publisher.result()
    await wait_for(lambda: _ended(node, slug, ("", "240p/")), timeout=30, what="source and 240p ended")
    for name in ("source", "240p"):
        _, data = await _rendition(node, slug, name)
        frames, _ = await asyncio.to_thread(_decode, data)
        assert abs(frames - published.video_frames) <= 1, (name, frames)  # neither lost a frame
    status, body_bytes = await _get(node, f"/hls/{slug}/master.m3u8")
    assert status in (200, 404) and b"heavy" not in body_bytes


async def _ended(node: Any, slug: str, bases: tuple[str, ...]) -> bool:
    for base in bases:
        status, body = await _get(node, f"/hls/{slug}/{base}index.m3u8")
        if status != 200 or b"#EXT-X-ENDLIST" not in body:
            return False
    return True


async def test_a_source_the_ladder_cannot_transcode_is_still_in_the_master_playlist(node_factory: Any) -> None:
    node = await node_factory(transcode=LADDER, hls={**HLS, "container": "fmp4"})  # HEVC needs fMP4
    room = await make_room(node)
    slug = room["slug"]
    publisher = await start_publisher(rtmp_url(node, room["stream_key"]), seconds=8.0, fps=FPS, gop=FPS,
                                      video="libx265", realtime=True)

    async def master() -> str | None:
        status, body = await _get(node, f"/hls/{slug}/master.m3u8")
        return body.decode() if status == 200 else None

    text = await wait_for(master, timeout=20, what="a master playlist for an HEVC source")
    await publisher.stop()
    assert [p.uri for p in m3u8.loads(text).playlists] == ["index.m3u8"], text
    await publisher.result()
