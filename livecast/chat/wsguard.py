"""What a chat socket's client may send, checked on the bytes before aiohttp parses them.

aiohttp's WebSocket reader accepts unmasked client frames (RFC 6455 section 5.1 says a
server MUST close the connection on one) and answers pings inside ``receive()``, so
control frames cost the server work without counting toward any limit. ``FrameGuard``
sits between the connection and aiohttp's reader: it follows the frame headers of the
byte stream (a few bytes per frame, payloads are skipped, not read) and

- fails the connection with 1002 on an unmasked frame;
- charges every frame (text, binary, continuation, ping, pong, close) to the socket's
  token bucket (``chat.frames_per_second``, ``chat.frame_burst``) and fails it with 1008
  when the bucket is empty.

Failing means: an error frame and a close frame with the code are written, nothing more
is passed to the reader (what the client still sends is dropped unparsed), the
socket's ``on_fail`` callback is told, and the connection is closed a moment later
(``LINGER``), which ends the socket's ``receive()`` loop. ``GuardedWebSocket`` is a
``WebSocketResponse`` that installs the guard when the handshake is done.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import WSCloseCode, web

from livecast.chat.frames import encode, error_frame
from livecast.chat.hub import text_frame

log = logging.getLogger(__name__)

_HEADER, _LENGTH, _SKIP = 0, 1, 2
LINGER = 1.0  # seconds between a failed connection's close frame and closing it

_TOO_MANY = text_frame(encode(error_frame("too_many_frames", "too many frames; closing")))
_UNMASKED = text_frame(encode(error_frame("protocol_error", "client frames must be masked (RFC 6455 5.1)")))


class FrameBudget:
    """A token bucket: ``rate`` frames a second, at most ``burst`` at once."""

    __slots__ = ("burst", "clock", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = float(max(1, burst))
        self.tokens = self.burst
        self.clock = clock
        self.stamp = clock()

    def refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self) -> bool:
        """One frame; False when the budget is spent."""
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class FrameHeaders:
    """Follows the frame boundaries of a client byte stream (sans I/O).

    ``feed(data)`` returns None while all is well, or ``(offset, code)``: the frame that
    starts at ``offset`` in ``data`` (0 when its header began in an earlier chunk) breaks
    a rule, 1002 for a missing mask, 1008 for an empty budget.
    """

    def __init__(self, budget: FrameBudget) -> None:
        self.budget = budget
        self._state = _HEADER
        self._header = bytearray()  # the current header's bytes so far
        self._need = 2  # header bytes needed to know the payload length
        self._skip = 0  # payload bytes still to pass over
        self.frames = 0

    def feed(self, data: bytes) -> tuple[int, int] | None:
        self.budget.refill()
        pos, end = 0, len(data)
        while pos < end:
            if self._state == _SKIP:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
                if self._skip == 0:
                    self._state = _HEADER
                continue
            start = pos - len(self._header)
            take = min(self._need - len(self._header), end - pos)
            self._header += data[pos:pos + take]
            pos += take
            if len(self._header) < self._need:
                return None
            broken = self._header_done()
            if broken is not None:
                return max(0, start), broken
        return None

    def _header_done(self) -> int | None:
        header = self._header
        if self._state == _HEADER:
            if not header[1] & 0x80:
                return int(WSCloseCode.PROTOCOL_ERROR)
            self.frames += 1
            if not self.budget.take():
                return int(WSCloseCode.POLICY_VIOLATION)
            size = header[1] & 0x7F
            extra = 2 if size == 126 else 8 if size == 127 else 0
            self._state, self._need = _LENGTH, 2 + extra + 4  # + the masking key
            if len(header) < self._need:
                return None
        size = header[1] & 0x7F
        if size == 126:
            size = int.from_bytes(header[2:4], "big")
        elif size == 127:
            size = int.from_bytes(header[2:10], "big")
        self._header = bytearray()
        self._need = 2
        self._skip = size
        self._state = _SKIP if size else _HEADER
        return None


def close_frame(code: int) -> bytes:
    """An unmasked close frame with ``code`` and no reason."""
    return bytes((0x88, 2)) + code.to_bytes(2, "big")


class FrameGuard:
    """Wraps aiohttp's WebSocket reader (the connection's payload parser)."""

    def __init__(self, reader: Any, transport: Any, budget: FrameBudget, notify: Callable[[int], None]) -> None:
        self.reader = reader
        self.transport = transport
        self.headers = FrameHeaders(budget)
        self.notify = notify
        self.failed: int | None = None

    def feed_data(self, data: bytes | bytearray | memoryview) -> tuple[bool, bytes]:
        if self.failed is not None:
            return False, b""  # dropped: the socket is being closed
        data = bytes(data)
        broken = self.headers.feed(data)
        if broken is None:
            return self.reader.feed_data(data)  # type: ignore[no-any-return]
        offset, code = broken
        if offset:
            self.reader.feed_data(data[:offset])  # the frames before the bad one are fine
        self.fail(code)
        return False, b""

    def feed_eof(self) -> None:
        self.reader.feed_eof()

    def fail(self, code: int) -> None:
        """Write the error and close frames, then close the connection ``LINGER`` seconds
        later, dropping what the client sends meanwhile: closing at once, with the
        client's frames unread, would make TCP answer with a reset, and a client that
        gets a reset may lose the close frame it has not read yet."""
        self.failed = code
        log.debug("failing a chat socket (%d) after %d frames", code, self.headers.frames)
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write((_TOO_MANY if code == WSCloseCode.POLICY_VIOLATION else _UNMASKED) + close_frame(code))
        self.notify(code)
        asyncio.get_running_loop().call_later(LINGER, transport.close)


_warned = False


def _unguarded_once() -> None:
    global _warned
    if not _warned:
        _warned = True
        log.error("this aiohttp version has no known place for the chat frame guard: chat sockets run without"
                  " the frame budget and the mask check (tested with aiohttp 3.14)")


class GuardedWebSocket(web.WebSocketResponse):
    """A ``WebSocketResponse`` whose incoming bytes go through a ``FrameGuard``."""

    def __init__(self, *, frames_per_second: float, frame_burst: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._frame_rate = frames_per_second
        self._frame_burst = frame_burst
        self.guard: FrameGuard | None = None
        # Called with the close code when the guard fails the connection (1008 or 1002).
        self.on_fail: Callable[[int], None] | None = None

    def _notify(self, code: int) -> None:
        if self.on_fail is not None:
            self.on_fail(code)

    def _post_start(self, request: web.BaseRequest, protocol: str | None, writer: Any) -> None:
        # aiohttp offers no hook for this: the connection's parser and the bytes that
        # arrived before the handshake finished (its "message tail") are private. The
        # tail is taken here and fed through the guard, so no byte passes unchecked.
        handler: Any = request.protocol
        if not (hasattr(handler, "_message_tail") and hasattr(handler, "_payload_parser")):
            _unguarded_once()  # another aiohttp: chat still works, without these checks
            super()._post_start(request, protocol, writer)
            return
        tail, handler._message_tail = handler._message_tail, b""
        super()._post_start(request, protocol, writer)
        budget = FrameBudget(self._frame_rate, self._frame_burst)
        guard = FrameGuard(handler._payload_parser, request.transport, budget, self._notify)
        handler._payload_parser = self.guard = guard
        if tail:
            guard.feed_data(tail)
