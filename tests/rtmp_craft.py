"""Build RTMP bytes by hand for tests: basic headers, chunks of every fmt, chunked
messages, AMF0 values and commands, handshake packets, and a tiny client that drives
an ``RtmpServerProtocol`` and decodes what it sends back.

The AMF0 encoder and chunk builders here are written independently of
``livecast.ingest`` so the tests do not check the code against itself. Decoding the
server's output does use ``ChunkReader``/``decode_values``, which have their own
byte-level tests.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import Any

from livecast.rtmp.amf import decode_values
from livecast.rtmp.chunks import ChunkReader, RtmpMessage
from livecast.rtmp.protocol import RtmpServerProtocol

EXT = 0xFFFFFF
HANDSHAKE_SIZE = 1536


# -- AMF0 ---------------------------------------------------------------------------------


class Ecma(dict[str, Any]):
    """Encode this dict as an AMF0 ECMA array (marker 0x08) instead of an object."""


class Undef:
    """Encode as AMF0 undefined (marker 0x06)."""


def _key(name: str) -> bytes:
    raw = name.encode()
    return struct.pack(">H", len(raw)) + raw


def amf0(*values: Any) -> bytes:
    out = b""
    for v in values:
        if v is None:
            out += b"\x05"
        elif isinstance(v, Undef):
            out += b"\x06"
        elif isinstance(v, bool):
            out += b"\x01" + (b"\x01" if v else b"\x00")
        elif isinstance(v, (int, float)):
            out += b"\x00" + struct.pack(">d", v)
        elif isinstance(v, str):
            raw = v.encode()
            out += (b"\x02" + struct.pack(">H", len(raw)) if len(raw) < 0x10000
                    else b"\x0c" + struct.pack(">I", len(raw))) + raw
        elif isinstance(v, dict):
            out += b"\x08" + struct.pack(">I", len(v)) if isinstance(v, Ecma) else b"\x03"
            for k, item in v.items():
                out += _key(k) + amf0(item)
            out += b"\x00\x00\x09"
        elif isinstance(v, list):
            out += b"\x0a" + struct.pack(">I", len(v)) + b"".join(amf0(i) for i in v)
        else:
            raise TypeError(type(v))
    return out


def command(name: str, txid: float, *rest: Any) -> bytes:
    """AMF0 command payload: name, transaction id, then the command object and args."""
    return amf0(name, float(txid), *rest)


# -- chunks -------------------------------------------------------------------------------


def basic_header(fmt: int, csid: int, *, size: int | None = None) -> bytes:
    """Basic header; ``size`` forces the 1/2/3-byte form (e.g. csid 64 as 3 bytes)."""
    size = size or (1 if csid < 64 else 2 if csid < 320 else 3)
    if size == 1:
        return bytes([fmt << 6 | csid])
    if size == 2:
        return bytes([fmt << 6, csid - 64])
    return bytes([fmt << 6 | 1, (csid - 64) % 256, (csid - 64) // 256])


def chunk(fmt: int, csid: int, payload: bytes = b"", *, ts: int = 0, length: int | None = None,
          type_id: int = 9, stream_id: int = 1, ext: int | None = None, header_size: int | None = None) -> bytes:
    """One chunk. ``ts`` is the timestamp field value (absolute for fmt 0, delta for fmt
    1/2); values >= 0xFFFFFF go to the extended field automatically. ``ext`` appends an
    extended timestamp explicitly (for fmt 3). ``length`` defaults to len(payload)."""
    out = basic_header(fmt, csid, size=header_size)
    if fmt <= 2:
        out += min(ts, EXT).to_bytes(3, "big")
        if fmt <= 1:
            out += (len(payload) if length is None else length).to_bytes(3, "big") + bytes([type_id])
            if fmt == 0:
                out += struct.pack("<I", stream_id)
        if ts >= EXT:
            out += struct.pack(">I", ts)
    if ext is not None:
        out += struct.pack(">I", ext)
    return out + payload


def message(payload: bytes, *, csid: int = 6, fmt: int = 0, ts: int = 0, type_id: int = 9, stream_id: int = 1,
            chunk_size: int = 128, continuation_ext: bool = True, first_ext: int | None = None) -> bytes:
    """A whole message: one fmt ``fmt`` chunk then fmt 3 continuation chunks. When the
    timestamp field is extended, continuations repeat it unless ``continuation_ext`` is
    False (what OBS before 30.1 does). ``first_ext`` is for a fmt 3 first chunk."""
    first = payload[:chunk_size]
    out = chunk(fmt, csid, first, ts=ts, length=len(payload), type_id=type_id, stream_id=stream_id, ext=first_ext)
    repeat = ts if fmt < 3 else first_ext
    for off in range(chunk_size, len(payload), chunk_size):
        has_ext = continuation_ext and repeat is not None and repeat >= EXT
        out += chunk(3, csid, payload[off:off + chunk_size], ext=repeat if has_ext else None)
    return out


def command_message(name: str, txid: float, *rest: Any, stream_id: int = 0, csid: int = 3,
                    chunk_size: int = 128, amf3: bool = False) -> bytes:
    body = command(name, txid, *rest)
    if amf3:
        body = b"\x00" + body
    return message(body, csid=csid, type_id=17 if amf3 else 20, stream_id=stream_id, chunk_size=chunk_size)


def control(type_id: int, payload: bytes, *, csid: int = 2) -> bytes:
    return chunk(0, csid, payload, type_id=type_id, stream_id=0)


def set_chunk_size(size: int) -> bytes:
    return control(1, struct.pack(">I", size))


def abort(csid: int) -> bytes:
    return control(2, struct.pack(">I", csid))


def window_ack_size(size: int) -> bytes:
    return control(5, struct.pack(">I", size))


def ping_request(timestamp: int) -> bytes:
    return control(4, struct.pack(">HI", 6, timestamp))


# -- handshake ----------------------------------------------------------------------------


def c0c1(version: int = 3) -> bytes:
    return bytes([version]) + b"\x00\x00\x00\x00" + b"\x09\x00\x7c\x02" + os.urandom(HANDSHAKE_SIZE - 8)


def c2(s1: bytes = b"") -> bytes:
    return s1 if len(s1) == HANDSHAKE_SIZE else bytes(HANDSHAKE_SIZE)


# -- a crafted client ---------------------------------------------------------------------


@dataclass
class Client:
    """Drives a protocol with crafted bytes; ``replies`` decodes what it sends back."""

    proto: RtmpServerProtocol = field(default_factory=RtmpServerProtocol)
    reader: ChunkReader = field(default_factory=lambda: ChunkReader(max_chunk_size=0x7FFFFFFF))
    events: list[object] = field(default_factory=list)
    s0s1s2: bytes = b""

    def handshake(self, then: bytes = b"") -> list[object]:
        first = c0c1()
        assert self.proto.receive(first) == []
        self.s0s1s2 = self.proto.data_to_send()
        assert len(self.s0s1s2) == 1 + 2 * HANDSHAKE_SIZE
        return self.send(c2(self.s0s1s2[1:1 + HANDSHAKE_SIZE]) + then)

    def connect(self, app: str = "live", tc_url: str = "rtmp://localhost/live") -> list[object]:
        events = self.handshake(command_message("connect", 1, {"app": app, "tcUrl": tc_url, "flashVer": "FMLE/3.0"}))
        self.replies()
        return events

    def send(self, data: bytes) -> list[object]:
        events = self.proto.receive(data)
        self.events += events
        return events

    def replies(self) -> list[RtmpMessage]:
        return self.reader.feed(self.proto.data_to_send())

    def decoded(self) -> list[tuple[int, int, Any]]:
        """(type id, stream id, decoded body) per reply: AMF values for commands, raw
        bytes for everything else."""
        return [(m.type_id, m.stream_id, decode_values(m.payload) if m.type_id == 20 else m.payload)
                for m in self.replies()]
