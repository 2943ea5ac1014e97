"""The edge's Prometheus collector: cache lookups, upstream requests and the origin's state,
read at scrape time from the edge's HLS source. Registered by the edge's wiring."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from livecast.edge.source import EdgeSource


class EdgeCollector(Collector):
    def __init__(self, source: EdgeSource) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        source = self.source
        stats, client = source.stats, source.client
        lookups = CounterMetricFamily("livecast_edge_cache_lookups", "Edge cache lookups by object kind and result",
                                      labels=["kind", "result"])
        for kind in ("playlist", "segment", "vod"):
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
