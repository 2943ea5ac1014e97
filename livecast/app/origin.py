"""The origin's composition root: builds the database, webhooks, accounts/rooms API,
cluster registry, chat, the media path (RTMP -> hub -> HLS), metrics and pages with
their arguments, and runs their lifecycles in one ``AsyncExitStack`` (livecast.app.lifecycle):
started in the order of ``parts`` below, stopped in reverse."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from livecast import demo, webhooks
from livecast.api import cluster as cluster_api
from livecast.api import clips as clips_api
from livecast.api import recordings as recordings_api
from livecast.api import routes as api_routes
from livecast.app import cluster_state
from livecast.app.buses import chat_settings, make_bus
from livecast.app.databases import open_database
from livecast.app.lifecycle import Lifecycle, run_in_order
from livecast.chat import routes as chat_routes
from livecast.chat.metrics import ChatCollector
from livecast.chat.ws import CHAT
from livecast.cluster.leases import LEASES
from livecast.cluster.metrics import ClusterCollector
from livecast.cluster.ratelimit import RedisLimits
from livecast.cluster.registry import Registry
from livecast.cluster.shared_registry import SharedRegistry
from livecast.config import Settings
from livecast.core.ratelimit import LimiterFactory, local_limiter
from livecast.delivery import vod as vod_routes
from livecast.ingest import component as ingest
from livecast.ingest.metrics import IngestCollector
from livecast.keys import DB, EVENTS, ROOM_EXTRAS
from livecast.transcode import component as transcode
from livecast.observe import metrics as observe_metrics
from livecast.rooms import RoomExtras
from livecast.observe import setup as setup_observability
from livecast.recording import component as recording
from livecast.recording.metrics import RecordingCollector
from livecast.recording.recorder import RecorderStats
from livecast.relay import component as relay
from livecast.web import routes as web_routes


def build(app: web.Application, settings: Settings) -> None:
    parts: list[Lifecycle] = [_database(settings)]
    parts.append(webhooks.setup(app))  # before ingest and chat: its queue drains after their last events
    limiters = _limiters(settings)
    if isinstance(limiters, RedisLimits):
        parts.append(_closing_limits(limiters))
    parts.append(api_routes.setup(app, limiters))
    registry = _registry(settings)
    cluster_api.setup(app, registry)
    if isinstance(registry, SharedRegistry):
        parts.append(_shared_registry(registry))
    bus = make_bus(chat_settings(settings), settings.cluster.heartbeat_interval, settings.cluster.heartbeat_timeout)
    extras = app[ROOM_EXTRAS] = RoomExtras()
    parts.append(chat_routes.setup(app, bus, extras))
    # Recording starts before the media path and stops after it: the last segments flushed
    # when the media path stops still reach storage.
    recorder_stats = RecorderStats()
    parts.append(recording.lifecycle(settings, lambda: app[ingest.HLS], recorder_stats, extras))
    recordings_api.setup(app)
    clips_api.setup(app, limiters)
    vod_routes.setup(app)
    parts.append(relay.setup(app, lambda: app[ingest.HUB], extras))  # before the media path: stops after it
    parts.append(ingest.setup(app, extras))
    leases = cluster_state.setup(app, settings)
    if leases is not None:
        parts.append(leases)  # after the media path: it wraps the RTMP listener's publish hook
    # needs the media path's session manager (and on a cluster the leases: a pull stops before them)
    parts.append(relay.pulls(app, lambda: app[ingest.SESSIONS]))
    hub, hls = app[ingest.HUB], app[ingest.HLS]
    hub.keyframe_limit = settings.hls.segment_duration  # stream-health warnings, metrics or not
    metrics = setup_observability(app, settings.metrics.per_room)
    collector = IngestCollector(hub, lambda: app.get(ingest.RTMP), per_room=settings.metrics.per_room)
    hub.add_output_factory(collector.ingest.output)
    hls.add_listener(collector.segments.listener(hls.info))
    app[EVENTS].subscribe(collector.forget)
    metrics.register(collector)
    metrics.register(ChatCollector(app[CHAT]))
    transcoding = transcode.setup(app, extras)  # after the HLS output: the source's segments come first
    if transcoding is not None:
        metrics.register(transcoding)
    thumbnails = transcode.setup_thumbnails(app, extras)
    if thumbnails is not None:
        parts.append(thumbnails)
    metrics.register(ClusterCollector(app.get(LEASES), lambda: _pool_stats(app)))
    metrics.register(RecordingCollector(recorder_stats))
    metrics.register(relay.collector(app))
    parts.append(observe_metrics.loop_lag_ctx)
    web_routes.setup(app, media_origins=lambda: cluster_api.media_origins(app))
    if settings.server.demo:
        parts.append(demo.setup(app))  # after the media path: it publishes to the RTMP listener
    app.cleanup_ctx.append(run_in_order(parts))


def _database(settings: Settings) -> Lifecycle:
    async def database(app: web.Application) -> AsyncIterator[None]:
        db = await open_database(settings)
        app[DB] = db
        try:
            yield
        finally:
            await db.close()

    return database


def _pool_stats(app: web.Application) -> dict[str, int]:
    """The PostgreSQL pool's connections (all zero on SQLite, which has no pool)."""
    stats = getattr(app.get(DB), "pool_stats", None)
    return stats() if callable(stats) else {"size": 0, "idle": 0, "max": 0}


def _registry(settings: Settings) -> Registry:
    """The edge registry: shared through Redis when ``cluster.redis`` is set."""
    cluster = settings.cluster
    if cluster.redis:
        return SharedRegistry(cluster.redis, cluster.heartbeat_timeout, cluster.heartbeat_interval)
    return Registry(cluster.heartbeat_timeout)


def _limiters(settings: Settings) -> LimiterFactory:
    """Login, registration and clip limits: shared through Redis when ``cluster.redis`` is set."""
    if settings.cluster.redis:
        return RedisLimits(settings.cluster.redis)
    return local_limiter


def _closing_limits(limits: RedisLimits) -> Lifecycle:
    async def shared_limits(app: web.Application) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await limits.close()

    return shared_limits


def _shared_registry(registry: SharedRegistry) -> Lifecycle:
    async def shared(app: web.Application) -> AsyncIterator[None]:
        await registry.start()
        try:
            yield
        finally:
            await registry.close()

    return shared
