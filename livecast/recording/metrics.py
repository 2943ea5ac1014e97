"""The recorder's Prometheus collector: stored segments and bytes, failed storage attempts
and segments lost to gaps, read at scrape time. Registered by the origin's wiring."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from livecast.recording.recorder import RecorderStats

_COUNTERS = (
    ("livecast_recording_segments_stored", "segments_stored", "Recorded segments durably stored and indexed"),
    ("livecast_recording_bytes_stored", "bytes_stored", "Bytes of recorded segments stored"),
    ("livecast_recording_storage_failures", "upload_failures",
     "Failed attempts to store a recorded segment (each retried with backoff)"),
    ("livecast_recording_segments_lost", "segments_lost",
     "Segments missing from recordings (storage failed every attempt, or its queue was full)"),
    ("livecast_recording_stopped_low_disk", "stopped_low_disk",
     "Recordings stopped because free disk space fell below recording.min_free_bytes"),
)


class RecordingCollector(Collector):
    def __init__(self, stats: RecorderStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        for name, field, doc in _COUNTERS:
            counter = CounterMetricFamily(name, doc)
            counter.add_metric([], getattr(self.stats, field))
            yield counter
