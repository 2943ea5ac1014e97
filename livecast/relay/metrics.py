"""The relay's Prometheus collector: push targets and pull sources by state, and the
targets' bytes, drops and reconnects (summed over targets: bounded label sets)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from livecast.relay.manager import RelayManager
from livecast.relay.sources import PullManager


class RelayCollector(Collector):
    def __init__(self, pushes: Callable[[], RelayManager | None], pulls: Callable[[], PullManager | None]) -> None:
        self.pushes = pushes  # both exist once the app has started
        self.pulls = pulls

    def collect(self) -> Iterator[Metric]:
        pushes = self.pushes()
        if pushes is not None:
            statuses = pushes.statuses()
            targets = GaugeMetricFamily("livecast_relay_targets", "Enabled push targets by state", labels=["state"])
            for state, count in sorted(Counter(s.state for s in statuses).items()):
                targets.add_metric([state], count)
            yield targets
            yield CounterMetricFamily("livecast_relay_target_bytes_sent", "Bytes sent to push targets",
                                      value=sum(s.bytes_sent for s in statuses))
            yield CounterMetricFamily("livecast_relay_target_dropped", "Units push targets dropped (slow or down)",
                                      value=sum(s.dropped for s in statuses))
            yield CounterMetricFamily("livecast_relay_target_reconnects", "Push target reconnects",
                                      value=sum(s.reconnects for s in statuses))
        pulls = self.pulls()
        if pulls is not None:
            sources = GaugeMetricFamily("livecast_relay_sources", "Pull sources by state", labels=["state"])
            for state, count in sorted(Counter(pulls.states()).items()):
                sources.add_metric([state], count)
            yield sources
