"""The origin's composition root: builds the database, webhooks, accounts/rooms API,
cluster registry, chat, the media path (RTMP -> hub -> HLS), metrics and pages with
their arguments, and runs their lifecycles in one ``AsyncExitStack`` (livecast.app.lifecycle):
started in the order of ``parts`` below, stopped in reverse."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import cast

from aiohttp import web

from livecast import demo, webhooks
from livecast.api import cluster as cluster_api
from livecast.api import routes as api_routes
from livecast.app.buses import make_bus
from livecast.app.lifecycle import Lifecycle, run_in_order
from livecast.chat import routes as chat_routes
from livecast.chat.metrics import ChatCollector
from livecast.chat.ws import CHAT
from livecast.cluster.registry import Registry
from livecast.config import Settings
from livecast.storage.sqlite import SqliteDatabase
from livecast.ingest import component as ingest
from livecast.ingest.metrics import IngestCollector
from livecast.keys import DB, EVENTS
from livecast.observe import metrics as observe_metrics
from livecast.observe import setup as setup_observability
from livecast.relay import component as relay
from livecast.web import routes as web_routes


def build(app: web.Application, settings: Settings) -> None:
    parts: list[Lifecycle] = [_database(settings)]
    parts.append(webhooks.setup(app))  # before ingest and chat: its queue drains after their last events
    parts.append(api_routes.setup(app))
    cluster_api.setup(app, Registry(settings.cluster.heartbeat_timeout))
    bus = make_bus(settings.chat, settings.cluster.heartbeat_interval, settings.cluster.heartbeat_timeout)
    parts.append(chat_routes.setup(app, bus))
    parts.append(relay.setup(app, lambda: app[ingest.HUB]))  # before the media path: stops after it
    parts.append(_media(app))
    parts.append(relay.pulls(app, lambda: app[ingest.SESSIONS]))  # needs the media path's session manager
    hub, hls = app[ingest.HUB], app[ingest.HLS]
    hub.keyframe_limit = settings.hls.segment_duration  # stream-health warnings, metrics or not
    metrics = setup_observability(app, settings.metrics.per_room)
    collector = IngestCollector(hub, lambda: app.get(ingest.RTMP), per_room=settings.metrics.per_room)
    hub.add_output_factory(collector.ingest.output)
    hls.add_listener(collector.segments.listener(hls.info))
    app[EVENTS].subscribe(collector.forget)
    metrics.register(collector)
    metrics.register(ChatCollector(app[CHAT]))
    metrics.register(relay.collector(app))
    parts.append(observe_metrics.loop_lag_ctx)
    web_routes.setup(app, media_origins=lambda: cluster_api.media_origins(app))
    if settings.server.demo:
        parts.append(demo.setup(app))  # after the media path: it publishes to the RTMP listener
    app.cleanup_ctx.append(run_in_order(parts))


def _media(app: web.Application) -> Lifecycle:
    """The media path's lifecycle. ``ingest.setup`` still registers it as a cleanup
    context of its own; it is taken from there into this role's stack."""
    before = len(app.cleanup_ctx)
    ingest.setup(app)
    assert len(app.cleanup_ctx) == before + 1, "ingest.setup registers exactly one lifecycle"
    return cast(Lifecycle, app.cleanup_ctx.pop())


def _database(settings: Settings) -> Lifecycle:
    async def database(app: web.Application) -> AsyncIterator[None]:
        db = SqliteDatabase(settings.db_path)
        await db.open()
        app[DB] = db
        try:
            yield
        finally:
            await db.close()

    return database
