"""RTMP chunk streams, sans I/O: :class:`ChunkReader` turns bytes into complete
messages, :class:`ChunkWriter` turns messages into chunk bytes.

The reader is the hot path of ingest, so it is one loop over one ``bytearray`` with
``struct`` and plain ints, and it only consumes a chunk once the whole chunk (header
and payload) is buffered. That makes it indifferent to how the input is split, and it
never holds more than one partial message per chunk stream plus one unparsed chunk.

Timestamp rules (Adobe RTMP spec 5.3.1; FFmpeg and SRS read it the same way):

* fmt 0 carries the absolute timestamp, fmt 1 and 2 a delta from the previous message
  on the chunk stream. Timestamps are kept modulo 2**32; unwrapping is the caller's job.
* A fmt 3 chunk that starts a new message repeats the previous header's timestamp
  field as a delta. After a fmt 0 header that field is the absolute timestamp, so fmt 0
  at T followed by a fmt 3 message gives 2T (spec: "If a Type 3 chunk follows a Type 0
  chunk, then the timestamp delta for this Type 3 chunk is the same as the timestamp of
  the Type 0 chunk"). nginx-rtmp instead uses a zero delta there; we follow the spec,
  FFmpeg and SRS, and our writer never produces that ambiguous sequence.
* A field of 0xFFFFFF means a 4-byte extended timestamp follows, and every fmt 3 chunk
  on that chunk stream carries it too until the next fmt 0/1/2 header. OBS before 30.1
  (old librtmp) omits it on continuation chunks, so for fmt 3 the 4 bytes are peeked
  and taken as the extended timestamp only if they equal the expected value (the raw
  field of the last header, or the message's absolute timestamp, which some writers
  put there); otherwise they are payload. SRS does the same; FFmpeg and nginx-rtmp
  always consume them.
* A fmt 1/2/3 chunk on a chunk stream that never had a fmt 0 header is an error,
  except fmt 1 on chunk stream 2: librtmp sends its first user control message that
  way (SRS makes the same exception); stream id and base timestamp are then 0.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass

log = logging.getLogger(__name__)

MSG_SET_CHUNK_SIZE = 1
MSG_ABORT = 2
DEFAULT_CHUNK_SIZE = 128
EXTENDED_TIMESTAMP = 0xFFFFFF
MASK32 = 0xFFFFFFFF

_HDR = struct.Struct(">IHB")  # 3-byte timestamp field + 3-byte length, read as 4 + 2, + type
_U32 = struct.Struct(">I")
_U32LE = struct.Struct("<I")


class ProtocolError(Exception):
    """The peer sent bytes that break the protocol; the connection should be closed."""


class LimitExceeded(ProtocolError):
    """The peer went over a resource limit; ``reason`` names it (a metric label)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(slots=True)
class RtmpMessage:
    csid: int
    type_id: int
    stream_id: int
    timestamp: int
    payload: bytes | bytearray  # bytearray: assembled from several chunks


def basic_header(fmt: int, csid: int) -> bytes:
    """The 1-, 2- or 3-byte chunk basic header for ``fmt`` (0..3) and ``csid`` (2..65599)."""
    if csid < 2 or csid > 65599:
        raise ValueError(f"chunk stream id {csid} out of range")
    if csid < 64:
        return bytes((fmt << 6 | csid,))
    if csid < 320:
        return bytes((fmt << 6, csid - 64))
    return bytes((fmt << 6 | 1, (csid - 64) & 0xFF, (csid - 64) >> 8))


class _InStream:
    """Reader state of one chunk stream: the last header and the partial message."""

    __slots__ = ("delta", "ext", "ext_value", "length", "parts", "received", "stream_id", "timestamp", "type_id")

    def __init__(self) -> None:
        self.timestamp = 0
        self.delta = 0
        self.length = 0
        self.type_id = 0
        self.stream_id = 0
        self.ext = False
        self.ext_value = 0
        self.received = 0
        self.parts: bytearray | None = None


class ChunkReader:
    """Bytes in (any split), complete messages out. Raises :class:`ProtocolError`.

    Set Chunk Size (type 1) and Abort (type 2) take effect inside the reader as soon as
    they complete, even mid-buffer; they are still returned for the caller to see.

    Memory is bounded by the limits: a message may declare at most ``max_message_bytes``,
    at most ``max_partial_streams`` chunk streams may hold a partial message at once, and
    those partial messages may hold ``max_partial_bytes`` together. Going over any of them
    raises :class:`LimitExceeded`. :meth:`set_limits` changes them between reads (the
    protocol widens them once a publish is authorised)."""

    def __init__(
        self,
        *,
        max_chunk_size: int = 0xFFFFFF,
        max_message_bytes: int = 16 * 1024 * 1024,
        max_chunk_streams: int = 64,
        max_partial_streams: int = 64,
        max_partial_bytes: int = 32 * 1024 * 1024,
    ) -> None:
        self.max_chunk_size = max_chunk_size
        self.max_message_bytes = max_message_bytes
        self.max_chunk_streams = max_chunk_streams
        self.max_partial_streams = max_partial_streams
        self.max_partial_bytes = max_partial_bytes
        self.chunk_size = DEFAULT_CHUNK_SIZE
        self.partial_bytes = 0  # payload bytes held in partial messages
        self.partial_streams = 0  # chunk streams holding a partial message
        self.peak_partial_bytes = 0
        self._buf = bytearray()
        self._streams: dict[int, _InStream] = {}

    def set_limits(self, *, max_message_bytes: int, max_partial_streams: int, max_partial_bytes: int) -> None:
        """New limits for later input (what is already buffered stays)."""
        self.max_message_bytes = max_message_bytes
        self.max_partial_streams = max_partial_streams
        self.max_partial_bytes = max_partial_bytes

    @property
    def buffered(self) -> int:
        """Bytes held: the unparsed tail plus every partial message."""
        return len(self._buf) + self.partial_bytes

    def feed(self, data: bytes | bytearray | memoryview) -> list[RtmpMessage]:
        """Messages completed by ``data``. A message that came in one chunk has a ``bytes``
        payload; one assembled from several chunks hands over the ``bytearray`` it was
        assembled in (no copy: a media frame's bytes are copied once more, into its unit)."""
        held = self._buf
        # Nothing held over from the last read (the usual case): parse ``data`` where it is
        # and keep only its unparsed tail, instead of copying every byte into the buffer.
        buf: bytes | bytearray
        if held or not isinstance(data, bytes):
            held += data
            buf = held
        else:
            buf = data
        n = len(buf)
        out: list[RtmpMessage] = []
        streams = self._streams
        chunk_size = self.chunk_size
        max_message = self.max_message_bytes
        pos = 0
        mv = memoryview(buf)
        try:
            while pos < n:
                b0 = buf[pos]
                fmt = b0 >> 6
                csid = b0 & 0x3F
                p = pos + 1
                if csid < 2:
                    if csid == 0:
                        if p >= n:
                            break
                        csid = 64 + buf[p]
                        p += 1
                    else:
                        if p + 1 >= n:
                            break
                        csid = 64 + buf[p] + (buf[p + 1] << 8)
                        p += 2
                st = streams.get(csid)
                if fmt == 3:
                    if st is None:
                        raise ProtocolError(f"chunk stream {csid}: fmt 3 chunk before any full header")
                    received = st.received
                    ts = st.timestamp if received else (st.timestamp + st.delta) & MASK32
                    if st.ext:
                        if p + 4 > n:
                            break
                        value = _U32.unpack_from(buf, p)[0]
                        if value == st.ext_value or value == ts:
                            p += 4
                    remaining = st.length - received
                else:
                    if st is not None and st.received:
                        raise ProtocolError(f"chunk stream {csid}: fmt {fmt} header inside an incomplete message")
                    if fmt == 2:
                        if st is None:
                            raise ProtocolError(f"chunk stream {csid}: fmt 2 chunk before any full header")
                        if p + 3 > n:
                            break
                        field = buf[p] << 16 | buf[p + 1] << 8 | buf[p + 2]
                        p += 3
                        length, type_id, stream_id = st.length, st.type_id, st.stream_id
                    else:
                        if p + 7 > n:
                            break
                        word, low, type_id = _HDR.unpack_from(buf, p)
                        field = word >> 8
                        length = (word & 0xFF) << 16 | low
                        if fmt == 0:
                            if p + 11 > n:
                                break
                            stream_id = _U32LE.unpack_from(buf, p + 7)[0]
                            p += 11
                        else:
                            if st is None and csid != 2:
                                raise ProtocolError(f"chunk stream {csid}: fmt 1 chunk before any full header")
                            stream_id = st.stream_id if st is not None else 0
                            p += 7
                        if length > max_message:
                            raise LimitExceeded("message_size",
                                                f"message of {length} bytes exceeds the {max_message} byte limit")
                    ext = field == EXTENDED_TIMESTAMP
                    if ext:
                        if p + 4 > n:
                            break
                        field = _U32.unpack_from(buf, p)[0]
                        p += 4
                    if fmt == 0:
                        ts = field
                    else:
                        ts = ((st.timestamp if st is not None else 0) + field) & MASK32
                    received = 0
                    remaining = length
                take = min(chunk_size, remaining)
                end = p + take
                if end > n:
                    break
                # The whole chunk is here: commit the header, then the payload.
                if st is None:
                    if len(streams) >= self.max_chunk_streams:
                        raise LimitExceeded("chunk_streams", f"more than {self.max_chunk_streams} chunk streams")
                    st = streams[csid] = _InStream()
                if fmt != 3:
                    st.timestamp = ts
                    st.delta = field
                    st.length = length
                    st.type_id = type_id
                    st.stream_id = stream_id
                    st.ext = ext
                    st.ext_value = field
                elif not received:
                    st.timestamp = ts
                pos = end
                payload: bytes | bytearray
                if take == remaining and not received:
                    payload = bytes(mv[p:end])
                else:
                    self._hold(st, mv, p, end, received)
                    received += take
                    if received < st.length:
                        st.received = received
                        continue
                    assert st.parts is not None
                    payload = st.parts
                    self.partial_bytes -= len(payload)
                    self.partial_streams -= 1
                    st.parts = None
                    st.received = 0
                type_id = st.type_id
                out.append(RtmpMessage(csid, type_id, st.stream_id, st.timestamp, payload))
                if type_id == MSG_SET_CHUNK_SIZE:
                    chunk_size = self._set_chunk_size(payload)
                elif type_id == MSG_ABORT:
                    self._abort(payload)
        finally:
            mv.release()
            if buf is held:
                if pos:
                    del held[:pos]
            elif pos < n:
                held += memoryview(buf)[pos:]
        return out

    def _hold(self, st: _InStream, mv: memoryview, p: int, end: int, received: int) -> None:
        """Append a chunk's payload ``mv[p:end]`` to the partial message of ``st``, within
        the limits (checked first: a live slice of the buffer would block its resizing)."""
        held = self.partial_bytes + end - p
        if held > self.max_partial_bytes:
            raise LimitExceeded("partial_bytes",
                                f"partial messages would hold {held} bytes,"
                                f" over the {self.max_partial_bytes} byte limit")
        if received:
            st.parts += mv[p:end]  # type: ignore[operator]
        else:
            if self.partial_streams >= self.max_partial_streams:
                raise LimitExceeded("partial_streams",
                                    f"more than {self.max_partial_streams} chunk streams with partial messages")
            st.parts = bytearray(mv[p:end])
            self.partial_streams += 1
        self.partial_bytes = held
        self.peak_partial_bytes = max(self.peak_partial_bytes, held)

    def _set_chunk_size(self, payload: bytes | bytearray) -> int:
        if len(payload) < 4:
            raise ProtocolError("short Set Chunk Size message")
        size = int(_U32.unpack_from(payload)[0])
        if size == 0 or size > self.max_chunk_size:
            raise ProtocolError(f"chunk size {size} outside 1..{self.max_chunk_size}")
        log.debug("peer chunk size %d -> %d", self.chunk_size, size)
        self.chunk_size = size
        return size

    def _abort(self, payload: bytes | bytearray) -> None:
        if len(payload) < 4:
            raise ProtocolError("short Abort message")
        csid = int(_U32.unpack_from(payload)[0])
        st = self._streams.get(csid)
        if st is not None and st.received:
            log.debug("abort: dropping %d bytes of a partial message on chunk stream %d", st.received, csid)
            self.partial_bytes -= st.received
            self.partial_streams -= 1
            st.parts = None
            st.received = 0


class _OutStream:
    __slots__ = ("delta", "fmt", "length", "stream_id", "timestamp", "type_id")

    def __init__(self, timestamp: int, delta: int, length: int, type_id: int, stream_id: int, fmt: int) -> None:
        self.timestamp = timestamp
        self.delta = delta
        self.length = length
        self.type_id = type_id
        self.stream_id = stream_id
        self.fmt = fmt


class ChunkWriter:
    """Messages to chunk bytes, compressing headers per chunk stream (fmt 0..3).

    Extended timestamps are repeated on every fmt 3 chunk, as the spec asks. A fmt 3
    header never starts a message right after a fmt 0 header (fmt 2 is used instead),
    because readers disagree on what that means (see the module docstring)."""

    def __init__(self, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        self.chunk_size = chunk_size
        self._streams: dict[int, _OutStream] = {}

    def write(self, msg: RtmpMessage) -> bytes:
        csid, payload = msg.csid, msg.payload
        ts = msg.timestamp & MASK32
        length = len(payload)
        prev = self._streams.get(csid)
        if prev is None or prev.stream_id != msg.stream_id or ts < prev.timestamp:
            fmt, field = 0, ts
        else:
            field = ts - prev.timestamp
            if length != prev.length or msg.type_id != prev.type_id:
                fmt = 1
            elif field != prev.delta or prev.fmt == 0:
                fmt = 2
            else:
                fmt = 3
        ext = field >= EXTENDED_TIMESTAMP
        out = bytearray(basic_header(fmt, csid))
        if fmt < 3:
            out += (EXTENDED_TIMESTAMP if ext else field).to_bytes(3, "big")
            if fmt < 2:
                out += length.to_bytes(3, "big")
                out.append(msg.type_id)
                if fmt == 0:
                    out += _U32LE.pack(msg.stream_id)
        extended = _U32.pack(field) if ext else b""
        out += extended
        size = self.chunk_size
        out += payload[:size]
        if length > size:
            continuation = basic_header(3, csid) + extended
            for offset in range(size, length, size):
                out += continuation
                out += payload[offset:offset + size]
        if prev is None:
            self._streams[csid] = _OutStream(ts, field, length, msg.type_id, msg.stream_id, fmt)
        else:
            prev.timestamp, prev.delta, prev.length = ts, field, length
            prev.type_id, prev.stream_id = msg.type_id, msg.stream_id
            if fmt != 3:
                prev.fmt = fmt
        return bytes(out)
