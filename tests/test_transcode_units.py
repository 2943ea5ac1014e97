"""The ladder's pure parts: rung sizes (never upscaled, aspect kept, even), H.264 framing and
codec strings, the wire format, the multivariant playlist text, and the [transcode] settings."""

from __future__ import annotations

import io

import av
import pytest

from livecast.config import ConfigError, RenditionSpec, load_settings
from livecast.hls.master import StreamInf, render_master
from livecast.transcode import h264, wire
from livecast.transcode.ladder import rungs

SPECS = [RenditionSpec("1080p", 1080, 5_000_000), RenditionSpec("720p", 720, 3_000_000),
         RenditionSpec("480p", 480, 1_200_000), RenditionSpec("241p", 241, 300_000)]


def test_rungs_never_upscale_and_keep_even_sizes_with_the_aspect_ratio() -> None:
    made = {r.name: (r.width, r.height) for r in rungs(SPECS, 1280, 720)}
    assert made == {"480p": (854, 480), "241p": (426, 240)}  # 1080p and 720p: not taller than the source
    portrait = {r.name: (r.width, r.height) for r in rungs(SPECS, 720, 1280)}
    assert portrait["720p"] == (404, 720) and all(w % 2 == 0 and h % 2 == 0 for w, h in portrait.values())


def test_annexb_to_avcc_and_codec_strings_from_a_real_encoder() -> None:
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = 320, 240, "yuv420p"
    enc.options = {"profile": "high", "level": "3.0"}
    enc.open()
    frame = av.VideoFrame(320, 240, "yuv420p")
    frame.pts = 0
    packets = list(enc.encode(frame)) + list(enc.encode(None))
    nals = h264.split_annexb(bytes(packets[0]))
    sps, pps = h264.parameter_sets(nals)
    record = h264.avcc_record(sps, pps)
    assert h264.codec_string(record) == "avc1.64001e"  # High profile, level 3.0
    avcc = h264.to_avcc(nals)
    size = int.from_bytes(avcc[:4], "big")
    assert avcc[4:4 + size] == nals[0] and b"\x00\x00\x01" not in avcc[:4]
    assert h264.audio_codec_string(bytes([0x12, 0x10])) == "mp4a.40.2"  # AAC LC
    with pytest.raises(ValueError):
        h264.codec_string(b"\x00")


def test_wire_messages_round_trip() -> None:
    data = wire.pack(wire.PACKET, b"abc", index=2, flags=wire.KEYFRAME, pts=-5, dts=2**40)
    stream = io.BytesIO(data + data[:5])
    msg = wire.read_message(stream)
    assert msg == wire.Message(wire.PACKET, 2, wire.KEYFRAME, -5, 2**40, b"abc") and msg.keyframe
    assert wire.read_message(stream) is None  # a cut message is the end


def test_master_playlist_lists_variants_by_bandwidth() -> None:
    text = render_master([StreamInf("240p/index.m3u8", 400_000, 350_000, 426, 240, 30.0, "avc1.42c015,mp4a.40.2"),
                          StreamInf("index.m3u8", 4_000_000, 3_500_000, 1280, 720, 29.97, "avc1.64001f,mp4a.40.2")])
    lines = text.decode().splitlines()
    assert lines[:3] == ["#EXTM3U", "#EXT-X-VERSION:6", "#EXT-X-INDEPENDENT-SEGMENTS"]
    assert lines[3] == ('#EXT-X-STREAM-INF:BANDWIDTH=4000000,AVERAGE-BANDWIDTH=3500000,RESOLUTION=1280x720,'
                        'FRAME-RATE=29.970,CODECS="avc1.64001f,mp4a.40.2"')
    assert lines[4] == "index.m3u8" and lines[6] == "240p/index.m3u8"


@pytest.mark.parametrize("renditions, message", [
    ([{"name": "source", "height": 240, "video_bitrate": 300_000}], "not 'source'"),
    ([{"name": "a", "height": 240, "video_bitrate": 300_000}] * 2, "unique"),
    ([{"name": "a", "height": 4, "video_bitrate": 300_000}], "height"),
    ([{"name": "a", "height": 240}], "needs name, height and video_bitrate"),
    ("nope", "array of tables"),
])
def test_bad_ladders_are_refused(renditions: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings = load_settings(None, environ={}, overrides={"transcode": {"renditions": renditions}})
        settings.validate()
