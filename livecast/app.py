"""The app factory: wires the components a node's role needs into one aiohttp app.

Resources (database, RTMP listener, HLS service, background tasks) are opened and
closed in ``cleanup_ctx`` generators, in the order they are registered.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from livecast import tls, webhooks
from livecast.api import health
from livecast.api.csrf import csrf_middleware
from livecast.api.middleware import error_middleware
from livecast.config import Settings
from livecast.core.events import EventBus
from livecast.keys import BOUND_PORTS, DB, EVENTS, SETTINGS
from livecast.observe import setup as setup_observability
from livecast.storage.sqlite import SqliteDatabase
from livecast.web import routes as web_routes

log = logging.getLogger(__name__)


async def _database_ctx(app: web.Application) -> AsyncIterator[None]:
    db = SqliteDatabase(app[SETTINGS].db_path)
    await db.open()
    app[DB] = db
    yield
    await db.close()


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[error_middleware, csrf_middleware],
        client_max_size=settings.server.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[EVENTS] = EventBus()
    app[BOUND_PORTS] = {}
    tls.setup(app)
    app.add_routes(health.routes)
    if settings.server.role == "origin":
        app.cleanup_ctx.append(_database_ctx)
        _setup_origin(app)
    else:
        _setup_edge(app)
    setup_observability(app)  # request ids, /metrics; after the components it reads
    web_routes.setup(app)  # pages, static files, security headers; after the origin parts (--demo needs RTMP)
    return app


def _setup_origin(app: web.Application) -> None:
    from livecast.api import routes as api_routes
    from livecast.ingest import component as ingest

    webhooks.setup(app)  # first: its queue closes after ingest and chat have emitted their last events
    api_routes.setup(app)
    ingest.setup(app)


def _setup_edge(app: web.Application) -> None:
    from livecast.edge import component as edge

    edge.setup(app)
