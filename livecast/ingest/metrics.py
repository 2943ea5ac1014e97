"""Ingest and HLS metrics: counters kept as things happen (ingest totals of ended
sessions, segments produced) and the collector reading the hub and the RTMP listener at
scrape time. The origin's wiring creates them and registers the collector."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from livecast.core.events import RoomDeleted
from livecast.core.media import MediaUnit
from livecast.pipeline.hub import LiveStream, StreamHub
from livecast.rtmp.listener import RtmpServer


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


class IngestCollector(Collector):
    """Publishers, RTMP connections, ingest and segment totals (per room if ``per_room``)."""

    def __init__(self, hub: StreamHub, rtmp: Callable[[], RtmpServer | None], *, per_room: bool) -> None:
        self.hub = hub
        self.rtmp = rtmp  # the listener exists once the app started
        self.per_room = per_room
        self.ingest = IngestTotals()
        self.segments = SegmentCounter()

    def room(self, slug: str) -> tuple[str, ...]:
        return (slug,) if self.per_room else ()

    def forget(self, event: object) -> None:
        """Drop a deleted room's series (bounded label sets); an event-bus subscriber."""
        if isinstance(event, RoomDeleted):
            self.ingest.forget(event.slug)
            self.segments.forget(event.slug)

    def _labels(self) -> list[str]:
        return ["room"] if self.per_room else []

    def collect(self) -> Iterator[Metric]:
        m, labels = self, self._labels()
        hub = self.hub
        publishers = GaugeMetricFamily("livecast_publishers", "Publishers live now")
        publishers.add_metric([], len(hub))
        yield publishers
        rtmp = self.rtmp()
        if rtmp is not None:
            conns = GaugeMetricFamily("livecast_rtmp_connections", "Open RTMP connections (any state)")
            conns.add_metric([], len(rtmp.connections))
            yield conns
            yield GaugeMetricFamily("livecast_rtmp_pending_connections",
                                    "RTMP connections not publishing yet (no publish accepted)",
                                    value=len(rtmp.gate.pending))
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
