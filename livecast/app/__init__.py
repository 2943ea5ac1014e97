"""The app factory: builds the aiohttp app of a node's role (livecast.app.origin or
livecast.app.edge, the composition roots) around what every role shares."""

from __future__ import annotations

from aiohttp import web

from livecast import tls
from livecast.api import health
from livecast.api.csrf import csrf_middleware
from livecast.api.middleware import error_middleware
from livecast.app import edge, origin
from livecast.config import Settings
from livecast.core.events import EventBus
from livecast.keys import BOUND_PORTS, EVENTS, SETTINGS


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
        origin.build(app, settings)
    else:
        edge.build(app, settings)
    return app
