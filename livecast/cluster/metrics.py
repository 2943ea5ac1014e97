"""Prometheus collector of the cluster's shared state on an origin: room leases held,
claims by kind (fresh, takeover, failover), rooms lost to another origin, Redis
reachability, and the database connection pool. Read at scrape time; registered by the
origin's wiring."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from livecast.cluster.leases import RoomLeases

PoolStats = Callable[[], dict[str, int]]


class ClusterCollector(Collector):
    def __init__(self, leases: RoomLeases | None, pool: PoolStats | None) -> None:
        self.leases = leases
        self.pool = pool

    def collect(self) -> Iterator[Metric]:
        if self.leases is not None:
            yield from self._leases(self.leases)
        if self.pool is not None:
            stats = self.pool()
            gauge = GaugeMetricFamily("livecast_db_pool_connections", "PostgreSQL pool connections, by state",
                                      labels=["state"])
            gauge.add_metric(["open"], stats["size"])
            gauge.add_metric(["idle"], stats["idle"])
            gauge.add_metric(["max"], stats["max"])
            yield gauge

    def _leases(self, leases: RoomLeases) -> Iterator[Metric]:
        held = GaugeMetricFamily("livecast_cluster_leases_held", "Live rooms whose lease this origin holds")
        held.add_metric([], len(leases.held))
        yield held
        degraded = GaugeMetricFamily("livecast_cluster_redis_degraded",
                                     "1 while Redis is unreachable (rooms held here go on being served)")
        degraded.add_metric([], int(leases.degraded))
        yield degraded
        claims = CounterMetricFamily("livecast_cluster_room_claims",
                                     "Room leases claimed by a publish here: fresh, taken over from a live "
                                     "origin, or continued after the holder's lease lapsed", labels=["kind"])
        fresh = leases.claims - leases.takeovers - leases.failovers
        for kind, value in (("fresh", fresh), ("takeover", leases.takeovers), ("failover", leases.failovers)):
            claims.add_metric([kind], value)
        yield claims
        lost = CounterMetricFamily("livecast_cluster_rooms_lost", "Rooms another origin took over from this one")
        lost.add_metric([], leases.lost)
        yield lost
