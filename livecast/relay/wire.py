"""A unit's RTMP message bytes, encoded once per live session and shared by every push target.

Every target gets the same media message for a unit: the same FLV tag body, the same
timestamp (the unit's dts), the same chunk stream (audio 4, video 6), the same chunk size
(``client.OUT_CHUNK_SIZE``, which the client announces right after the handshake) and,
in practice, the same message stream id (1: what nginx-rtmp, SRS, YouTube, Twitch and
LiveCast answer to ``createStream``). So the chunked bytes are built once per unit
(:class:`WireUnit`) rather than once per target. Each message starts with a full (fmt 0)
chunk header, so the bytes do not depend on what a connection sent before (header
compression would make them differ per target, e.g. after a reconnect); that costs four
bytes per message. A target whose server chose another stream id encodes its own copy
with :func:`media_message`.
"""

from __future__ import annotations

import logging
import struct

from livecast.core.media import MediaUnit, Track
from livecast.media.flv import FlvEncodeError, audio_tag_body, video_tag_body
from livecast.relay.client import AUDIO, CSID_AUDIO, CSID_VIDEO, OUT_CHUNK_SIZE, VIDEO
from livecast.rtmp.chunks import EXTENDED_TIMESTAMP, MASK32, basic_header

log = logging.getLogger(__name__)

SHARED_STREAM_ID = 1
_HEADER = struct.Struct("<B3s3sBI")  # 3-byte fields are given big-endian; the stream id is LE
_U32 = struct.Struct(">I")
_CONTINUATION = {csid: basic_header(3, csid) for csid in (CSID_AUDIO, CSID_VIDEO)}


def chunk_message(csid: int, type_id: int, stream_id: int, timestamp: int, payload: bytes,
                  chunk_size: int = OUT_CHUNK_SIZE) -> bytes:
    """One RTMP message as chunks: a fmt 0 header, then fmt 3 continuations (csid 2..63)."""
    ts = timestamp & MASK32
    ext = ts >= EXTENDED_TIMESTAMP
    length = len(payload)
    head = _HEADER.pack(csid, (EXTENDED_TIMESTAMP if ext else ts).to_bytes(3, "big"),
                        length.to_bytes(3, "big"), type_id, stream_id)
    extended = _U32.pack(ts) if ext else b""
    if length <= chunk_size:
        return head + extended + payload
    continuation = _CONTINUATION.get(csid) or basic_header(3, csid)
    continuation += extended
    parts = [head, extended, payload[:chunk_size]]
    for offset in range(chunk_size, length, chunk_size):
        parts.append(continuation)
        parts.append(payload[offset:offset + chunk_size])
    return b"".join(parts)


def media_message(unit: MediaUnit, stream_id: int) -> bytes:
    """``unit`` as an audio or video message on ``stream_id``; raises ``FlvEncodeError``."""
    if unit.track is Track.VIDEO:
        return chunk_message(CSID_VIDEO, VIDEO, stream_id, unit.dts, video_tag_body(unit))
    return chunk_message(CSID_AUDIO, AUDIO, stream_id, unit.dts, audio_tag_body(unit))


class WireUnit(MediaUnit):
    """A unit carrying its message bytes for stream id 1 (``None``: no FLV mapping)."""

    __slots__ = ("wire",)

    def __init__(self, unit: MediaUnit) -> None:
        super().__init__(unit.track, unit.codec, unit.dts, unit.pts, unit.keyframe, unit.payload, unit.config)
        self.wire: bytes | None
        try:
            self.wire = media_message(unit, SHARED_STREAM_ID)
        except FlvEncodeError:
            self.wire = None


def message_for(unit: MediaUnit, stream_id: int) -> bytes | None:
    """The message bytes of ``unit`` on ``stream_id``: shared when they can be; ``None``: not encodable."""
    if stream_id == SHARED_STREAM_ID and isinstance(unit, WireUnit):
        return unit.wire
    try:
        return media_message(unit, stream_id)
    except FlvEncodeError:
        return None
