"""The RTMP listener: a thin asyncio shell around the sans-IO ``RtmpServerProtocol``.

Each connection feeds socket bytes to the protocol, sends what it queues, and acts on
its events: publish authorisation against the room's stream key, takeover of a live
room by a new publisher, media into the stream hub. Anything wrong with one connection
(bad bytes, timeouts, floods, unsupported codecs) closes that connection with one log
line and touches nothing else.

A connection is *pending* from accept until a publish with a valid key is accepted (and
again after its publish ends). Pending connections are capped per address and in all,
apart from publishers, and must authenticate within ``ingest.auth_timeout``; when the
global cap is full a newcomer evicts the oldest pending connection of the address that
holds the most, so a real encoder (which authenticates within milliseconds) always gets
in. Refusals are counted by reason and logged once (see :mod:`livecast.rtmp.limits`).
"""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast

from livecast.config import Settings
from livecast.core.media import Codec, MediaUnit
from livecast.media.flv import FlvToUnits, UnsupportedCodec
from livecast.pipeline.hub import LiveStream
from livecast.pipeline.sessions import PublishSession, SessionManager
from livecast.rtmp.limits import IngestGate
from livecast.rtmp.protocol import (
    AudioData,
    Closed,
    LimitExceeded,
    MetaData,
    ProtocolError,
    PublishRequested,
    RtmpServerProtocol,
    Unpublished,
    VideoData,
)

log = logging.getLogger(__name__)

APP_NAME = "live"
# A real encoder sends ~50-150 media messages per second OF MEDIA (frames plus audio
# packets), however fast it pushes. FLOOD_WINDOW messages spanning less than
# FLOOD_MIN_SPAN_MS of timestamps is a flood of tiny messages: the publisher is dropped.
FLOOD_WINDOW = 1000
FLOOD_MIN_SPAN_MS = 1000
# A socket read this large means the kernel is holding more for us: we are behind.
BACKLOG_READ_BYTES = 64 * 1024


class PublishAuthority(Protocol):
    """Decides which room a stream key publishes to (the room service)."""

    async def find_by_stream_key(self, key: str) -> Any: ...


# An extra check once the stream key matched (the on_publish webhook): (slug, peer, app) -> allowed.
PublishHook = Callable[[str, str, str], Awaitable[bool]]


def _codec_summary(stream: LiveStream) -> tuple[object, object, object, object]:
    info = stream.info()
    return info["video_codec"], info["width"], info["height"], info["audio_codec"]


class RtmpServer:
    def __init__(
        self,
        settings: Settings,
        sessions: SessionManager,
        authority: PublishAuthority,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.authority = authority
        self.connections: set[RtmpConnection] = set()
        self.publish_hook: PublishHook | None = None
        self.gate = IngestGate(settings.ingest)
        self._server: asyncio.base_events.Server | None = None
        self._more_servers: list[asyncio.base_events.Server] = []
        self._sweeper: asyncio.Task[None] | None = None

    def full(self, slug: str) -> bool:
        """A new publish of ``slug`` would be refused: ``ingest.max_publishers`` rooms are live
        here (a room already live here may always be taken over)."""
        return self.sessions.get(slug) is None and len(self.sessions.hub) >= self.settings.ingest.max_publishers

    @property
    def port(self) -> int:
        assert self._server is not None and self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, host: str, port: int, ssl: ssl_.SSLContext | None = None) -> int:
        """Listen for RTMP (or, with ``ssl``, RTMPS); call again for a second listener.
        Returns the bound port."""
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: RtmpConnection(self), host, port, backlog=256, ssl=ssl,
            ssl_handshake_timeout=self.settings.ingest.handshake_timeout if ssl else None,
        )
        if ssl is None and self._server is None:
            self._server = server
        else:
            self._more_servers.append(server)
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep(), name="rtmp-sweeper")
        bound = int(server.sockets[0].getsockname()[1])
        log.info("%s listening on %s:%d", "RTMPS" if ssl else "RTMP", host, bound)
        return bound

    async def close(self) -> None:
        if self._sweeper:
            self._sweeper.cancel()
        servers = [s for s in (self._server, *self._more_servers) if s is not None]
        for server in servers:
            server.close()
        for conn in list(self.connections):
            conn.abort("server shutting down")
        for server in servers:
            await server.wait_closed()

    def admit(self, conn: RtmpConnection) -> bool:
        if not self.gate.admit(conn):
            return False
        self.connections.add(conn)
        return True

    def closed(self, conn: RtmpConnection) -> None:
        self.connections.discard(conn)
        self.gate.closed(conn, conn.proto.peak_buffered)

    async def _sweep(self) -> None:
        """Once a second: enforce the handshake, authentication and idle timeouts, log
        the refusal summary and hand freed memory back to the OS."""
        ingest = self.settings.ingest
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for conn in list(self.connections):
                if not conn.proto.handshake_done and now - conn.opened > ingest.handshake_timeout:
                    conn.refuse("handshake_timeout", "handshake timeout")
                elif conn in self.gate.pending and now - conn.pending_since > ingest.auth_timeout:
                    conn.refuse("auth_timeout", f"no publish accepted within {ingest.auth_timeout:g} s "
                                                "(ingest.auth_timeout)")
                elif now - conn.last_rx > ingest.idle_timeout:
                    conn.abort("idle timeout")
            self.gate.tick(now)


class RtmpConnection(asyncio.Protocol):
    def __init__(self, server: RtmpServer) -> None:
        self.server = server
        ingest = server.settings.ingest
        self.proto = RtmpServerProtocol(
            max_chunk_size=ingest.max_chunk_size,
            max_message_bytes=ingest.max_message_bytes,
            max_chunk_streams=ingest.max_chunk_streams,
            max_partial_bytes=ingest.max_partial_bytes,
            preauth_max_bytes=ingest.preauth_max_bytes,
            preauth_max_message_bytes=ingest.preauth_max_message_bytes,
            preauth_max_partial_streams=ingest.preauth_max_partial_streams,
            ack_window=ingest.ack_window,
        )
        self.transport: asyncio.Transport | None = None
        self.peer = self.host = "?"
        self.opened = self.last_rx = self.pending_since = time.monotonic()
        self.app = ""
        self.session: PublishSession | None = None
        self.stream_id = 0
        self.converter = FlvToUnits()
        self._backlog: list[object] | None = None  # events held while a publish is authorised
        self._flood_count = 0
        self._flood_min = 0
        self._flood_max = 0
        self._closing = False

    # -- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        peer = self.transport.get_extra_info("peername")
        if peer:
            self.host, self.peer = str(peer[0]), f"{peer[0]}:{peer[1]}"
        if not self.server.admit(self):
            self._closing = True
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        try:
            events = self.proto.receive(data, backlogged=len(data) >= BACKLOG_READ_BYTES)
        except LimitExceeded as err:
            self.refuse(err.reason, str(err))
            return
        except ProtocolError as err:
            self.refuse("protocol_error", f"protocol error: {err}")
            return
        self._flush()
        if self._backlog is not None:
            self._backlog.extend(events)
            return
        self._handle(events)
        self._hold_if_congested()

    def _hold_if_congested(self) -> None:
        """Stop reading while a lossless output (HLS) is behind; resume when it caught up."""
        session = self.session
        if session is None or self._closing or not session.stream.congested or self.transport is None:
            return
        self.transport.pause_reading()
        session.stream.on_relief = self._relieved

    def _relieved(self) -> None:
        if not self._closing and self._backlog is None and self.transport is not None:
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self.server.closed(self)
        self._end_publish()

    # -- events ------------------------------------------------------------------------
    def _handle(self, events: list[object]) -> None:
        for i, event in enumerate(events):
            if self._closing:
                return
            if isinstance(event, (VideoData, AudioData)):
                self._media(event)
            elif isinstance(event, PublishRequested):
                rest = events[i + 1:]
                self._backlog = list(rest)
                assert self.transport is not None
                self.transport.pause_reading()
                asyncio.get_running_loop().create_task(self._authorise(event))
                return
            elif isinstance(event, MetaData):
                if self.session is not None:
                    self.session.set_metadata(event.values)
            elif isinstance(event, Unpublished):
                if event.stream_id == self.stream_id:
                    self._end_publish()
            elif isinstance(event, Closed):
                self.abort(None)
                return
            else:  # Connected
                app = getattr(event, "app", "")
                self.app = str(app).strip("/").split("?")[0]

    def _media(self, event: VideoData | AudioData) -> None:
        session = self.session
        if session is None:
            return  # media before a publish is accepted: ignore
        ts = event.timestamp
        if self._flood_count == 0:
            self._flood_min = self._flood_max = ts
        elif ts < self._flood_min:
            self._flood_min = ts
        elif ts > self._flood_max:
            self._flood_max = ts
        self._flood_count += 1
        if self._flood_count >= FLOOD_WINDOW:
            if self._flood_max - self._flood_min < FLOOD_MIN_SPAN_MS:
                self.abort(f"message flood ({FLOOD_WINDOW} media messages within {FLOOD_MIN_SPAN_MS} ms of timestamps)")
                return
            self._flood_count = 0
        try:
            if isinstance(event, VideoData):
                unit = self.converter.video(event.timestamp, event.payload)
            else:
                unit = self.converter.audio(event.timestamp, event.payload)
            if unit is not None and unit.config:
                self._check_codec(unit)
        except UnsupportedCodec as err:
            log.warning("rtmp %s room %s: %s", self.peer, session.slug, err)
            self.proto.send_status(self.stream_id, "error", "NetStream.Publish.Rejected", str(err))
            self._flush()
            self.abort(None)
            return
        if unit is not None:
            session.write(unit)

    def _check_codec(self, unit: MediaUnit) -> None:
        if unit.codec in (Codec.HEVC, Codec.AV1) and self.server.settings.hls.container != "fmp4":
            raise UnsupportedCodec(
                f"{unit.codec.value.upper()} needs fMP4 HLS output (hls.container = \"fmp4\"); this server uses MPEG-TS"
            )

    async def _authorise(self, req: PublishRequested) -> None:
        server = self.server
        try:
            room = None
            if self.app == APP_NAME and req.name:
                room = await server.authority.find_by_stream_key(req.name)
            if self._closing:
                return
            if room is None:
                server.gate.refusals.note("bad_key", self.host,
                                          f"{self.peer} publish rejected: unknown stream key (app {self.app!r})")
                self.proto.reject_publish(req, "NetStream.Publish.BadName", "invalid stream key")
                self._flush()
                self.abort(None)
                return
            if server.full(room.slug):  # before the hook: a refused publish claims nothing, asks nobody
                self._refuse_full(req, room.slug)
                return
            if server.publish_hook is not None and not await server.publish_hook(room.slug, self.peer, self.app):
                if self._closing:
                    return
                server.gate.refusals.note("publish_rejected", self.host,
                                          f"{self.peer} publish to {room.slug} rejected by the on_publish hook")
                self.proto.reject_publish(req, "NetStream.Publish.Rejected", "publish not authorised")
                self._flush()
                self.abort(None)
                return
            if self._closing:
                return
            if self.session is not None:
                self.proto.reject_publish(req, "NetStream.Publish.BadName", "already publishing")
                self._flush()
                return
            if server.full(room.slug):  # filled up while the hook ran
                self._refuse_full(req, room.slug)
                return
            self._begin_publish(req, room.slug)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("rtmp %s: publish authorisation failed", self.peer)
            self.abort(None)
            return
        finally:
            backlog, self._backlog = self._backlog or [], None
            if not self._closing and self.transport is not None:
                self.transport.resume_reading()
        self._handle(backlog)
        self._hold_if_congested()

    def _refuse_full(self, req: PublishRequested, slug: str) -> None:
        self.server.gate.refusals.note("server_full", self.host,
                                       f"{self.peer} publish to {slug} rejected: max_publishers reached")
        self.proto.reject_publish(req, "NetStream.Publish.Rejected", "server is full")
        self._flush()
        self.abort(None)

    def _begin_publish(self, req: PublishRequested, slug: str) -> None:
        server = self.server
        server.gate.pending.discard(self)
        self.proto.accept_publish(req)
        self._flush()
        self.stream_id = req.stream_id
        self.session = server.sessions.begin(slug, self)
        log.info("rtmp room %s: publish started from %s", slug, self.peer)

    def stop(self, reason: str | None) -> None:
        """The session manager's call: superseded by a takeover (``reason`` None) or kicked."""
        self.abort(reason)

    def _end_publish(self) -> None:
        session, self.session = self.session, None
        if session is None:
            return
        server = self.server
        if not self._closing:  # still connected: pending again, it may publish anew in time
            self.pending_since = time.monotonic()
            server.gate.pending.add(self, self.host)
        if session.end():
            stream = session.stream
            log.info(
                "rtmp room %s: publish stopped (%.1f s of media, %d bytes, video %s %sx%s, audio %s)",
                stream.slug, stream.stats.media_seconds, stream.stats.bytes, *_codec_summary(stream),
            )

    # -- output ------------------------------------------------------------------------
    def _flush(self) -> None:
        out = self.proto.data_to_send()
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)

    def refuse(self, reason: str, message: str) -> None:
        """Close this connection at once for an ingest limit, counted and logged by
        ``reason`` (without flooding the log)."""
        if self._closing:
            return
        self.server.gate.refusals.note(reason, self.host, f"{self.peer} disconnected: {message}")
        self.abort(None, hard=True)

    def abort(self, reason: str | None, *, hard: bool = False) -> None:
        """Close this connection; ``reason`` (if any) is logged once. ``hard`` drops
        unsent output too (a peer that does not read cannot hold the socket open)."""
        if self._closing:
            return
        self._closing = True
        if reason:
            log.warning("rtmp %s disconnected: %s", self.peer, reason)
        self._end_publish()
        self.server.gate.pending.discard(self)
        if self.transport is not None:
            if hard:
                self.transport.abort()
            else:
                self.transport.close()
