"""Observability: request ids on every HTTP request and Prometheus metrics at ``/metrics``.

``setup(app, per_room)`` installs both and returns the ``Metrics`` the role's wiring
registers its components' collectors with; this package imports no component.
"""

from __future__ import annotations

from aiohttp import web

from livecast.observe import metrics, requestid


def setup(app: web.Application, per_room: bool) -> metrics.Metrics:
    # Outermost first: the request id covers everything (including the error middleware's logs),
    # the metrics middleware sees the final status after errors became JSON responses.
    app.middlewares.insert(0, metrics.metrics_middleware)
    app.middlewares.insert(0, requestid.request_id_middleware)
    app.on_response_prepare.append(requestid.echo_request_id)
    return metrics.setup(app, per_room)
