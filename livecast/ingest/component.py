"""Wires the origin's media path into the app: RTMP listener -> stream hub -> HLS service,
room live state and events, and the ``stream`` block of the room API."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from aiohttp import web

from livecast import tls
from livecast.api.rooms import OWNER_ONLY
from livecast.core.events import (
    RoomDeleted,
    StreamKeyRotated,
    StreamStarted,
    StreamStopped,
)
from livecast.core.media import MediaUnit
from livecast.delivery import routes as hls_routes
from livecast.delivery.origin import OriginSource
from livecast.hls.service import HlsService, StreamWriter
from livecast.keys import BOUND_PORTS, EVENTS, ROOM_EXTRAS, ROOMS, SETTINGS
from livecast.pipeline.hub import LiveStream, StreamHub
from livecast.rtmp.listener import RtmpServer
from livecast.webhooks import WEBHOOKS

log = logging.getLogger(__name__)

HUB: web.AppKey[StreamHub] = web.AppKey("hub")
HLS: web.AppKey[HlsService] = web.AppKey("hls")
RTMP: web.AppKey[RtmpServer] = web.AppKey("rtmp")


class HlsOutput:
    """Hub output that feeds one publisher session into the HLS service."""

    def __init__(self, hls: HlsService, stream: LiveStream) -> None:
        self.hls = hls
        self.slug = stream.slug
        self.writer: StreamWriter = hls.publish_started(stream.slug)

    def write(self, unit: MediaUnit) -> None:
        self.writer.write(unit)

    def set_metadata(self, values: dict[str, Any]) -> None:
        self.writer.set_metadata(values)

    def close(self) -> None:
        self.hls.publish_stopped(self.slug, self.writer)


def setup(app: web.Application) -> None:
    settings = app[SETTINGS]
    hls = HlsService(settings)
    hub = StreamHub()
    hub.add_output_factory(lambda stream: HlsOutput(hls, stream))
    app[HLS] = hls
    app[HUB] = hub
    hls_routes.setup(app, OriginSource(hls))
    app.cleanup_ctx.append(_media_ctx)


def _room_extras(hub: StreamHub) -> Callable[[str], dict[str, Any]]:
    """The room API's live state comes from the hub (the database flag may lag a moment)."""

    def extras(slug: str) -> dict[str, Any]:
        stream = hub.get(slug)
        if stream is None:
            return {"live": False, "stream": None}
        info = stream.info()
        # Units the segmenter had to drop (bad payloads, backwards timestamps, ...).
        info["dropped_packets"] = sum(
            sum(out.writer.counters.values()) for out in stream.outputs if isinstance(out, HlsOutput)
        )
        return {"live": True, "stream": info, OWNER_ONLY: {"stream": {"peer": stream.peer}}}

    return extras


async def _media_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    hls, hub, events = app[HLS], app[HUB], app[EVENTS]
    rooms = app[ROOMS]
    tasks: set[asyncio.Task[Any]] = set()

    def spawn(coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def set_live(slug: str, live: bool) -> None:
        try:
            await rooms.set_live(slug, live)
        except Exception:
            log.exception("could not record room %s as %s", slug, "live" if live else "offline")

    def on_start(stream: LiveStream) -> None:
        spawn(set_live(stream.slug, True))
        events.emit(StreamStarted(stream.slug, {"peer": stream.peer}))

    def on_stop(stream: LiveStream) -> None:
        spawn(set_live(stream.slug, False))
        events.emit(StreamStopped(stream.slug))

    rtmp = RtmpServer(settings, hub, rooms, on_start=on_start, on_stop=on_stop)
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
            rtmp.kick(event.slug, "room deleted")
        elif isinstance(event, StreamKeyRotated):
            rtmp.kick(event.slug, "stream key rotated")

    unsubscribe = events.subscribe(on_event)
    app[ROOM_EXTRAS].append(_room_extras(hub))
    yield
    unsubscribe()
    await rtmp.close()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
    await hls.close()

