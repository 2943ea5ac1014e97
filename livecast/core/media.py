"""The one media type that flows ingest -> stream hub -> segmenter -> delivery.

Timestamps are integer milliseconds (the RTMP/FLV clock). Payloads are the codec's
own bytes as FLV carries them: length-prefixed NAL units for H.264/HEVC (AVCC/HVCC
framing), OBUs for AV1, raw AAC frames. A *config* unit carries the codec's
decoder configuration record instead (avcC, hvcC, av1C, AudioSpecificConfig) and
precedes the media units it configures; a new config unit mid-stream means the
encoder changed its parameters.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Track(enum.IntEnum):
    VIDEO = 0
    AUDIO = 1


class Codec(str, enum.Enum):
    H264 = "h264"
    HEVC = "hevc"
    AV1 = "av1"
    AAC = "aac"
    MP3 = "mp3"
    OPUS = "opus"

    @property
    def track(self) -> Track:
        return Track.AUDIO if self in (Codec.AAC, Codec.MP3, Codec.OPUS) else Track.VIDEO


@dataclass(slots=True)
class MediaUnit:
    track: Track
    codec: Codec
    dts: int
    pts: int
    keyframe: bool
    payload: bytes
    config: bool = False

    @property
    def size(self) -> int:
        return len(self.payload)
