"""FLV templates and the muxer helpers."""

from __future__ import annotations

import av
import pytest
from media_gen import audio_tag_to_unit, cached_units, demux_summary, video_tag_to_unit

from livecast.core.media import Codec, MediaUnit, Track
from livecast.hls.muxer import SegmentMuxer, split_init
from livecast.hls.template import (
    TemplateError,
    aac_config,
    check_config,
    open_template,
)
from livecast.media.flv import audio_tag_body, video_tag_body


def first(units: tuple[MediaUnit, ...], track: Track, config: bool) -> MediaUnit:
    return next(u for u in units if u.track is track and u.config == config)


def test_aac_config() -> None:
    assert aac_config(bytes([0x11, 0x90])) == (48000, 2)  # LC, 48 kHz, stereo
    assert aac_config(bytes([0x12, 0x08])) == (44100, 1)  # LC, 44.1 kHz, mono
    explicit = (2 << 35) | (15 << 31) | (50000 << 7) | (2 << 3)  # explicit 50 kHz
    assert aac_config(explicit.to_bytes(5, "big")) == (50000, 2)
    assert aac_config(b"\x11") is None


@pytest.mark.parametrize("unit", [
    MediaUnit(Track.VIDEO, Codec.H264, 100, 166, True, b"\0\0\0\x01\x65"),
    MediaUnit(Track.VIDEO, Codec.H264, 100, 100, True, b"\x01\x64", config=True),
    MediaUnit(Track.VIDEO, Codec.HEVC, 100, 133, False, b"\0\0\0\x01\x02"),
    MediaUnit(Track.VIDEO, Codec.HEVC, 100, 100, True, b"\x01\x01", config=True),
    MediaUnit(Track.VIDEO, Codec.AV1, 100, 100, True, b"\x12\x00"),
    MediaUnit(Track.VIDEO, Codec.AV1, 100, 100, True, b"\x81\x00", config=True),
])
def test_video_tags_round_trip(unit: MediaUnit) -> None:
    assert video_tag_to_unit(unit.dts, video_tag_body(unit)) == unit


@pytest.mark.parametrize("unit", [
    MediaUnit(Track.AUDIO, Codec.AAC, 5, 5, True, b"\x11\x90", config=True),
    MediaUnit(Track.AUDIO, Codec.AAC, 5, 5, True, b"\x21\x00"),
    MediaUnit(Track.AUDIO, Codec.MP3, 5, 5, True, b"\xff\xfb"),
    MediaUnit(Track.AUDIO, Codec.OPUS, 5, 5, True, b"OpusHead", config=True),
    MediaUnit(Track.AUDIO, Codec.OPUS, 5, 5, True, b"\xfc"),
])
def test_audio_tags_round_trip(unit: MediaUnit) -> None:
    assert audio_tag_to_unit(unit.dts, audio_tag_body(unit)) == unit


@pytest.mark.parametrize("video", ["h264", "hevc"])
def test_template_learns_picture_size_and_sample_rate(video: str) -> None:
    units = cached_units(6, video=video)
    template = open_template(first(units, Track.VIDEO, True), first(units, Track.VIDEO, False),
                             first(units, Track.AUDIO, True), None)
    try:
        assert template.video is not None and template.audio is not None
        assert (template.video.codec_context.width, template.video.codec_context.height) == (320, 240)
        assert template.sample_rate == 48000
    finally:
        template.close()


@pytest.mark.parametrize("kwargs", [{}, {"video": "hevc", "audio": "opus"}, {"audio": "mp3"}])
def test_template_keeps_codec_parameters_not_the_demuxer(kwargs: dict[str, str]) -> None:
    # An open FLV demuxer holds ~2 MiB per publisher: the template keeps copies of its streams.
    units = cached_units(2, **kwargs)
    configs = [u for u in units if u.config]
    template = open_template(first(units, Track.VIDEO, True), first(units, Track.VIDEO, False),
                             next((u for u in configs if u.track is Track.AUDIO), None),
                             first(units, Track.AUDIO, False))
    try:
        assert isinstance(template.container, av.container.OutputContainer)
        assert template.container.format.name == "null"
        assert template.video is not None and template.audio is not None
        assert (template.video.codec_context.width, template.video.codec_context.height) == (320, 240)
        muxer = SegmentMuxer(template, "fmp4")
        for unit in units:
            if not unit.config:
                assert muxer.add(unit)
        summary = demux_summary(muxer.finish())
        assert set(summary) == {"video", "audio"}
    finally:
        template.close()


def test_template_needs_the_keyframe_for_the_size() -> None:
    units = cached_units(6)
    with pytest.raises(TemplateError):
        open_template(first(units, Track.VIDEO, True), None, None, None)
    with pytest.raises(TemplateError):
        garbage = MediaUnit(Track.VIDEO, Codec.H264, 0, 0, True, b"\x01garbage", config=True)
        open_template(garbage, MediaUnit(Track.VIDEO, Codec.H264, 0, 0, True, b"\0\0\0\x01\x65"), None, None)


def test_fmp4_segments_share_one_init() -> None:
    units = cached_units(6)
    template = open_template(first(units, Track.VIDEO, True), first(units, Track.VIDEO, False),
                             first(units, Track.AUDIO, True), None)
    media = [u for u in units if not u.config]
    outputs = []
    for part in (media[:200], media[200:]):
        muxer = SegmentMuxer(template, "fmp4")
        for unit in part:
            muxer.add(unit)
        outputs.append(split_init(muxer.finish()))
    template.close()
    assert outputs[0][0] == outputs[1][0] and outputs[0][0][4:8] == b"ftyp"
    assert outputs[0][1][4:8] == b"moof" and outputs[1][1][4:8] == b"moof"
    assert b"mfra" not in outputs[1][1]  # no trailer index in media segments


@pytest.mark.parametrize("unit", [
    # SPS cut short
    MediaUnit(Track.VIDEO, Codec.H264, 0, 0, True, b"\x01\x64\x00\x1f\xff\xe1\x00\x40\x67", config=True),
    MediaUnit(Track.VIDEO, Codec.H264, 0, 0, True, b"\x02\x64\x00\x1f\xff\xe0\x00", config=True),  # version 2
    MediaUnit(Track.VIDEO, Codec.HEVC, 0, 0, True, b"\x01" + bytes(21) + b"\x01\x20\x00\x01\x00\x10", config=True),
    MediaUnit(Track.VIDEO, Codec.AV1, 0, 0, True, b"\x12\x00\x0a\x0b", config=True),
    MediaUnit(Track.AUDIO, Codec.AAC, 0, 0, True, bytes.fromhex("75120031bc"), config=True),  # object type 14
    MediaUnit(Track.AUDIO, Codec.AAC, 0, 0, True, b"\x12", config=True),
    MediaUnit(Track.AUDIO, Codec.OPUS, 0, 0, True, b"OpusHead\x01\x02", config=True),
])
def test_malformed_config_records_are_rejected(unit: MediaUnit) -> None:
    with pytest.raises(TemplateError):
        check_config(unit)


def test_real_config_records_pass() -> None:
    for kwargs in ({}, {"video": "hevc", "audio": "opus"}, {"video": "av1", "audio": False}):
        for unit in cached_units(1, **kwargs):
            if unit.config:
                check_config(unit)
