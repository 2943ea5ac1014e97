"""The edge's composition root: the origin client and HLS cache, chat (hosted on a shared
bus, or proxied to the origin), the heartbeat, the HLS routes, the API proxy, metrics
and pages, run in one ``AsyncExitStack`` in the order of ``parts``. An edge has no RTMP
listener and no database of its own."""

from __future__ import annotations

from aiohttp import web

from livecast.app.buses import chat_settings, make_bus
from livecast.app.lifecycle import run_in_order
from livecast.config import Settings
from livecast.edge import component, heartbeat
from livecast.edge.metrics import EdgeCollector
from livecast.observe import metrics as observe_metrics
from livecast.observe import setup as setup_observability
from livecast.web import routes as web_routes


def build(app: web.Application, settings: Settings) -> None:
    chat = chat_settings(settings)  # chat.bus, else the cluster's Redis
    bus = make_bus(chat, settings.cluster.heartbeat_interval,
                   settings.cluster.heartbeat_timeout) if chat.bus else None
    parts, source = component.setup(app, settings, bus)  # origin client, chat, heartbeat
    metrics = setup_observability(app, settings.metrics.per_room)
    metrics.register(EdgeCollector(source))
    parts.append(observe_metrics.loop_lag_ctx)
    web_routes.setup(app, media_origins=lambda: heartbeat.media_origins(app))
    app.cleanup_ctx.append(run_in_order(parts))
