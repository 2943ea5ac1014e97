"""Observability: request ids on every HTTP request and Prometheus metrics at ``/metrics``.

``setup(app)`` is called by the app factory after the role's components are wired, so the
metrics collector can find the stream hub, HLS service and chat service if the node has them.
"""

from __future__ import annotations

from aiohttp import web

from livecast.observe import metrics, requestid


def setup(app: web.Application) -> None:
    # Outermost first: the request id covers everything (including the error middleware's logs),
    # the metrics middleware sees the final status after errors became JSON responses.
    app.middlewares.insert(0, metrics.metrics_middleware)
    app.middlewares.insert(0, requestid.request_id_middleware)
    app.on_response_prepare.append(requestid.echo_request_id)
    metrics.setup(app)
