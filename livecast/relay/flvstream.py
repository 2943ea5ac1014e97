"""An FLV byte stream (header, then tags) parsed incrementally into tags, sans I/O."""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

_HEADER = 9 + 4  # FLV header plus the first PreviousTagSize
MAX_TAG = 16 * 1024 * 1024


@dataclass(slots=True)
class Tag:
    kind: int  # 8 audio, 9 video, 18 script data
    timestamp: int
    body: bytes


class FlvStreamReader:
    def __init__(self) -> None:
        self._buf = bytearray()
        self._started = False

    def feed(self, data: bytes) -> list[Tag]:
        """Bytes in (any split); complete tags out. Raises ``ValueError`` on a bad stream."""
        buf = self._buf
        buf += data
        tags: list[Tag] = []
        if not self._started:
            if len(buf) < _HEADER:
                return tags
            if bytes(buf[:3]) != b"FLV":
                raise ValueError("not an FLV stream")
            del buf[:_HEADER]
            self._started = True
        pos = 0
        while len(buf) - pos >= 11:
            size = int.from_bytes(buf[pos + 1:pos + 4], "big")
            if size > MAX_TAG:
                raise ValueError(f"FLV tag of {size} bytes")
            end = pos + 11 + size + 4
            if len(buf) < end:
                break
            stamp = int.from_bytes(buf[pos + 4:pos + 7], "big") | (buf[pos + 7] << 24)
            tags.append(Tag(buf[pos] & 0x1F, stamp, bytes(buf[pos + 11:pos + 11 + size])))
            pos = end
        del buf[:pos]
        return tags
