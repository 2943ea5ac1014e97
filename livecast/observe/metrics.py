"""Prometheus metrics at ``GET /metrics``, one ``CollectorRegistry`` per app.

Most values are read at scrape time from state the components already keep (stream hub
and its per-stream stats, RTMP connections, chat hub counters), so no hot path pays for
them. Three things are counted as they happen: HTTP requests (a middleware labelling by
route, never by raw path), HLS segments (an HLS service listener) and event-loop lag (a
background task measuring how late its sleeps wake up).

Label cardinality is bounded: no per-user labels; the per-room ``room`` label can be
turned off with ``metrics.per_room = false``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from livecast.core.events import RoomDeleted
from livecast.pipeline.hub import LiveStream, StreamHub
from livecast.keys import EVENTS, SETTINGS
from livecast.core.media import MediaUnit

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
        self.ingest = IngestTotals()
        self.segments = SegmentCounter()

    def room(self, slug: str) -> tuple[str, ...]:
        return (slug,) if self.per_room else ()


METRICS: web.AppKey[Metrics] = web.AppKey("metrics")


# -- ingest and HLS ---------------------------------------------------------------------


class IngestTotals:
    """Ingest counters of ended sessions, kept so per-room totals don't fall when a stream stops.

    A hub output: its ``close`` runs once when a session ends (stop or takeover), after the
    hub forgot the stream, so live + retired never counts a session twice.
    """

    def __init__(self) -> None:
        self.retired: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # bytes, units, late

    def forget(self, slug: str) -> None:
        self.retired.pop(slug, None)

    def output(self, stream: LiveStream) -> _RetireOnClose:
        return _RetireOnClose(self, stream)


class _RetireOnClose:
    def __init__(self, totals: IngestTotals, stream: LiveStream) -> None:
        self.totals = totals
        self.stream = stream

    def write(self, unit: MediaUnit) -> None:
        pass

    def set_metadata(self, values: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        stats = self.stream.stats
        row = self.totals.retired[self.stream.slug]
        row[0] += stats.bytes
        row[1] += stats.units
        row[2] += stats.late


class SegmentCounter:
    """Segments produced per room, from the HLS service's change notifications.

    A room's media sequence plus its playlist length only grows while the room lives
    (evictions move segments from one to the other), so the difference is new segments.
    """

    def __init__(self) -> None:
        self.produced: defaultdict[str, int] = defaultdict(int)
        self._seen: dict[str, int] = {}

    def forget(self, slug: str) -> None:
        self.produced.pop(slug, None)

    def listener(self, info: Callable[[str], dict[str, Any] | None]) -> Callable[[str], None]:
        def changed(slug: str) -> None:
            room = info(slug)
            if room is None:
                self._seen.pop(slug, None)
                return
            total = int(room.get("media_sequence") or 0) + int(room.get("segments") or 0)
            new = total - self._seen.get(slug, 0)
            if new < 0:  # a fresh room we never saw expire
                new = total
            if new:
                self.produced[slug] += new
            self._seen[slug] = total

        return changed


# -- the scrape-time collector ------------------------------------------------------------


class NodeCollector(Collector):
    """Reads the node's components at scrape time."""

    def __init__(self, app: web.Application, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        if self.app[SETTINGS].server.role == "origin":
            yield from self._ingest()
            yield from self._chat()
        else:
            yield from self._edge()

    def _edge(self) -> Iterator[Metric]:
        from livecast.edge.component import EDGE_SOURCE  # edge only; imported lazily

        source = self.app.get(EDGE_SOURCE)
        if source is None:
            return
        stats, client = source.stats, source.client
        lookups = CounterMetricFamily("livecast_edge_cache_lookups", "Edge cache lookups by object kind and result",
                                      labels=["kind", "result"])
        for kind in ("playlist", "segment"):
            lookups.add_metric([kind, "hit"], stats.hits[kind])
            lookups.add_metric([kind, "miss"], stats.misses[kind])
        lookups.add_metric(["any", "stale"], stats.stale)
        yield lookups
        yield CounterMetricFamily("livecast_edge_coalesced_requests",
                                  "Misses that joined an upstream fetch already in flight instead of making one",
                                  value=source.coalesced)
        yield GaugeMetricFamily("livecast_edge_cache_bytes", "Bytes held in the edge cache", value=source.cache.bytes)
        yield CounterMetricFamily("livecast_edge_cache_evictions", "Objects evicted from the edge cache",
                                  value=source.cache.evictions)
        yield CounterMetricFamily("livecast_edge_upstream_requests", "Requests from this edge to the origin",
                                  value=client.requests)
        yield CounterMetricFamily("livecast_edge_upstream_errors", "Failed requests from this edge to the origin",
                                  value=client.errors)
        yield CounterMetricFamily("livecast_edge_upstream_bytes", "HLS bytes fetched from the origin",
                                  value=stats.upstream_bytes)
        yield GaugeMetricFamily("livecast_edge_origin_up", "1 while the origin answers, 0 while it is down",
                                value=1 if client.up else 0)

    def _labels(self) -> list[str]:
        return ["room"] if self.metrics.per_room else []

    def _ingest(self) -> Iterator[Metric]:
        from livecast.ingest.component import HUB, RTMP  # origin only; imported lazily

        hub: StreamHub | None = self.app.get(HUB)
        if hub is None:
            return
        m, labels = self.metrics, self._labels()
        publishers = GaugeMetricFamily("livecast_publishers", "Publishers live now")
        publishers.add_metric([], len(hub))
        yield publishers
        rtmp = self.app.get(RTMP)
        if rtmp is not None:
            conns = GaugeMetricFamily("livecast_rtmp_connections", "Open RTMP connections (any state)")
            conns.add_metric([], len(rtmp.connections))
            yield conns
            yield GaugeMetricFamily("livecast_rtmp_pending_connections",
                                    "RTMP connections not publishing yet (no publish accepted)", value=len(rtmp.gate.pending))
            refused = CounterMetricFamily("livecast_rtmp_refused",
                                          "RTMP connections refused, evicted or closed by an ingest limit, by reason",
                                          labels=["reason"])
            for reason, count in rtmp.gate.refusals.totals.items():
                refused.add_metric([reason], count)
            yield refused
        totals: defaultdict[tuple[str, ...], list[int]] = defaultdict(lambda: [0, 0, 0])
        for slug, row in m.ingest.retired.items():
            acc = totals[m.room(slug)]
            for i in range(3):
                acc[i] += row[i]
        live = [s for s in (hub.get(slug) for slug in hub.live_slugs()) if s is not None]
        for stream in live:
            acc = totals[m.room(stream.slug)]
            acc[0] += stream.stats.bytes
            acc[1] += stream.stats.units
            acc[2] += stream.stats.late
        names = (("livecast_ingest_bytes", "Media bytes received from publishers"),
                 ("livecast_ingest_units", "Media units (audio/video packets) received from publishers"),
                 ("livecast_ingest_late_units", "Units whose dts went backwards on their track"))
        for i, (name, doc) in enumerate(names):
            family = CounterMetricFamily(name, doc, labels=labels)
            for key, row in totals.items():
                family.add_metric(list(key), row[i])
            yield family
        segments = CounterMetricFamily("livecast_hls_segments", "HLS segments produced", labels=labels)
        seg_totals: defaultdict[tuple[str, ...], int] = defaultdict(int)
        for slug, count in m.segments.produced.items():
            seg_totals[m.room(slug)] += count
        for key, count in seg_totals.items():
            segments.add_metric(list(key), count)
        yield segments
        if m.per_room:
            bitrate = GaugeMetricFamily("livecast_stream_bitrate_bps", "Measured bitrate of live streams (bits/s)",
                                        labels=labels)
            fps = GaugeMetricFamily("livecast_stream_fps", "Measured video frame rate of live streams",
                                    labels=labels)
            gop = GaugeMetricFamily("livecast_stream_keyframe_interval_seconds",
                                    "Measured keyframe interval of live streams", labels=labels)
            for stream in live:
                room_label = [stream.slug]
                bitrate.add_metric(room_label, stream.stats.bitrate)
                fps.add_metric(room_label, stream.stats.fps)
                gop.add_metric(room_label, (stream.stats.keyframe_interval_ms or 0) / 1000.0)
            yield from (bitrate, fps, gop)

    def _chat(self) -> Iterator[Metric]:
        from livecast.chat.ws import CHAT  # origin only; imported lazily

        service = self.app.get(CHAT)
        if service is None:
            return
        snap = service.hub.snapshot()
        stats = service.hub.stats
        for name, doc, value in (
            ("livecast_chat_connections", "Open chat WebSockets", snap.get("sockets", 0)),
            ("livecast_chat_rooms", "Rooms with at least one open chat WebSocket", snap.get("rooms", 0)),
        ):
            gauge = GaugeMetricFamily(name, doc)
            gauge.add_metric([], value)
            yield gauge
        for name, key, doc in (
            ("livecast_chat_connections_opened", "connections", "Chat WebSockets that joined a room"),
            ("livecast_chat_slow_disconnects", "slow_disconnects", "Chat clients dropped for not reading"),
            ("livecast_chat_comments", "comments", "Chat comments accepted (messages in)"),
            ("livecast_chat_gifts", "gifts", "Gifts sent"),
            ("livecast_chat_frames_out", "frames_out", "Room messages queued to chat clients (messages out)"),
            ("livecast_chat_refused_address", "refused_too_many_connections", "Chat sockets refused: address at its cap"),
            ("livecast_chat_refused_room_full", "refused_room_full", "Chat sockets refused: room at max_viewers"),
            ("livecast_chat_refused_cooldown", "refused_cooldown", "Chat sockets refused (429) after an abuse close"),
            ("livecast_chat_displaced", "displaced", "Anonymous chat sockets closed to let a logged-in viewer in"),
            ("livecast_chat_closed_flood", "closed_too_many_frames", "Chat sockets closed over the frame budget"),
            ("livecast_chat_closed_unmasked", "closed_protocol_error", "Chat sockets failed on an unmasked frame"),
        ):
            counter = CounterMetricFamily(name, doc)
            counter.add_metric([], stats.get(key, 0))
            yield counter


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
    canonical = resource.canonical
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


async def _metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    """The loop-lag probe, and dropping a deleted room's series (bounded label sets)."""
    metrics = app[METRICS]

    def on_event(event: object) -> None:
        if isinstance(event, RoomDeleted):
            metrics.ingest.forget(event.slug)
            metrics.segments.forget(event.slug)

    unsubscribe = app[EVENTS].subscribe(on_event)
    task = asyncio.get_running_loop().create_task(measure_loop_lag(metrics), name="loop-lag")
    yield
    unsubscribe()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def setup(app: web.Application) -> None:
    """Registry, collector, ``/metrics`` route and hooks; call after the role's components."""
    settings = app[SETTINGS]
    metrics = Metrics(per_room=settings.metrics.per_room)
    app[METRICS] = metrics
    metrics.registry.register(NodeCollector(app, metrics))
    app.router.add_get("/metrics", metrics_handler, name="metrics")
    app.cleanup_ctx.append(_metrics_ctx)
    if settings.server.role == "origin":
        from livecast.ingest.component import HLS, HUB

        if HUB in app:
            hub = app[HUB]
            hub.add_output_factory(metrics.ingest.output)
            hub.keyframe_limit = settings.hls.segment_duration
        if HLS in app:
            hls = app[HLS]
            hls.add_listener(metrics.segments.listener(hls.info))
