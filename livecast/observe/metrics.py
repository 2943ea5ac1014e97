"""Prometheus metrics at ``GET /metrics``, one ``CollectorRegistry`` per app.

This module imports no component: each component keeps its own collector next to it
(livecast.ingest.metrics, livecast.chat.metrics, livecast.edge.metrics), and the app's
wiring hands them to ``Metrics.register``. Those read at scrape time the state their
components already keep, so no hot path pays for them. Counted here as they happen: HTTP
requests (a middleware labelling by route, never by raw path) and event-loop lag (a
background task measuring how late its sleeps wake up).

Label cardinality is bounded: no per-user labels; the per-room ``room`` label can be
turned off with ``metrics.per_room = false``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.registry import Collector

from livecast.core.tasks import cancel_and_wait

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LOOP_LAG_INTERVAL = 0.5  # seconds between event-loop lag probes
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Routes without a name get their canonical path as label; these well-known ones get a name.
_ROUTE_NAMES = {
    "/hls/{slug}/index.m3u8": "hls_playlist",
    "/hls/{slug}/{name}": "hls_segment",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Metrics:
    """The registry of one app and the instruments updated as things happen."""

    def __init__(self, per_room: bool) -> None:
        self.per_room = per_room
        # (route, method, status) -> labelled children; labels() costs several µs per call,
        # and the key space is bounded by the app's routes.
        self.http_children: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter("livecast_http_requests", "HTTP requests by route, method and status",
                                     ["route", "method", "status"], registry=r)
        self.http_latency = Histogram("livecast_http_request_duration_seconds",
                                      "Time from request to handler's response, by route", ["route"],
                                      buckets=_LATENCY_BUCKETS, registry=r)
        self.http_bytes = Counter("livecast_http_response_bytes", "Response body bytes by route",
                                  ["route"], registry=r)
        self.loop_lag = Histogram("livecast_event_loop_lag_seconds",
                                  f"How late a {LOOP_LAG_INTERVAL} s sleep wakes up", buckets=_LAG_BUCKETS,
                                  registry=r)
        self.loop_lag_last = Gauge("livecast_event_loop_lag_last_seconds", "The latest event-loop lag probe",
                                   registry=r)

    def register(self, collector: Collector) -> None:
        """Add a component's scrape-time collector (the wiring registers each one)."""
        self.registry.register(collector)


METRICS: web.AppKey[Metrics] = web.AppKey("metrics")


# -- HTTP ---------------------------------------------------------------------------------


def route_label(request: web.BaseRequest) -> str:
    """A bounded label for the matched route: its name, a well-known name, or its canonical path."""
    match_info = getattr(request, "match_info", None)
    route = getattr(match_info, "route", None)
    resource = getattr(route, "resource", None)
    if route is None or resource is None:
        return "unmatched"
    if route.name:
        return str(route.name)
    canonical = str(resource.canonical)
    return _ROUTE_NAMES.get(canonical, canonical)


def response_body_size(resp: web.StreamResponse) -> int:
    """Bytes of the response body: what was written if streamed, else the body's length."""
    if resp.prepared:  # streamed or WebSocket: already written
        return resp.body_length
    body = getattr(resp, "body", None)
    if isinstance(body, (bytes, bytearray, memoryview)):
        return len(body)
    return resp.content_length or 0


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    metrics = request.app.get(METRICS)
    if metrics is None:
        return await handler(request)
    start = time.perf_counter()
    route = route_label(request)
    try:
        resp = await handler(request)
    except web.HTTPException as exc:
        _record(metrics, route, request.method, exc.status, start, exc)
        raise
    except asyncio.CancelledError:
        raise
    except Exception:
        _record(metrics, route, request.method, 500, start, None)
        raise
    _record(metrics, route, request.method, resp.status, start, resp)
    return resp


def _record(metrics: Metrics, route: str, method: str, status: int, start: float,
            resp: web.StreamResponse | None) -> None:
    key = (route, method, status)
    children = metrics.http_children.get(key)
    if children is None:
        children = (metrics.http_latency.labels(route), metrics.http_requests.labels(route, method, str(status)),
                    metrics.http_bytes.labels(route))
        metrics.http_children[key] = children
    latency, requests, sent = children
    latency.observe(time.perf_counter() - start)
    requests.inc()
    if resp is not None:
        size = response_body_size(resp)
        if size:
            sent.inc(size)


async def metrics_handler(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-cache"})


# -- event-loop lag and wiring ----------------------------------------------------------------


async def measure_loop_lag(metrics: Metrics, interval: float = LOOP_LAG_INTERVAL) -> None:
    loop = asyncio.get_running_loop()
    while True:
        start = loop.time()
        await asyncio.sleep(interval)
        lag = max(0.0, loop.time() - start - interval)
        metrics.loop_lag.observe(lag)
        metrics.loop_lag_last.set(lag)


async def loop_lag_ctx(app: web.Application) -> AsyncIterator[None]:
    """The loop-lag probe, while the app runs."""
    task = asyncio.get_running_loop().create_task(measure_loop_lag(app[METRICS]), name="loop-lag")
    yield
    await cancel_and_wait(task)


def setup(app: web.Application, per_room: bool) -> Metrics:
    """Registry and ``/metrics`` route; the wiring registers collectors and runs
    ``loop_lag_ctx``."""
    metrics = Metrics(per_room=per_room)
    app[METRICS] = metrics
    app.router.add_get("/metrics", metrics_handler, name="metrics")
    return metrics
