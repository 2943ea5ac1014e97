"""FLV tag bodies (classic and Enhanced RTMP) to MediaUnits, and timestamp unwrapping."""

from __future__ import annotations

import pytest

from livecast.core.media import Codec, Track
from livecast.media.flv import FlvToUnits, TimestampUnwrapper, UnsupportedCodec


def test_unwrapper_counts_past_32_bits_and_tolerates_late_packets() -> None:
    u = TimestampUnwrapper()
    assert u(0xFFFFFF00) == 0xFFFFFF00
    assert u(0x00000010) == (1 << 32) + 0x10          # wrapped
    assert u(0xFFFFFFF0) == 0xFFFFFFF0                # a late packet from before the wrap
    assert u(0x00000020) == (1 << 32) + 0x20
    assert u(0x7FFFFFFF) == (1 << 32) + 0x7FFFFFFF


def test_avc_sequence_header_nalu_and_composition_offset() -> None:
    c = FlvToUnits()
    cfg = c.video(0, bytes([0x17, 0x00, 0, 0, 0]) + b"AVCC")
    assert cfg and cfg.config and cfg.codec is Codec.H264 and cfg.payload == b"AVCC"
    key = c.video(40, bytes([0x17, 0x01, 0x00, 0x00, 0x50]) + b"frame")
    assert key and key.keyframe and key.dts == 40 and key.pts == 120 and key.payload == b"frame"
    inter = c.video(80, bytes([0x27, 0x01, 0xFF, 0xFF, 0xD8]) + b"x")  # cts -40
    assert inter and not inter.keyframe and inter.pts == 40
    assert c.video(90, bytes([0x17, 0x02, 0, 0, 0])) is None  # end of sequence is skipped


def test_enhanced_hevc_and_av1() -> None:
    c = FlvToUnits()
    seq = c.video(0, bytes([0x90]) + b"hvc1" + b"HVCC")
    assert seq and seq.config and seq.codec is Codec.HEVC and seq.payload == b"HVCC"
    coded = c.video(33, bytes([0x91]) + b"hvc1" + bytes([0, 0, 33]) + b"nal")
    assert coded and coded.keyframe and coded.pts == 66 and coded.payload == b"nal"
    coded_x = c.video(66, bytes([0xA3]) + b"hvc1" + b"nal2")
    assert coded_x and not coded_x.keyframe and coded_x.pts == 66 and coded_x.payload == b"nal2"
    av1 = c.video(0, bytes([0x91]) + b"av01" + b"obu")
    assert av1 and av1.codec is Codec.AV1 and av1.payload == b"obu" and av1.pts == 0


def test_aac_legacy_and_enhanced() -> None:
    c = FlvToUnits()
    cfg = c.audio(0, bytes([0xAF, 0x00, 0x12, 0x10]))
    assert cfg and cfg.config and cfg.track is Track.AUDIO and cfg.payload == b"\x12\x10"
    raw = c.audio(23, bytes([0xAF, 0x01]) + b"aac")
    assert raw and raw.payload == b"aac" and raw.dts == raw.pts == 23
    ex = c.audio(0, bytes([0x90]) + b"mp4a" + b"ASC")
    assert ex and ex.config and ex.codec is Codec.AAC


@pytest.mark.parametrize(
    "body, track",
    [
        (bytes([0x12, 0x00, 0, 0, 0]), "video"),       # Sorenson H.263
        (bytes([0x1C, 0x00, 0, 0, 0]), "video"),       # codec id 12 (non-standard HEVC)
        (bytes([0x90]) + b"vp09" + b"x", "video"),
        (bytes([0x2F, 0x00]), "audio"),                 # MP3
        (bytes([0x90]) + b"Opus" + b"x", "audio"),
    ],
)
def test_unsupported_codecs_are_named(body: bytes, track: str) -> None:
    c = FlvToUnits()
    with pytest.raises(UnsupportedCodec) as err:
        (c.video if track == "video" else c.audio)(0, body)
    assert "not supported" in str(err.value)


def test_truncated_bodies_are_skipped_not_fatal() -> None:
    c = FlvToUnits()
    for body in (b"", b"\x17", b"\x17\x01\x00", bytes([0x91]) + b"hv", bytes([0x91]) + b"hvc1\x00"):
        assert c.video(0, body) is None
    assert c.audio(0, b"\xaf") is None
    assert c.skipped >= 6
