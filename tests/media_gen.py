"""Real encoded test media, generated in memory with PyAV (no numpy, no files).

``make_flv`` encodes a moving test pattern (and a tone) into an FLV file;
``flv_tags`` splits an FLV file into tags; ``flv_to_units`` turns those tags into
``MediaUnit``s the way an RTMP ingest would (legacy FLV for H.264/AAC/MP3, Enhanced
RTMP tags for HEVC/AV1/Opus, which is what FFmpeg's flv muxer writes for them).
"""

from __future__ import annotations

import functools
import io
import math
import os
import struct
from array import array
from fractions import Fraction

import av

from livecast.core.media import Codec, MediaUnit, Track

FLV_AUDIO = 8
FLV_VIDEO = 9
FLV_SCRIPT = 18

os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1: errors only

_VIDEO_ENCODERS = {"h264": "libx264", "hevc": "libx265", "av1": "libsvtav1"}
_AUDIO_ENCODERS = {"aac": "aac", "mp3": "libmp3lame", "opus": "libopus"}
_FOURCC_VIDEO = {b"avc1": Codec.H264, b"hvc1": Codec.HEVC, b"av01": Codec.AV1}
_FOURCC_AUDIO = {b"Opus": Codec.OPUS, b"mp4a": Codec.AAC, b".mp3": Codec.MP3}


def pattern_frame(index: int, width: int, height: int) -> av.VideoFrame:
    """A diagonal gradient that moves with ``index`` so consecutive frames differ."""
    frame = av.VideoFrame(width, height, "yuv420p")
    for number, plane in enumerate(frame.planes):
        size = plane.line_size
        base = bytes((x * 2 + number * 60) & 0xFF for x in range(size * 2))
        shift = (index * 3 + number * 7) % size
        rows = [base[(shift + y) % size : (shift + y) % size + size] for y in range(plane.height)]
        plane.update(b"".join(rows))
    return frame


def noise_frame(width: int, height: int, seed: int) -> av.VideoFrame:
    """Hard-to-compress content, to reach a high bitrate cheaply."""
    import random

    rng = random.Random(seed)
    frame = av.VideoFrame(width, height, "yuv420p")
    for plane in frame.planes:
        plane.update(rng.randbytes(plane.line_size * plane.height))
    return frame


def _video_stream(
    out: av.container.OutputContainer, video: str, fps: int, width: int, height: int, gop: int,
    bframes: int, bitrate: int | None, preset: str,
) -> av.VideoStream:
    options: dict[str, str] = {"preset": preset}
    if video == "h264":
        if bframes:
            options["bf"] = str(bframes)
        else:
            options["tune"] = "zerolatency"
        options["x264-params"] = f"keyint={gop}:min-keyint={gop}:scenecut=0"
        if bitrate:
            kbps = bitrate // 1000
            options["x264-params"] += f":vbv-maxrate={kbps}:vbv-bufsize={kbps}"
    elif video == "hevc":
        options = {
            "preset": preset,
            "x265-params": f"log-level=error:keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bframes}",
        }
    elif video == "av1":
        options = {"preset": "12", "svtav1-params": f"keyint={gop}:scd=0:pred-struct=1"}
    stream = out.add_stream(_VIDEO_ENCODERS[video], rate=fps, options=options)
    stream.width = width
    stream.height = height
    stream.pix_fmt = "yuv420p"
    stream.codec_context.gop_size = gop
    if bitrate:
        stream.codec_context.bit_rate = bitrate
    return stream


def make_flv(
    seconds: float,
    fps: int = 30,
    width: int = 320,
    height: int = 240,
    video: str | None = "h264",
    audio: bool | str = True,
    gop: int | None = None,
    bframes: int = 0,
    bitrate: int | None = None,
    preset: str = "ultrafast",
    noise: bool = False,
) -> bytes:
    """Encode ``seconds`` of test media into an in-memory FLV file.

    ``video`` is "h264", "hevc", "av1" or None; ``audio`` is True (AAC), "aac",
    "mp3", "opus" or False. ``gop`` defaults to one keyframe per second.
    """
    gop = gop or fps
    buf = io.BytesIO()
    out = av.open(buf, "w", format="flv")
    vstream = _video_stream(out, video, fps, width, height, gop, bframes, bitrate, preset) if video else None
    acodec = ("aac" if audio is True else audio) if audio else None
    astream = out.add_stream(_AUDIO_ENCODERS[acodec], rate=48000, layout="stereo") if acodec else None
    frame_size = 0
    if astream is not None:
        astream.codec_context.open()  # learn the encoder's frame size
        frame_size = astream.codec_context.frame_size or 1024
    count = int(round(seconds * fps))
    samples = 0
    for index in range(count):
        if vstream is not None:
            frame = noise_frame(width, height, index) if noise else pattern_frame(index, width, height)
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            out.mux(vstream.encode(frame))
        if astream is not None:
            while samples < (index + 1) * 48000 // fps:
                out.mux(astream.encode(_tone(samples, frame_size)))
                samples += frame_size
    if vstream is not None:
        out.mux(vstream.encode(None))
    if astream is not None:
        out.mux(astream.encode(None))
    out.close()
    return buf.getvalue()


def _tone(start: int, count: int) -> av.AudioFrame:
    frame = av.AudioFrame(format="fltp", layout="stereo", samples=count)
    wave = array("f", (0.2 * math.sin(2 * math.pi * 440 * (start + i) / 48000) for i in range(count)))
    for plane in frame.planes:
        plane.update(wave.tobytes().ljust(plane.buffer_size, b"\0"))
    frame.sample_rate = 48000
    frame.pts = start
    frame.time_base = Fraction(1, 48000)
    return frame


def flv_tags(data: bytes) -> list[tuple[int, int, bytes]]:
    """(tag type, timestamp ms, body) for every tag of an FLV file."""
    if data[:3] != b"FLV":
        raise ValueError("not an FLV file")
    pos = struct.unpack(">I", data[5:9])[0] + 4
    tags = []
    while pos + 11 <= len(data):
        kind = data[pos] & 0x1F
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        stamp = int.from_bytes(data[pos + 4 : pos + 7], "big") | (data[pos + 7] << 24)
        tags.append((kind, stamp, data[pos + 11 : pos + 11 + size]))
        pos += 11 + size + 4
    return tags


def _si24(raw: bytes) -> int:
    return int.from_bytes(raw, "big", signed=True)


def video_tag_to_unit(stamp: int, body: bytes) -> MediaUnit | None:
    if not body:
        return None
    first = body[0]
    if first & 0x80:  # Enhanced RTMP: frame type, packet type, FourCC
        frame_type, packet_type = (first >> 4) & 7, first & 0x0F
        codec = _FOURCC_VIDEO.get(body[1:5])
        if codec is None or frame_type == 5:
            return None
        if packet_type == 0:
            return MediaUnit(Track.VIDEO, codec, stamp, stamp, True, body[5:], config=True)
        if packet_type == 1:
            if codec is Codec.AV1:
                return MediaUnit(Track.VIDEO, codec, stamp, stamp, frame_type == 1, body[5:])
            return MediaUnit(Track.VIDEO, codec, stamp, stamp + _si24(body[5:8]), frame_type == 1, body[8:])
        if packet_type == 3:
            return MediaUnit(Track.VIDEO, codec, stamp, stamp, frame_type == 1, body[5:])
        return None
    frame_type, codec_id = first >> 4, first & 0x0F
    codec = {7: Codec.H264, 12: Codec.HEVC}.get(codec_id)
    if codec is None or frame_type == 5 or len(body) < 5:
        return None
    if body[1] == 0:
        return MediaUnit(Track.VIDEO, codec, stamp, stamp, True, body[5:], config=True)
    if body[1] == 1:
        return MediaUnit(Track.VIDEO, codec, stamp, stamp + _si24(body[2:5]), frame_type == 1, body[5:])
    return None


def audio_tag_to_unit(stamp: int, body: bytes) -> MediaUnit | None:
    if not body:
        return None
    sound_format = body[0] >> 4
    if sound_format == 10 and len(body) >= 2:
        return MediaUnit(Track.AUDIO, Codec.AAC, stamp, stamp, True, body[2:], config=body[1] == 0)
    if sound_format == 2:
        return MediaUnit(Track.AUDIO, Codec.MP3, stamp, stamp, True, body[1:])
    if sound_format == 9 and len(body) >= 5:  # Enhanced RTMP audio
        packet_type = body[0] & 0x0F
        codec = _FOURCC_AUDIO.get(body[1:5])
        if codec is None or packet_type not in (0, 1):
            return None
        return MediaUnit(Track.AUDIO, codec, stamp, stamp, True, body[5:], config=packet_type == 0)
    return None


def flv_to_units(data: bytes) -> list[MediaUnit]:
    """The media units an ingest would produce for this FLV file, in file order."""
    units = []
    for kind, stamp, body in flv_tags(data):
        unit = None
        if kind == FLV_VIDEO:
            unit = video_tag_to_unit(stamp, body)
        elif kind == FLV_AUDIO:
            unit = audio_tag_to_unit(stamp, body)
        if unit is not None:
            units.append(unit)
    return units


def shift_units(units: list[MediaUnit], offset_ms: int) -> list[MediaUnit]:
    """Copies of ``units`` with timestamps moved by ``offset_ms``."""
    return [
        MediaUnit(u.track, u.codec, u.dts + offset_ms, u.pts + offset_ms, u.keyframe, u.payload, u.config)
        for u in units
    ]


@functools.lru_cache(maxsize=32)
def cached_units(seconds: float, **kwargs: object) -> tuple[MediaUnit, ...]:
    """``flv_to_units(make_flv(...))``, memoised: tests share encoded media."""
    return tuple(flv_to_units(make_flv(seconds, **kwargs)))  # type: ignore[arg-type]


# -- reading HLS output back ----------------------------------------------------


def parse_playlist(text: str) -> dict[str, object]:
    """A media playlist as {"tags": {name: value}, "segments": [...], "ended": bool}.

    Each segment is a dict with uri, duration, discontinuity, map (URI or None) and
    pdt (the PROGRAM-DATE-TIME string or None). Raises AssertionError if malformed.
    """
    lines = text.splitlines()
    assert lines and lines[0] == "#EXTM3U", "playlist must start with #EXTM3U"
    tags: dict[str, str] = {}
    segments: list[dict[str, object]] = []
    current: dict[str, object] = {}
    current_map: str | None = None
    ended = False
    for line in lines[1:]:
        if not line:
            continue
        if line.startswith("#EXTINF:"):
            current["duration"] = float(line[8:].split(",")[0])
        elif line == "#EXT-X-DISCONTINUITY":
            current["discontinuity"] = True
        elif line.startswith("#EXT-X-MAP:"):
            current_map = line.split('URI="')[1].split('"')[0]
        elif line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            current["pdt"] = line.split(":", 1)[1]
        elif line == "#EXT-X-ENDLIST":
            ended = True
        elif line.startswith("#"):
            name, _, value = line[1:].partition(":")
            assert not segments or name not in ("EXT-X-TARGETDURATION", "EXT-X-MEDIA-SEQUENCE"), line
            tags[name] = value
        else:
            assert "duration" in current, f"segment {line} has no EXTINF"
            assert not ended, "segment after EXT-X-ENDLIST"
            segments.append({
                "uri": line,
                "duration": current["duration"],
                "discontinuity": bool(current.get("discontinuity")),
                "map": current_map,
                "pdt": current.get("pdt"),
            })
            current = {}
    return {"tags": tags, "segments": segments, "ended": ended}


def demux_summary(data: bytes) -> dict[str, tuple[int, float, float]]:
    """{stream type: (packets, first pts s, last pts s)} of a TS or MP4 byte string."""
    summary: dict[str, tuple[int, float, float]] = {}
    with av.open(io.BytesIO(data)) as container:
        for stream in container.streams:
            if stream.type not in ("video", "audio"):
                continue
            with av.open(io.BytesIO(data)) as again:
                count, first, last = 0, None, None
                for packet in again.demux(again.streams[stream.index]):
                    if packet.size and packet.pts is not None:
                        count += 1
                        pts = float(packet.pts * packet.time_base)
                        first = pts if first is None else min(first, pts)
                        last = pts if last is None else max(last, pts)
                summary[stream.type] = (count, first or 0.0, last or 0.0)
    return summary


def decode_count(data: bytes, kind: str = "video") -> int:
    """Frames that actually decode from a TS or MP4 byte string."""
    with av.open(io.BytesIO(data)) as container:
        streams = container.streams.video if kind == "video" else container.streams.audio
        return sum(1 for _ in container.decode(streams[0]))
