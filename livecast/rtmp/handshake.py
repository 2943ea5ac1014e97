"""The server side of the RTMP handshake, sans I/O.

Client sends C0 (version byte) + C1 (1536 bytes); the server answers S0 + S1 + S2 at
once, then waits for C2 (1536 bytes); whatever follows C2 is chunk stream data.

This is the plain handshake: S1 is our time (4 bytes) + four zero bytes + random,
S2 echoes C1. Clients that sent a digest-style C1 (FFmpeg, librtmp/OBS) see the zero
version field in S1 and skip digest verification, which is all ingest needs. C2 is
not checked: clients echo S1 or send a digest-signed block, both are fine.
"""

from __future__ import annotations

import logging
import os
import time
from enum import Enum

from livecast.rtmp.chunks import ProtocolError

log = logging.getLogger(__name__)

RTMP_VERSION = 3
PACKET_SIZE = 1536


class HandshakeState(Enum):
    WAIT_C0 = 0
    WAIT_C1 = 1
    WAIT_C2 = 2
    DONE = 3


class ServerHandshake:
    """Feed bytes with :meth:`receive`; collect replies with :meth:`data_to_send`."""

    def __init__(self) -> None:
        self.state = HandshakeState.WAIT_C0
        self._buf = bytearray()
        self._out = bytearray()
        self._epoch = time.monotonic()

    @property
    def done(self) -> bool:
        return self.state is HandshakeState.DONE

    def receive(self, data: bytes | bytearray | memoryview) -> bytes:
        """Consume handshake bytes. Returns the bytes that follow C2 (chunk stream
        data, possibly empty) once the handshake is complete, else ``b""``."""
        if self.state is HandshakeState.DONE:
            return bytes(data)
        buf = self._buf
        buf += data
        if self.state is HandshakeState.WAIT_C0:
            if not buf:
                return b""
            if buf[0] != RTMP_VERSION:
                raise ProtocolError(f"unsupported RTMP version {buf[0]} (only plain RTMP 3)")
            del buf[:1]
            self.state = HandshakeState.WAIT_C1
        if self.state is HandshakeState.WAIT_C1:
            if len(buf) < PACKET_SIZE:
                return b""
            c1 = bytes(buf[:PACKET_SIZE])
            del buf[:PACKET_SIZE]
            uptime = int((time.monotonic() - self._epoch) * 1000) & 0xFFFFFFFF
            self._out.append(RTMP_VERSION)
            self._out += uptime.to_bytes(4, "big") + b"\x00\x00\x00\x00" + os.urandom(PACKET_SIZE - 8)
            self._out += c1
            self.state = HandshakeState.WAIT_C2
        if len(buf) < PACKET_SIZE:
            return b""
        rest = bytes(buf[PACKET_SIZE:])
        self._buf = bytearray()
        self.state = HandshakeState.DONE
        log.debug("handshake done (%d bytes of chunk data follow C2)", len(rest))
        return rest

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out
