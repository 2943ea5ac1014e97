"""The origin's composition root: the database, webhooks, accounts/rooms API, chat, the
media path (RTMP -> hub -> HLS), metrics and pages, built and started in this order and
stopped in the reverse one.

The database is opened in one ``AsyncExitStack``; each component's own start-up follows
in the order its ``setup`` is called below (aiohttp runs ``cleanup_ctx`` generators in
registration order and unwinds them in reverse): webhooks first so their queue closes
after ingest and chat emitted their last events; the RTMP listener before the demo
publisher that streams into it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from livecast import demo, webhooks
from livecast.api import cluster as cluster_api
from livecast.api import routes as api_routes
from livecast.app.buses import make_bus
from livecast.chat import routes as chat_routes
from livecast.chat.metrics import ChatCollector
from livecast.chat.ws import CHAT
from livecast.cluster.registry import Registry
from livecast.config import Settings
from livecast.db import Database
from livecast.ingest import component as ingest
from livecast.ingest.metrics import IngestCollector
from livecast.keys import DB, EVENTS
from livecast.observe import setup as setup_observability
from livecast.web import routes as web_routes


def build(app: web.Application, settings: Settings) -> None:
    app.cleanup_ctx.append(_resources(settings))
    webhooks.setup(app)
    api_routes.setup(app)
    registry = Registry(settings.cluster.heartbeat_timeout)
    cluster_api.setup(app, registry)
    bus = make_bus(settings.chat, settings.cluster.heartbeat_interval, settings.cluster.heartbeat_timeout)
    chat_routes.setup(app, bus)
    ingest.setup(app)
    hub, hls = app[ingest.HUB], app[ingest.HLS]
    hub.keyframe_limit = settings.hls.segment_duration  # stream-health warnings, metrics or not
    metrics = setup_observability(app, settings.metrics.per_room)
    collector = IngestCollector(hub, lambda: app.get(ingest.RTMP), per_room=settings.metrics.per_room)
    hub.add_output_factory(collector.ingest.output)
    hls.add_listener(collector.segments.listener(hls.info))
    app[EVENTS].subscribe(collector.forget)
    metrics.register(collector)
    metrics.register(ChatCollector(app[CHAT]))
    web_routes.setup(app, media_origins=lambda: cluster_api.media_origins(app))
    if settings.server.demo:
        demo.setup(app)


def _resources(settings: Settings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            db = Database(settings.db_path)
            await db.open()
            stack.push_async_callback(db.close)
            app[DB] = db
            yield

    return ctx
