"""The framing between the event loop and a transcoding worker process (stdin/stdout pipes).

Every message is a fixed header (kind, rendition index, flags, pts, dts, payload length)
followed by the payload bytes. Timestamps are the source's milliseconds, unchanged.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

HEADER = struct.Struct("!BBBqqI")

# to the worker
CONFIG = 1  # payload: the source's avcC
VIDEO = 2  # payload: one source access unit (AVCC framing)
END = 3
# from the worker
PACKET = 10  # payload: one encoded access unit of rendition ``index`` (AVCC framing)
RENDITION = 11  # payload: JSON {width, height, fps, avcc (hex)} once the encoder is open
DROPPED = 12  # payload: the reason, UTF-8
STATS = 13  # payload: JSON {name: {fps, bitrate, speed}}
SOURCE = 14  # payload: JSON {width, height} of the decoded source

KEYFRAME = 1
NO_INDEX = 255


@dataclass(slots=True)
class Message:
    kind: int
    index: int
    flags: int
    pts: int
    dts: int
    payload: bytes

    @property
    def keyframe(self) -> bool:
        return bool(self.flags & KEYFRAME)


def pack(kind: int, payload: bytes = b"", *, index: int = NO_INDEX, flags: int = 0, pts: int = 0,
         dts: int = 0) -> bytes:
    return HEADER.pack(kind, index, flags, pts, dts, len(payload)) + payload


def unpack_header(header: bytes) -> tuple[int, int, int, int, int, int]:
    kind, index, flags, pts, dts, size = HEADER.unpack(header)
    return int(kind), int(index), int(flags), int(pts), int(dts), int(size)


def read_message(stream: BinaryIO) -> Message | None:
    """Blocking read (the worker's side); None at end of input."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    kind, index, flags, pts, dts, size = unpack_header(header)
    payload = stream.read(size) if size else b""
    if len(payload) < size:
        return None
    return Message(kind, index, flags, pts, dts, payload)
