"""Stream templates: PyAV streams that describe the publisher's codecs.

PyAV can only mux already-encoded packets into streams created from a template
stream (a plain ``add_stream('h264')`` would make an encoder). We get templates by
writing a tiny in-memory FLV file from the publisher's decoder configuration
records plus the first keyframe (and first audio frame), then opening it with
FFmpeg's FLV demuxer, which probes width/height, sample rate and so on. The probed
streams are then copied into an output container that is never written, and the
demuxer is closed: an open demuxer keeps ~2 MiB of FFmpeg state per publisher (the
decoders its stream probing opened), the copies keep only codec parameters (~0.1 MiB).

H.264, AAC and MP3 use legacy FLV tags; HEVC, AV1 and Opus use Enhanced RTMP
tags (FourCC 'hvc1', 'av01', 'Opus').
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import av

from livecast.core.media import Codec, MediaUnit
from livecast.media.flv import (
    FLV_AUDIO,
    FLV_VIDEO,
    FlvEncodeError,
    audio_tag_body,
    flv_file,
    video_tag_body,
)

log = logging.getLogger(__name__)

_AAC_OBJECT_TYPES = (1, 2, 3, 4, 5, 29)  # Main, LC, SSR, LTP, HE-AAC, HE-AACv2: what ADTS can carry
_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)

class TemplateError(ValueError):
    """The configuration records could not be turned into PyAV streams."""


def needs_config(codec: Codec) -> bool:
    """Whether a codec needs a decoder configuration record before its frames (MP3 does not)."""
    return codec is not Codec.MP3


def aac_config(asc: bytes) -> tuple[int, int] | None:
    """(sample rate, channel count) from an AudioSpecificConfig, or None if it is unreadable."""
    if len(asc) < 2:
        return None
    bits = int.from_bytes(asc[:8].ljust(8, b"\0"), "big")
    pos = 64

    def take(count: int) -> int:
        nonlocal pos
        pos -= count
        return (bits >> pos) & ((1 << count) - 1)

    if take(5) == 31:
        take(6)
    index = take(4)
    rate = take(24) if index == 15 else (_AAC_RATES[index] if index < len(_AAC_RATES) else 0)
    channels = take(4)
    return (rate, channels) if rate else None


def check_config(unit: MediaUnit) -> None:
    """Reject a decoder configuration record that is not even well-formed (FFmpeg's muxers
    trust these records; a garbage one must never reach them)."""
    data = bytes(unit.payload)
    ok = {
        Codec.H264: _avcc_ok, Codec.HEVC: _hvcc_ok, Codec.AV1: _av1c_ok, Codec.AAC: _asc_ok, Codec.OPUS: _opus_head_ok,
    }.get(unit.codec, lambda _: True)(data)
    if not ok:
        raise TemplateError(f"malformed {unit.codec.value} configuration record ({len(data)} bytes)")


def _nal_list(data: bytes, pos: int, count: int) -> int | None:
    """Skip ``count`` 16-bit-length-prefixed NAL units; the new position, or None if out of bounds."""
    for _ in range(count):
        if pos + 2 > len(data):
            return None
        size = int.from_bytes(data[pos : pos + 2], "big")
        if size == 0 or pos + 2 + size > len(data):
            return None
        pos += 2 + size
    return pos


def _avcc_ok(data: bytes) -> bool:
    if len(data) < 7 or data[0] != 1 or (data[4] & 3) == 2:
        return False
    pos = _nal_list(data, 6, data[5] & 0x1F) if data[5] & 0x1F else None
    if pos is None or pos >= len(data) or not data[pos]:
        return False
    return _nal_list(data, pos + 1, data[pos]) is not None


def _hvcc_ok(data: bytes) -> bool:
    if len(data) < 23 or data[0] not in (0, 1) or (data[21] & 3) == 2 or not data[22]:
        return False
    pos = 23
    for _ in range(data[22]):
        if pos + 3 > len(data):
            return False
        found = _nal_list(data, pos + 3, int.from_bytes(data[pos + 1 : pos + 3], "big"))
        if found is None:
            return False
        pos = found
    return True


def _av1c_ok(data: bytes) -> bool:
    return len(data) >= 4 and data[0] == 0x81


def _asc_ok(data: bytes) -> bool:
    parsed = aac_config(data)
    return parsed is not None and data[0] >> 3 in _AAC_OBJECT_TYPES and 1 <= parsed[1] <= 7


def _opus_head_ok(data: bytes) -> bool:
    if len(data) < 19 or data[:8] != b"OpusHead" or data[8] >> 4 or not data[9]:
        return False
    return data[18] == 0 or len(data) >= 21 + data[9]


@dataclass
class Template:
    """Template streams (in a container that is never written) and the configuration they came from."""

    container: av.container.OutputContainer
    video: av.VideoStream | None
    audio: av.AudioStream | None
    video_config: MediaUnit | None
    audio_config: MediaUnit | None
    sample_rate: int | None = None  # from the AudioSpecificConfig: the FLV flags cannot say 48 kHz

    def close(self) -> None:
        self.container.close()


def open_template(
    video_config: MediaUnit | None,
    keyframe: MediaUnit | None,
    audio_config: MediaUnit | None,
    audio_frame: MediaUnit | None,
) -> Template:
    """Build the FLV file and open it. ``video_config`` may be None for MP3 (no config)
    or audio-only; the keyframe is what lets the demuxer learn the picture size."""
    for config in (video_config, audio_config):
        if config is not None:
            check_config(config)
    try:
        data = _template_flv(video_config, keyframe, audio_config, audio_frame)
    except FlvEncodeError as err:
        raise TemplateError(str(err)) from err
    has_video = keyframe is not None
    has_audio = audio_config is not None or audio_frame is not None
    try:
        container = av.open(io.BytesIO(data), mode="r", format="flv")
    except av.FFmpegError as err:
        raise TemplateError(f"FLV template rejected: {err}") from err
    video = container.streams.video[0] if has_video and container.streams.video else None
    audio = container.streams.audio[0] if has_audio and container.streams.audio else None
    if (has_video and video is None) or (has_audio and audio is None):
        container.close()
        raise TemplateError("FLV template is missing a track")
    if video is not None and not video.codec_context.width:
        container.close()
        raise TemplateError("FLV template: video size unknown")
    holder = _detached(container, video, audio)
    template = Template(holder, holder.streams.video[0] if video is not None else None,
                        holder.streams.audio[0] if audio is not None else None,
                        video_config if has_video else None, audio_config)
    if audio_config is not None and audio_config.codec is Codec.AAC:
        parsed = aac_config(audio_config.payload)
        if parsed is not None:
            template.sample_rate = parsed[0]
    return template


def _template_flv(
    video_config: MediaUnit | None,
    keyframe: MediaUnit | None,
    audio_config: MediaUnit | None,
    audio_frame: MediaUnit | None,
) -> bytes:
    tags: list[tuple[int, int, bytes]] = []
    has_video = keyframe is not None
    has_audio = audio_config is not None or audio_frame is not None
    if has_video and video_config is not None:
        tags.append((FLV_VIDEO, 0, video_tag_body(video_config)))
    if audio_config is not None:
        tags.append((FLV_AUDIO, 0, _aac_fixed_flags(audio_tag_body(audio_config), audio_config)))
    if keyframe is not None:
        tags.append((FLV_VIDEO, 0, video_tag_body(keyframe)))
    if audio_frame is not None:
        tags.append((FLV_AUDIO, 0, _aac_fixed_flags(audio_tag_body(audio_frame), audio_config)))
    data = flv_file(tags, has_video, has_audio)
    return data


def _detached(
    container: av.container.InputContainer, video: av.VideoStream | None, audio: av.AudioStream | None
) -> av.container.OutputContainer:
    """Copy the probed streams' codec parameters into an output container that is never
    written (the ``null`` muxer) and close the demuxer, which holds far more memory."""
    holder = av.open(io.BytesIO(), "w", format="null")
    try:
        for stream in (video, audio):
            if stream is not None:
                holder.add_stream_from_template(stream, opaque=True)
    except (av.FFmpegError, ValueError) as err:
        holder.close()
        raise TemplateError(f"cannot copy the template streams: {err}") from err
    finally:
        container.close()
    return holder


def _aac_fixed_flags(body: bytes, config: MediaUnit | None) -> bytes:
    """Mark mono AAC as mono in the legacy FLV flags byte (the demuxer trusts it)."""
    if body[:1] != b"\xaf" or config is None or config.codec is not Codec.AAC:
        return body
    parsed = aac_config(config.payload)
    if parsed is not None and parsed[1] == 1:
        return b"\xae" + body[1:]
    return body
