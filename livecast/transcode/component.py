"""Wires the transcoder into the origin: a lossy queued output per publish session, the
multivariant playlists, the ``renditions`` block of the room API and the metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import av
from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from livecast.config import ConfigError
from livecast.delivery import routes as hls_routes
from livecast.delivery.origin import playlist_cache_control
from livecast.delivery.source import PlaylistReply, Still
from livecast.hls.master import StreamInf, measured_bandwidth, render_master
from livecast.hls.service import DEFAULT_RENDITION, HlsService
from livecast.ingest.component import HLS, HUB, OUTPUT_TASKS
from livecast.keys import SETTINGS
from livecast.rooms import RoomExtras
from livecast.pipeline.hub import LiveStream
from livecast.pipeline.outputs import QueuedOutput
from livecast.transcode.output import TranscodeSink
from livecast.transcode.state import Ladder, Ladders, Variant
from livecast.transcode.thumbnails import ThumbnailService

Lifecycle = Callable[[web.Application], AsyncIterator[None]]

LADDERS: web.AppKey[Ladders] = web.AppKey("transcode_ladders")
AUDIO_ESTIMATE = 128_000  # bits per second added to a configured video bitrate before segments exist


class MasterPlaylists:
    def __init__(self, hls: HlsService, ladders: Ladders) -> None:
        self.hls = hls
        self.ladders = ladders

    async def master_playlist(self, slug: str) -> PlaylistReply | None:
        ladder = self.ladders.get(slug)
        if ladder is None:
            return None
        variants = ladder.variants() or [Variant(DEFAULT_RENDITION, 0, 0, 0.0, "", 0)]  # not H.264: as it is
        entries = [e for v in variants if (e := self._entry(ladder, v)) is not None]
        target = self.hls.target_duration(slug)
        if not entries or target is None:
            return None
        return PlaylistReply(render_master(entries), playlist_cache_control(target))

    def _entry(self, ladder: Ladder, variant: Variant) -> StreamInf | None:
        room = self.hls.room(ladder.slug, variant.name)
        if room is None or room.playlist is None or not room.playlist.entries:
            return None
        peak, average = measured_bandwidth(room) or (variant.video_bitrate + AUDIO_ESTIMATE,) * 2
        uri = "index.m3u8" if variant.name == DEFAULT_RENDITION else f"{variant.name}/index.m3u8"
        codecs = ladder.codecs(variant) if variant.codecs else ""
        return StreamInf(uri, peak, average, variant.width, variant.height, variant.fps, codecs)


class TranscodeCollector:
    def __init__(self, ladders: Ladders) -> None:
        self.ladders = ladders

    def collect(self) -> Iterator[Metric]:
        dropped = CounterMetricFamily("livecast_transcode_renditions_dropped",
                                      "Renditions dropped because they fell behind real time")
        dropped.add_metric([], self.ladders.dropped_total)
        restarts = CounterMetricFamily("livecast_transcode_worker_restarts",
                                       "Transcoding worker processes restarted after dying")
        restarts.add_metric([], self.ladders.restarts_total)
        live = GaugeMetricFamily("livecast_transcode_renditions", "Renditions being made now")
        live.add_metric([], sum(len(ladder.renditions) - len(ladder.dropped) for ladder in self.ladders.all()))
        yield from (dropped, restarts, live)


def _extras(ladders: Ladders) -> Callable[[str], dict[str, Any]]:
    def extras(slug: str) -> dict[str, Any]:
        ladder = ladders.get(slug)
        return {"renditions": ladder.info() if ladder is not None else []}

    return extras


class Thumbnails:
    """The thumbnails as delivery reads them."""

    def __init__(self, service: ThumbnailService) -> None:
        self.service = service
        self.cache_control = f"public, max-age={max(1, int(service.interval // 2))}"

    async def thumbnail(self, slug: str) -> Still | None:
        thumb = self.service.thumbnail(slug)
        return Still(thumb.jpeg, self.cache_control) if thumb is not None else None


def setup_thumbnails(app: web.Application, room_extras: RoomExtras) -> Lifecycle | None:
    """Live thumbnails of every room (``transcode.thumbnail_interval``; 0: none)."""
    interval = app[SETTINGS].transcode.thumbnail_interval
    if not interval:
        return None
    service = ThumbnailService(interval)
    app[HUB].add_output_factory(service.output)
    hls_routes.set_thumbnails(app, Thumbnails(service))

    def extras(slug: str) -> dict[str, Any]:
        made = service.thumbnail(slug) is not None
        return {"thumbnail_url": f"/hls/{slug}/thumbnail.jpg" if made else None}

    room_extras.register(extras)
    return service.lifecycle


def setup(app: web.Application, room_extras: RoomExtras) -> TranscodeCollector | None:
    """Attach the ladder to every publish session when ``transcode.enabled``."""
    settings = app[SETTINGS]
    if not settings.transcode.enabled:
        return None
    if settings.transcode.encoder not in av.codecs_available:
        raise ConfigError(f"transcode.encoder {settings.transcode.encoder!r} is not offered by this FFmpeg build")
    hls, hub, tasks = app[HLS], app[HUB], app[OUTPUT_TASKS]
    ladders = app[LADDERS] = Ladders()
    ingest = settings.ingest

    def transcode_output(stream: LiveStream) -> QueuedOutput:
        sink = TranscodeSink(settings.transcode, settings.hls.low_latency, hls, ladders, stream)
        return QueuedOutput(stream, sink, tasks, max_units=ingest.output_queue_units,
                            max_bytes=ingest.output_queue_bytes)

    hub.add_output_factory(transcode_output)
    hls_routes.set_master(app, MasterPlaylists(hls, ladders))
    room_extras.register(_extras(ladders))
    return TranscodeCollector(ladders)
