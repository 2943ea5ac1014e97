"""Real media in, HLS out, read back with PyAV: frame counts, durations, cut points."""

from __future__ import annotations

import io
import math
from pathlib import Path

import av
import pytest

from livecast.config import Settings
from livecast.hls import HlsService
from livecast.core.media import MediaUnit, Track
from media_gen import cached_units, decode_count, demux_summary, parse_playlist

FPS = 30


def make_service(container: str = "mpegts", **hls: object) -> HlsService:
    settings = Settings()
    settings.hls.container = container
    for key, value in hls.items():
        setattr(settings.hls, key, value)
    return HlsService(settings)


def publish(
    service: HlsService, units: tuple[MediaUnit, ...] | list[MediaUnit], slug: str = "room", **hints: bool
) -> None:
    writer = service.publish_started(slug, **hints)
    for unit in units:
        writer.write(unit)
    service.publish_stopped(slug, writer)


def read_back(service: HlsService, slug: str = "room") -> tuple[dict, bytes, list[bytes]]:
    """The parsed playlist, the whole stream (init + segments) and each segment alone."""
    raw = service.playlist(slug)
    assert raw is not None
    parsed = parse_playlist(raw.decode())
    alone = []
    whole = b""
    current_map = None
    for segment in parsed["segments"]:
        init = b""
        if segment["map"] is not None:
            item = service.segment(slug, segment["map"])
            assert item is not None and item.content_type == "video/mp4"
            init = item.data
            if segment["map"] != current_map:
                whole += init
                current_map = segment["map"]
        item = service.segment(slug, segment["uri"])
        assert item is not None
        assert item.duration == segment["duration"]
        whole += item.data
        alone.append(init + item.data)
    return parsed, whole, alone


def video_units(units: tuple[MediaUnit, ...]) -> list[MediaUnit]:
    return [u for u in units if u.track is Track.VIDEO and not u.config]


def check_av_stream(container: str, video: str = "h264", bframes: int = 0) -> None:
    units = cached_units(6, video=video, bframes=bframes)
    service = make_service(container)
    publish(service, units)
    parsed, whole, alone = read_back(service)
    sent = video_units(units)
    expected_kind = "fmp4" if container == "fmp4" or video != "h264" else "mpegts"
    ext = ".m4s" if expected_kind == "fmp4" else ".ts"
    segments = parsed["segments"]
    assert parsed["ended"] and all(s["uri"].endswith(ext) for s in segments)
    assert parsed["tags"]["EXT-X-VERSION"] == ("7" if expected_kind == "fmp4" else "3")
    # cut at the 1 s keyframes once 2 s are reached: 3 segments of 2 s
    assert [s["duration"] for s in segments] == pytest.approx([2.0, 2.0, 2.0], abs=0.04)
    assert int(parsed["tags"]["EXT-X-TARGETDURATION"]) == max(round(s["duration"]) for s in segments) == 2
    total = sum(s["duration"] for s in segments)
    span = (max(u.pts for u in sent) - min(u.pts for u in sent)) / 1000 + 1 / FPS
    assert abs(total - span) <= 1 / FPS
    summary = demux_summary(whole)
    assert summary["video"][0] == len(sent)
    # audio before the first keyframe is dropped (the AAC priming frame here)
    start = sent[0].dts
    assert summary["audio"][0] == sum(1 for u in units if u.track is Track.AUDIO and not u.config and u.dts >= start)
    assert decode_count(whole) == len(sent)
    # every segment stands alone and starts with a keyframe
    for data in alone:
        with av.open(io.BytesIO(data)) as single:
            first = next(p for p in single.demux(single.streams.video[0]) if p.size)
            assert first.is_keyframe
        assert decode_count(data) == FPS * 2


@pytest.mark.parametrize("container", ["mpegts", "fmp4"])
def test_h264_aac_plays_back(container: str) -> None:
    check_av_stream(container)


@pytest.mark.parametrize("container", ["mpegts", "fmp4"])
def test_h264_with_b_frames(container: str) -> None:
    check_av_stream(container, bframes=2)


@pytest.mark.slow
def test_hevc_goes_to_fmp4() -> None:
    check_av_stream("mpegts", video="hevc")


def test_av1_goes_to_fmp4() -> None:
    units = cached_units(4, video="av1", audio=False)
    service = make_service("mpegts")
    publish(service, units)
    parsed, whole, _ = read_back(service)
    assert parsed["segments"][0]["map"] is not None
    assert decode_count(whole) == len(video_units(units)) == 4 * FPS


@pytest.mark.parametrize("container", ["mpegts", "fmp4"])
def test_playlist_reads_with_ffmpeg_hls_demuxer(container: str, tmp_path: Path) -> None:
    units = cached_units(6)
    service = make_service(container)
    publish(service, units)
    raw = service.playlist("room")
    assert raw is not None
    (tmp_path / "index.m3u8").write_bytes(raw)
    parsed = parse_playlist(raw.decode())
    for name in {s["uri"] for s in parsed["segments"]} | {s["map"] for s in parsed["segments"] if s["map"]}:
        item = service.segment("room", name)
        assert item is not None
        (tmp_path / name).write_bytes(item.data)
    with av.open(str(tmp_path / "index.m3u8")) as container_:
        frames = sum(1 for p in container_.demux(container_.streams.video[0]) if p.size)
    assert frames == len(video_units(units))


@pytest.mark.parametrize("codec", ["aac", "opus", "mp3"])
def test_audio_only(codec: str) -> None:
    units = cached_units(6, video=None, audio=codec)
    service = make_service("mpegts")
    publish(service, units)
    parsed, whole, alone = read_back(service)
    durations = [s["duration"] for s in parsed["segments"]]
    # cut by duration (within half a frame of 2 s); the encoder's padding makes a short tail
    assert all(abs(d - 2.0) < 0.03 for d in durations[:3]) and sum(durations[3:]) < 0.1
    sent = [u for u in units if not u.config]
    assert demux_summary(whole)["audio"][0] == len(sent)
    assert "video" not in demux_summary(whole)
    assert decode_count(alone[1], "audio") > 0


def test_video_only_without_hints_starts_after_detection() -> None:
    units = cached_units(6, audio=False)
    service = make_service("fmp4")
    publish(service, units)
    parsed, whole, _ = read_back(service)
    assert len(parsed["segments"]) == 3
    summary = demux_summary(whole)
    assert "audio" not in summary and summary["video"][0] == 6 * FPS


def test_hints_start_without_waiting() -> None:
    """With has_audio=False a video-only stream starts at once: the first segment is out
    as soon as the second keyframe after 2 s arrives."""
    units = cached_units(6, audio=False)
    service = make_service("mpegts")
    writer = service.publish_started("room", has_video=True, has_audio=False)
    for unit in units:
        writer.write(unit)
        if unit.track is Track.VIDEO and unit.keyframe and not unit.config and unit.dts >= 2000:
            break
    assert service.playlist("room") is not None


def test_segment_durations_follow_the_gop() -> None:
    """A 3 s GOP with a 2 s target: segments are cut at the next keyframe, 3 s long."""
    units = cached_units(9, gop=3 * FPS, audio=False)
    service = make_service("mpegts")
    publish(service, units, has_audio=False)
    parsed, _, _ = read_back(service)
    assert [s["duration"] for s in parsed["segments"]] == pytest.approx([3.0, 3.0, 3.0], abs=0.04)
    assert parsed["tags"]["EXT-X-TARGETDURATION"] == "3"


def test_program_date_time_advances_with_media_time() -> None:
    units = cached_units(6)
    service = make_service("mpegts")
    publish(service, units)
    parsed, _, _ = read_back(service)
    from datetime import datetime

    stamps = [datetime.fromisoformat(s["pdt"].replace("Z", "+00:00")).timestamp() for s in parsed["segments"]]
    steps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert steps == pytest.approx([s["duration"] for s in parsed["segments"][:-1]], abs=0.002)
    assert not math.isnan(stamps[0])
