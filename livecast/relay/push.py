"""The push side of a relay: one target's connection, fed from the room's queued output.

``PushSink`` is the sink of a ``PushOutput`` (its own bounded queue that drops to the
next keyframe), so a slow or stalled target never delays the room or the other targets.
In the output's task it connects (TCP or TLS, the RTMP handshake, connect and publish,
bounded by ``connect_timeout``), sends the decoder configuration and metadata, and then
forwards each unit as an FLV tag body, unchanged (Enhanced RTMP tags for HEVC/AV1, by
``media.flv``), as the message bytes the session's targets share (``relay.wire``). Its
output (``relay.output``) hands it what was queued as one batch, whose messages are
written with one transport call; the sink waits for the transport only above its
high-water mark. A write the target does not take within ``connect_timeout`` drops the
connection; so does the server closing it. The sink then retries with backoff (units
meanwhile are dropped and counted) and resumes at the next keyframe. A refusal (the
server's ``_error`` or an error ``onStatus``, e.g. a bad key) is final for this session:
state ``failed`` with the server's reason.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

from livecast.config import RelaySettings
from livecast.core.backoff import Backoff
from livecast.core.media import MediaUnit, Track
from livecast.relay.client import Published, Refused, RtmpClientProtocol
from livecast.relay.flusher import WriteFlusher
from livecast.relay.targets import PushTarget, TargetStatus, split_url
from livecast.relay.wire import message_for
from livecast.rtmp.chunks import ProtocolError

log = logging.getLogger(__name__)

StateListener = Callable[[PushTarget, TargetStatus], None]
_HIGH_WATER = 64 * 1024  # asyncio's default: drain() returns at once below it


class TargetRefused(Exception):
    """The target server refused the connection or the publish."""


class PushSink:
    """Sends one live session of a room to one push target (the sink of a ``PushOutput``)."""

    def __init__(self, target: PushTarget, status: TargetStatus, settings: RelaySettings,
                 on_state: StateListener, flusher: WriteFlusher | None = None) -> None:
        self.target = target
        self.status = status
        self.settings = settings
        self._on_state = on_state
        self._flusher = flusher
        self._backoff = Backoff(settings.retry_first, settings.retry_max, jitter=0.1)
        self._retry_at = 0.0
        self._proto: RtmpClientProtocol | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._listen: asyncio.Task[None] | None = None
        self._configs: dict[Track, MediaUnit] = {}
        self._metadata: dict[str, Any] | None = None
        self._need_key = True
        self._failed = False
        self._pending: list[bytes] = []  # whole messages, written together at the end of a batch
        self._behind_since: float | None = None  # when the transport went above its high-water mark
        self._set_state("connecting", None)

    def __repr__(self) -> str:
        return f"PushSink({self.target.slug}->{self.target.name!r})"

    # -- BatchSink -------------------------------------------------------------------
    async def write(self, unit: MediaUnit) -> None:
        await self.write_batch([unit])

    async def write_batch(self, units: list[MediaUnit]) -> None:
        """Queues each unit's message (connecting first if need be), then sends them together."""
        if self._writer is not None and self._writer.transport.get_write_buffer_size() > _HIGH_WATER:
            await self._send_pending()  # waits (bounded) for the target to take what it holds
        for unit in units:
            if unit.config:
                self._configs[unit.track] = unit
            if self._proto is None or not self._proto.live:
                if not await self._ready():
                    if not unit.config:
                        self.status.dropped += 1
                    continue
                if unit.config:
                    continue  # sent with the configuration on connecting
            if self._need_key and unit.track is Track.VIDEO and not unit.config:
                if not unit.keyframe:  # after (re)connecting, video resumes at a keyframe
                    self.status.dropped += 1
                    continue
                self._need_key = False
            self._queue_unit(unit)
        if self._flusher is None:
            await self._send_pending()
        elif self._pending and self._writer is not None:
            self._flusher.add(self)  # written with the other targets' batches, at the loop's next turn

    async def set_metadata(self, values: dict[str, Any]) -> None:
        self._metadata = dict(values)
        if self._proto is not None and self._proto.live:
            self._proto.send_metadata(self._metadata)
            await self._send_pending()  # a stalled target is retried, as for media

    async def close(self) -> None:
        if self._proto is not None and self._writer is not None:
            self._proto.unpublish()
            try:
                await self._flush()
            except (OSError, TimeoutError):
                pass
        await self._disconnect()
        if not self._failed:  # idle; the last error stays as the reason until the next session
            self._set_state("idle", self.status.reason if self.status.state == "retrying" else None)

    # -- connection ----------------------------------------------------------------
    async def _ready(self) -> bool:
        if self._proto is not None and self._proto.live:
            return True
        if self._failed or time.monotonic() < self._retry_at:
            return False
        if self._writer is not None:
            await self._disconnect()  # the connection the target closed
        try:
            await asyncio.wait_for(self._connect(), self.settings.connect_timeout)
        except TargetRefused as err:
            await self._disconnect()
            self._failed = True
            self._set_state("failed", self._redact(str(err)))
            log.warning("push target %s of room %s refused the stream: %s",
                        self.target.name, self.target.slug, self.status.reason)
            return False
        except (OSError, ProtocolError, TimeoutError, EOFError, ssl.SSLError) as err:
            await self._disconnect()
            self._retry(_reason(err))
            return False
        self._backoff.reset()
        self._set_state("live", None)
        return True

    async def _connect(self) -> None:
        host, port, app, tls = split_url(self.target.url)
        context = _tls_context(self.target.verify_tls) if tls else None
        self._reader, self._writer = await asyncio.open_connection(
            host, port, ssl=context, server_hostname=host if tls else None)
        sock = self._writer.get_extra_info("socket")
        if self.settings.send_buffer_bytes and sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.settings.send_buffer_bytes)
        scheme = "rtmps" if tls else "rtmp"
        self._proto = RtmpClientProtocol(f"{scheme}://{host}:{port}/{app}", app, self.target.key)
        await self._flush()
        while True:
            data = await self._reader.read(65536)
            if not data:
                raise EOFError("the target closed the connection")
            for event in self._proto.receive(data):
                if isinstance(event, Refused):
                    raise TargetRefused(event.reason)
                if isinstance(event, Published):
                    await self._after_publish()
                    return
            await self._flush()

    async def _after_publish(self) -> None:
        assert self._proto is not None and self._reader is not None
        self._need_key = True
        if self._metadata:
            self._proto.send_metadata(self._metadata)
        for unit in self._configs.values():
            self._queue_unit(unit)
        await self._flush()
        self._listen = asyncio.get_running_loop().create_task(self._read_loop(self._reader, self._proto),
                                                              name=f"push-read-{self.target.id}")

    async def _read_loop(self, reader: asyncio.StreamReader, proto: RtmpClientProtocol) -> None:
        """Answers pings and notices a close or a late refusal."""
        reason = "the target closed the connection"
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                events = proto.receive(data)
                refused = [e for e in events if isinstance(e, Refused)]
                if refused:
                    reason = refused[0].reason
                    break
                if self._writer is not None and proto is self._proto:
                    self._writer.write(proto.data_to_send())
        except (OSError, ProtocolError) as err:
            reason = _reason(err)
        if proto is self._proto:
            proto.state = "closed"
            self._retry(reason)

    async def _disconnect(self, abort: bool = False) -> None:
        """Closes the connection; ``abort``: at once, without waiting to send what the transport holds."""
        listen, self._listen = self._listen, None
        if listen is not None and listen is not asyncio.current_task():
            listen.cancel()
        writer, self._writer = self._writer, None
        self._proto = None
        self._pending = []  # messages for this connection only
        self._behind_since = None
        if writer is not None and abort:
            writer.transport.abort()
        elif writer is not None:
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            except (OSError, TimeoutError, ssl.SSLError):
                pass

    def _retry(self, reason: str) -> None:
        self._retry_at = time.monotonic() + self._backoff.next()
        self.status.reconnects += 1
        self._set_state("retrying", self._redact(reason))
        log.info("push target %s of room %s: %s; retrying", self.target.name, self.target.slug,
                 self.status.reason)

    # -- media ---------------------------------------------------------------------
    def _queue_unit(self, unit: MediaUnit) -> None:
        assert self._proto is not None
        data = message_for(unit, self._proto.stream_id)
        if data is None:
            self.status.dropped += 1
            return
        self._pending.append(data)

    async def _send_pending(self) -> None:
        if self._writer is None:
            return
        try:
            await self._flush()
        except (OSError, TimeoutError) as err:
            stalled = isinstance(err, TimeoutError)
            self._retry("the target stopped reading" if stalled else _reason(err))
            await self._disconnect(abort=stalled)  # a stalled target would not take the rest either

    def write_pending(self) -> None:
        """Writes the queued messages (and any protocol bytes) with one transport call."""
        if self._proto is not None:
            data = self._proto.data_to_send()
            if data:
                self._pending.append(data)
        pending, self._pending = self._pending, []
        if self._writer is None or not pending:
            return
        self._writer.writelines(pending)
        self.status.bytes_sent += sum(map(len, pending))
        if self._behind_since is None and self._writer.transport.get_write_buffer_size() > _HIGH_WATER:
            self._behind_since = time.monotonic()  # the target's time to take it runs from now

    async def _flush(self) -> None:
        self.write_pending()
        # Waiting (bounded) only when the transport holds more than its high-water mark:
        # a timer per unit would cost more than sending it.
        writer = self._writer
        if writer is None or writer.transport.get_write_buffer_size() <= _HIGH_WATER:
            self._behind_since = None
            return
        since = self._behind_since if self._behind_since is not None else time.monotonic()
        left = self.settings.connect_timeout - (time.monotonic() - since)
        await asyncio.wait_for(writer.drain(), max(left, 0.001))
        self._behind_since = None

    # -- state ---------------------------------------------------------------------
    def _set_state(self, state: str, reason: str | None) -> None:
        changed = state != self.status.state
        self.status.state, self.status.reason = state, reason
        if changed:
            self.status.since = time.time()
            try:
                self._on_state(self.target, self.status)
            except Exception:
                log.exception("push target state listener failed")

    def _redact(self, text: str) -> str:
        return text.replace(self.target.key, "***") if self.target.key else text


def _reason(err: BaseException) -> str:
    if isinstance(err, TimeoutError):
        return "timed out"
    if isinstance(err, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed: {err.verify_message}"
    return f"{type(err).__name__}: {err}"[:300]


def _tls_context(verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
