"""Segmenter behaviour on awkward input: changes mid-stream, bad timestamps, garbage."""

from __future__ import annotations

import io
import random

import av
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livecast.hls.gate import MAX_PENDING_UNITS
from livecast.hls.segmenter import Segment, Segmenter
from livecast.core.media import Codec, MediaUnit, Track
from media_gen import cached_units, decode_count, demux_summary, shift_units
from test_hls_output import make_service, publish, read_back, video_units


def collect(kind: str = "mpegts", **hints: bool | None) -> tuple[Segmenter, list[Segment]]:
    segments: list[Segment] = []
    return Segmenter(kind, 2.0, segments.append, **hints), segments


def test_config_change_makes_a_new_template_and_a_discontinuity() -> None:
    first = cached_units(4)
    second = shift_units(list(cached_units(4, width=640, height=360)), 4000)
    service = make_service("fmp4")
    publish(service, list(first) + second)
    parsed, _, alone = read_back(service)
    segments = parsed["segments"]
    flags = [s["discontinuity"] for s in segments]
    assert flags == [False, False, True, False]
    maps = [s["map"] for s in segments]
    assert maps[0] == maps[1] != maps[2] == maps[3]
    # the second init describes the new picture size
    init = service.segment("room", maps[2])
    assert init is not None
    with av.open(io.BytesIO(init.data + service.segment("room", segments[2]["uri"]).data)) as container:
        assert (container.streams.video[0].width, container.streams.video[0].height) == (640, 360)
    assert decode_count(alone[3]) == 60


def test_identical_config_resend_is_ignored() -> None:
    units = list(cached_units(6))
    config = next(u for u in units if u.config and u.track is Track.VIDEO)
    resent = units[:200] + [config] + units[200:]
    service = make_service("mpegts")
    publish(service, resent)
    parsed, _, _ = read_back(service)
    assert not any(s["discontinuity"] for s in parsed["segments"])


def test_timestamps_restarting_within_a_session_start_a_new_timeline() -> None:
    units = list(cached_units(4))
    service = make_service("mpegts")
    publish(service, units + [u for u in units if not u.config])
    parsed, whole, _ = read_back(service)
    assert [s["discontinuity"] for s in parsed["segments"]] == [False, False, True, False]
    assert demux_summary(whole)["video"][0] == 2 * len(video_units(tuple(units)))


def test_small_backwards_steps_are_dropped_and_counted() -> None:
    units = list(cached_units(4))
    late = [
        MediaUnit(u.track, u.codec, u.dts - 200, u.pts - 200, False, u.payload) for u in units[100:110] if not u.config
    ]
    segmenter, segments = collect()
    for unit in units[:120] + late + units[120:]:
        segmenter.push(unit)
    segmenter.flush()
    assert segmenter.counters["dropped_backwards"] == len(late)
    data = b"".join(s.data for s in segments)
    assert demux_summary(data)["video"][0] == len(video_units(tuple(units)))


def test_audio_that_shows_up_late_is_added_with_a_discontinuity() -> None:
    video_only = [u for u in cached_units(6) if u.track is Track.VIDEO]
    with_audio = list(cached_units(6))
    audio_config = next(u for u in with_audio if u.config and u.track is Track.AUDIO)
    late = [u for u in with_audio if u.track is Track.VIDEO or u.dts >= 2500]
    stream = [u for u in video_only if u.dts < 2500] + [audio_config] + [u for u in late if u.dts >= 2500]
    service = make_service("mpegts")
    publish(service, stream, has_audio=False)
    parsed, _, alone = read_back(service)
    # 0-2 s, then 2-3 s cut early at the first keyframe after the audio config, then with audio
    assert [s["discontinuity"] for s in parsed["segments"]] == [False, False, True, False]
    assert [round(s["duration"]) for s in parsed["segments"]] == [2, 1, 2, 1]
    assert "audio" not in demux_summary(alone[1])
    assert demux_summary(alone[2])["audio"][0] > 0


def test_hinted_track_that_never_comes_is_given_up() -> None:
    units = [u for u in cached_units(6) if u.track is Track.VIDEO]
    segmenter, segments = collect(has_video=True, has_audio=True)
    for unit in units:
        segmenter.push(unit)
        if segments:
            break
    assert segments and segments[0].start_dts == units[1].dts  # nothing lost while waiting


def test_start_up_buffer_is_bounded() -> None:
    segmenter, segments = collect()
    payload = b"\0\0\0\x02\x09\x10"
    for index in range(MAX_PENDING_UNITS + 500):  # video without any config: never starts
        segmenter.push(MediaUnit(Track.VIDEO, Codec.H264, index, index, False, payload))
    assert segmenter.counters["dropped_overflow"] >= 1
    assert len(segmenter.gate._pending) <= MAX_PENDING_UNITS
    segmenter.flush()
    assert segments == []


def test_garbage_does_not_stop_the_stream() -> None:
    rng = random.Random(7)
    units = list(cached_units(6))
    mixed: list[MediaUnit] = []
    for index, unit in enumerate(units):
        mixed.append(unit)
        if index % 7 == 3 and not unit.config:
            track = rng.choice([Track.VIDEO, Track.AUDIO])
            codec = rng.choice(list(Codec))
            payload = rng.randbytes(rng.randint(0, 300))
            mixed.append(MediaUnit(track, codec, unit.dts, unit.pts - 5, rng.random() < 0.3, payload))
        if index == 250:
            mixed.append(MediaUnit(Track.VIDEO, Codec.H264, unit.dts, unit.dts, True, b"\x01garbage", config=True))
            mixed.append(MediaUnit(Track.AUDIO, Codec.AAC, unit.dts, unit.dts, True, b"", config=False))
            mixed.append(MediaUnit(Track.VIDEO, Codec.H264, -5, -5, True, b"\0\0\0\x01\x65"))
    service = make_service("mpegts")
    publish(service, mixed)
    parsed, whole, _ = read_back(service)
    assert len(parsed["segments"]) >= 3
    summary = demux_summary(whole)
    assert summary["video"][0] >= len(video_units(tuple(units))) - 2 * 30  # at most a GOP or two lost


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(
    st.tuples(
        st.sampled_from(list(Track)), st.sampled_from(list(Codec)), st.integers(-5, 5000), st.integers(-50, 50),
        st.booleans(), st.booleans(), st.binary(max_size=40),
    ),
    max_size=60,
))
def test_random_units_never_raise(items: list[tuple[Track, Codec, int, int, bool, bool, bytes]]) -> None:
    base = [u for u in cached_units(1) if u.config or u.dts < 100]
    segmenter, _ = collect(kind="fmp4")
    for unit in base:
        segmenter.push(unit)
    for track, codec, dts, cts, key, config, payload in items:
        segmenter.push(MediaUnit(track, codec, dts, dts + cts, key, payload, config))
    segmenter.flush()


def test_writer_swallows_everything() -> None:
    service = make_service("fmp4")
    writer = service.publish_started("room")
    writer.write(MediaUnit(Track.VIDEO, Codec.HEVC, 0, 0, True, b"\xff" * 10, config=True))
    writer.write(MediaUnit(Track.VIDEO, Codec.HEVC, 0, 0, True, b"\xff" * 10))
    writer.write(None)  # type: ignore[arg-type]
    writer.set_metadata({"videocodecid": 7, "audiocodecid": 10, "framerate": "x"})
    writer.set_metadata("not a dict")  # type: ignore[arg-type]
    service.publish_stopped("room", writer)
    assert service.playlist("room") is None  # nothing playable came in
    assert service.info("room") == {
        "container": "fmp4", "segments": 0, "media_sequence": 0, "target_duration": None, "ended": True, "bytes": 0,
    }


def test_stream_without_keyframes_is_still_cut() -> None:
    """A publisher that never sends another keyframe (intra refresh) still gets segments."""
    units = cached_units(35, fps=10, gop=1000, audio=False)
    segmenter, segments = collect(has_audio=False)
    for unit in units:
        segmenter.push(unit)
    segmenter.flush()
    assert [round(s.duration) for s in segments] == [30, 5]
    assert segmenter.counters["forced_cuts"] == 1


def test_a_bad_config_mid_stream_is_ignored() -> None:
    """Regression: an AudioSpecificConfig ADTS cannot express used to poison the TS muxer."""
    units = list(cached_units(6, video=None, audio="aac"))
    bad = MediaUnit(Track.AUDIO, Codec.AAC, 3000, 3000, True, bytes.fromhex("75120031bc"), config=True)
    stream = [u for u in units if u.dts < 3000] + [bad] + [u for u in units if u.dts >= 3000 and not u.config]
    segmenter, segments = collect(has_video=False)
    for unit in stream:
        segmenter.push(unit)
    segmenter.flush()
    assert segmenter.counters["template_errors"] == 1
    assert not any(s.discontinuity for s in segments)
    data = b"".join(s.data for s in segments)
    assert demux_summary(data)["audio"][0] >= len([u for u in units if not u.config]) - 2
