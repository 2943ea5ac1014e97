"""The FLV tag codec: RTMP audio/video message bodies (FLV tag bodies) to MediaUnits and back.

Encoding (``video_tag_body``, ``audio_tag_body``, ``flv_file``) serves the HLS templates
and, later, relays; decoding (``FlvToUnits``) serves ingest.

Understands the classic FLV tags (AVC video, AAC audio) and Enhanced RTMP
(``IsExHeader`` bit, FourCC ``avc1``/``hvc1``/``av01`` video, ``mp4a`` audio).
Timestamps arrive as 32-bit RTMP milliseconds and are unwrapped here into a
monotonic 64-bit clock, so a stream longer than 49.7 days (or one whose
encoder starts near the wrap) keeps counting up.
"""

from __future__ import annotations

import logging
import struct

from livecast.core.media import Codec, MediaUnit, Track

log = logging.getLogger(__name__)

_WRAP = 1 << 32
_HALF = 1 << 31

# Classic FLV video CodecID -> codec (only those we can carry).
_LEGACY_VIDEO = {7: Codec.H264}
_VIDEO_FOURCC = {b"avc1": Codec.H264, b"hvc1": Codec.HEVC, b"av01": Codec.AV1}
_AUDIO_FOURCC = {b"mp4a": Codec.AAC}
_LEGACY_VIDEO_NAMES = {2: "Sorenson H.263", 3: "Screen video", 4: "VP6", 5: "VP6 alpha", 6: "Screen video 2",
                       12: "HEVC (non-standard codec id 12)"}
_LEGACY_AUDIO_NAMES = {0: "PCM", 1: "ADPCM", 2: "MP3", 3: "PCM LE", 4: "Nellymoser 16k", 5: "Nellymoser 8k",
                       6: "Nellymoser", 7: "G.711 A-law", 8: "G.711 mu-law", 11: "Speex", 14: "MP3 8k"}

FLV_AUDIO = 8
FLV_VIDEO = 9
_ENCODE_VIDEO_FOURCC = {Codec.HEVC: b"hvc1", Codec.AV1: b"av01"}
_ENCODE_AUDIO_FOURCC = {Codec.OPUS: b"Opus"}

# Enhanced RTMP video packet types
_SEQ_START, _CODED, _SEQ_END, _CODED_X = 0, 1, 2, 3


class FlvEncodeError(ValueError):
    """A unit whose codec has no FLV tag mapping."""


class UnsupportedCodec(Exception):
    """The publisher sends a codec LiveCast cannot carry; ``str()`` is a human description."""


class TimestampUnwrapper:
    """32-bit RTMP timestamps to a 64-bit monotonic-ish clock (handles wrap-around)."""

    __slots__ = ("_epoch", "_last")

    def __init__(self) -> None:
        self._epoch = 0
        self._last: int | None = None

    def __call__(self, ts: int) -> int:
        ts &= 0xFFFFFFFF
        last = self._last
        if last is not None:
            if ts < last and last - ts > _HALF:
                self._epoch += _WRAP
            elif ts > last and ts - last > _HALF and self._epoch:
                # a late packet from before the wrap: don't move the reference point
                return self._epoch - _WRAP + ts
        self._last = ts
        return self._epoch + ts


def _si24(b: bytes | bytearray | memoryview, i: int) -> int:
    v = (b[i] << 16) | (b[i + 1] << 8) | b[i + 2]
    return v - (1 << 24) if v & 0x800000 else v


def _tail(body: bytes | bytearray, start: int) -> bytes:
    """``body[start:]`` as bytes, copied once (a message assembled from several RTMP chunks
    arrives as the bytearray it was assembled in)."""
    if isinstance(body, bytes):
        return body[start:]
    return bytes(memoryview(body)[start:])


class FlvToUnits:
    """Stateful converter for one publisher: call ``video``/``audio`` per message."""

    def __init__(self) -> None:
        # One unwrapper for both tracks: RTMP carries one clock per connection.
        self._clock = TimestampUnwrapper()
        self.video_codec: Codec | None = None
        self.audio_codec: Codec | None = None
        self.skipped = 0

    def video(self, timestamp: int, body: bytes | bytearray) -> MediaUnit | None:
        """A video message body -> a unit, or None for something to skip (EOS, command frames)."""
        if len(body) < 2:
            self.skipped += 1
            return None
        b0 = body[0]
        dts = self._clock(timestamp)
        if b0 & 0x80:
            return self._ex_video(dts, body)
        frame_type, codec_id = b0 >> 4, b0 & 0x0F
        codec = _LEGACY_VIDEO.get(codec_id)
        if codec is None:
            name = _LEGACY_VIDEO_NAMES.get(codec_id, f"codec id {codec_id}")
            raise UnsupportedCodec(f"video codec {name} is not supported (use H.264, or HEVC/AV1 over Enhanced RTMP)")
        if frame_type == 5 or len(body) < 5:
            self.skipped += 1
            return None
        packet_type = body[1]
        if packet_type == 0:
            self.video_codec = codec
            return MediaUnit(Track.VIDEO, codec, dts, dts, True, _tail(body, 5), config=True)
        if packet_type != 1:  # 2 = end of sequence: nothing to mux
            self.skipped += 1
            return None
        cts = _si24(body, 2)
        return MediaUnit(Track.VIDEO, codec, dts, dts + cts, frame_type == 1, _tail(body, 5))

    def _ex_video(self, dts: int, body: bytes | bytearray) -> MediaUnit | None:
        frame_type, packet_type = (body[0] >> 4) & 0x07, body[0] & 0x0F
        if len(body) < 5:
            self.skipped += 1
            return None
        fourcc = bytes(body[1:5])
        codec = _VIDEO_FOURCC.get(fourcc)
        if codec is None:
            if packet_type in (4, 6, 7):  # metadata / multitrack / modex we don't use
                self.skipped += 1
                return None
            raise UnsupportedCodec(f"video codec {fourcc.decode('latin-1')!r} is not supported")
        if frame_type == 5:
            self.skipped += 1
            return None
        if packet_type == _SEQ_START:
            self.video_codec = codec
            return MediaUnit(Track.VIDEO, codec, dts, dts, True, _tail(body, 5), config=True)
        if packet_type == _CODED:
            if codec in (Codec.H264, Codec.HEVC):
                if len(body) < 8:
                    self.skipped += 1
                    return None
                return MediaUnit(Track.VIDEO, codec, dts, dts + _si24(body, 5), frame_type == 1, _tail(body, 8))
            return MediaUnit(Track.VIDEO, codec, dts, dts, frame_type == 1, _tail(body, 5))
        if packet_type == _CODED_X:
            return MediaUnit(Track.VIDEO, codec, dts, dts, frame_type == 1, _tail(body, 5))
        self.skipped += 1  # sequence end, metadata, MPEG-2 TS sequence start, ...
        return None

    def audio(self, timestamp: int, body: bytes | bytearray) -> MediaUnit | None:
        if len(body) < 2:
            self.skipped += 1
            return None
        sound_format = body[0] >> 4
        dts = self._clock(timestamp)
        if sound_format == 9:  # Enhanced RTMP audio: low nibble is the packet type
            packet_type = body[0] & 0x0F
            fourcc = bytes(body[1:5])
            codec = _AUDIO_FOURCC.get(fourcc)
            if codec is None:
                raise UnsupportedCodec(f"audio codec {fourcc.decode('latin-1')!r} is not supported (use AAC)")
            if packet_type == 0:
                self.audio_codec = codec
                return MediaUnit(Track.AUDIO, codec, dts, dts, True, _tail(body, 5), config=True)
            if packet_type == 1:
                return MediaUnit(Track.AUDIO, codec, dts, dts, True, _tail(body, 5))
            self.skipped += 1
            return None
        if sound_format != 10:
            name = _LEGACY_AUDIO_NAMES.get(sound_format, f"sound format {sound_format}")
            raise UnsupportedCodec(f"audio codec {name} is not supported (use AAC)")
        if body[1] == 0:
            self.audio_codec = Codec.AAC
            return MediaUnit(Track.AUDIO, Codec.AAC, dts, dts, True, _tail(body, 2), config=True)
        return MediaUnit(Track.AUDIO, Codec.AAC, dts, dts, True, _tail(body, 2))


def video_tag_body(unit: MediaUnit) -> bytes:
    """The FLV video tag body that carries ``unit`` (config or coded frame)."""
    frame_type = 1 if unit.keyframe or unit.config else 2
    if unit.codec is Codec.H264:
        packet_type = 0 if unit.config else 1
        cts = 0 if unit.config else unit.pts - unit.dts
        return bytes([(frame_type << 4) | 7, packet_type]) + _si24_bytes(cts) + unit.payload
    fourcc = _ENCODE_VIDEO_FOURCC.get(unit.codec)
    if fourcc is None:
        raise FlvEncodeError(f"no FLV mapping for video codec {unit.codec.value}")
    if unit.config:
        return bytes([0x80 | (frame_type << 4) | 0]) + fourcc + unit.payload
    if unit.codec is Codec.AV1:
        return bytes([0x80 | (frame_type << 4) | 1]) + fourcc + unit.payload
    return bytes([0x80 | (frame_type << 4) | 1]) + fourcc + _si24_bytes(unit.pts - unit.dts) + unit.payload


def audio_tag_body(unit: MediaUnit) -> bytes:
    """The FLV audio tag body that carries ``unit`` (config or coded frame)."""
    if unit.codec is Codec.AAC:
        return bytes([0xAF, 0 if unit.config else 1]) + unit.payload
    if unit.codec is Codec.MP3:
        return bytes([0x2F]) + unit.payload
    fourcc = _ENCODE_AUDIO_FOURCC.get(unit.codec)
    if fourcc is None:
        raise FlvEncodeError(f"no FLV mapping for audio codec {unit.codec.value}")
    return bytes([0x90 | (0 if unit.config else 1)]) + fourcc + unit.payload


def _si24_bytes(value: int) -> bytes:
    value = max(-(1 << 23), min((1 << 23) - 1, value))
    return value.to_bytes(3, "big", signed=True)


def flv_file(tags: list[tuple[int, int, bytes]], has_video: bool, has_audio: bool) -> bytes:
    """An FLV file (header + tags) from (tag type, timestamp ms, body) triples."""
    out = bytearray(b"FLV\x01" + bytes([(1 if has_video else 0) | (4 if has_audio else 0)]))
    out += struct.pack(">II", 9, 0)
    for kind, stamp, body in tags:
        stamp &= 0xFFFFFFFF
        out += bytes([kind]) + len(body).to_bytes(3, "big") + (stamp & 0xFFFFFF).to_bytes(3, "big")
        out += bytes([stamp >> 24, 0, 0, 0]) + body + struct.pack(">I", 11 + len(body))
    return bytes(out)
