"""Wires the origin's media path into the app: RTMP listener -> session manager -> stream
hub -> queued HLS output -> HLS service, and the ``stream`` block of the room API."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from livecast import tls
from livecast.core.events import (
    RoomDeleted,
    StreamKeyRotated,
)
from livecast.core.media import MediaUnit
from livecast.core.tasks import Supervisor
from livecast.delivery import routes as hls_routes
from livecast.delivery.origin import OriginSource
from livecast.hls.service import DEFAULT_RENDITION, HlsService, StreamWriter
from livecast.keys import BOUND_PORTS, EVENTS, ROOMS, SETTINGS
from livecast.pipeline.hub import LiveStream, StreamHub
from livecast.pipeline.outputs import QueuedOutput
from livecast.pipeline.sessions import SessionManager
from livecast.rooms import OWNER_ONLY, RoomExtras
from livecast.rtmp.listener import RtmpServer
from livecast.webhooks import WEBHOOKS

log = logging.getLogger(__name__)

HUB: web.AppKey[StreamHub] = web.AppKey("hub")
SESSIONS: web.AppKey[SessionManager] = web.AppKey("sessions")
OUTPUT_TASKS: web.AppKey[Supervisor] = web.AppKey("output_tasks")
HLS: web.AppKey[HlsService] = web.AppKey("hls")
RTMP: web.AppKey[RtmpServer] = web.AppKey("rtmp")
HLS_SOURCE: web.AppKey[OriginSource] = web.AppKey("hls_source")


class HlsSink:
    """Feeds one publisher session into the HLS service, in its queued output's task
    (PyAV muxing stays off the RTMP read path). A ``SyncSink``: muxing never waits, so the
    task calls it a batch at a time without a coroutine per unit."""

    def __init__(self, hls: HlsService, stream: LiveStream, rendition: str = DEFAULT_RENDITION) -> None:
        self.hls = hls
        self.slug = stream.slug
        self.rendition = rendition
        # Started at once, not in the task: a takeover's new session supersedes the old
        # one before the old one's queue closes.
        self.writer: StreamWriter = hls.publish_started(stream.slug, rendition=rendition)

    def __repr__(self) -> str:
        return f"HlsSink({self.slug}/{self.rendition})"

    def write(self, unit: MediaUnit) -> None:
        self.writer.write(unit)

    def set_metadata(self, values: dict[str, Any]) -> None:
        self.writer.set_metadata(values)

    def close(self) -> None:
        self.hls.publish_stopped(self.slug, self.writer)


def setup(app: web.Application, extras: RoomExtras) -> Callable[[web.Application], AsyncIterator[None]]:
    """Build the media path into ``app`` and return its lifecycle (the role's composition
    root runs it in its stack); the room JSON gets ``live`` and ``stream`` through ``extras``."""
    settings = app[SETTINGS]
    hls = HlsService(settings)
    hub = StreamHub()
    outputs = Supervisor("media-outputs")
    ingest = settings.ingest

    def hls_output(stream: LiveStream) -> QueuedOutput:
        return QueuedOutput(stream, HlsSink(hls, stream), outputs,
                            max_units=ingest.output_queue_units, max_bytes=ingest.output_queue_bytes,
                            lossless=True)

    hub.add_output_factory(hls_output)
    app[HLS] = hls
    app[HUB] = hub
    app[OUTPUT_TASKS] = outputs
    origin = app[HLS_SOURCE] = OriginSource(hls)
    hls_routes.setup(app, origin, origin)
    extras.register(_room_extras(hub, shared=bool(settings.cluster.redis)))
    return _media_ctx


def hls_writers(stream: LiveStream) -> list[StreamWriter]:
    """The HLS writers among a live stream's outputs."""
    return [out.sink.writer for out in stream.outputs
            if isinstance(out, QueuedOutput) and isinstance(out.sink, HlsSink)]


def _room_extras(hub: StreamHub, shared: bool = False) -> Callable[[str], dict[str, Any]]:
    """The room API's live state comes from the hub (the database flag may lag a moment).
    With ``shared`` live state (several origins), a room this origin does not hold keeps the
    stored flag, which only the origin holding the room sets and clears: every origin then
    answers alike."""

    def extras(slug: str) -> dict[str, Any]:
        stream = hub.get(slug)
        if stream is None:
            return {"stream": None} if shared else {"live": False, "stream": None}
        info = stream.info()
        # Units the segmenter had to drop (bad payloads, backwards timestamps, ...) and
        # units a slow output dropped to the next keyframe.
        info["dropped_packets"] = stream.stats.dropped + sum(
            sum(writer.counters.values()) for writer in hls_writers(stream)
        )
        return {"live": True, "stream": info, OWNER_ONLY: {"stream": {"peer": stream.peer}}}

    return extras


async def _media_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    hls, hub, events = app[HLS], app[HUB], app[EVENTS]
    sessions = SessionManager(hub, app[ROOMS], events)
    rtmp = RtmpServer(settings, sessions, app[ROOMS])
    app[SESSIONS] = sessions
    await hls.start()
    await rtmp.start(settings.server.host, settings.server.rtmp_port)
    app[RTMP] = rtmp
    app[BOUND_PORTS]["rtmp"] = rtmp.port
    server_tls = tls.server_tls(app)
    if server_tls is not None:
        app[BOUND_PORTS]["rtmps"] = await rtmp.start(settings.server.host, settings.tls.rtmps_port,
                                                     ssl=server_tls.context)
    if WEBHOOKS in app and settings.webhooks.on_publish:
        rtmp.publish_hook = app[WEBHOOKS].authorise_publish

    def on_event(event: object) -> None:
        if isinstance(event, RoomDeleted):
            sessions.kick(event.slug, "room deleted")
        elif isinstance(event, StreamKeyRotated):
            sessions.kick(event.slug, "stream key rotated")

    unsubscribe = events.subscribe(on_event)
    yield
    unsubscribe()
    await rtmp.close()
    await app[OUTPUT_TASKS].wait(timeout=5.0)  # outputs drain and close their sinks
    await app[OUTPUT_TASKS].close()
    await sessions.close()
    await hls.close()
