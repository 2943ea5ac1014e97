"""The chat hub's Prometheus collector: sockets, rooms and the hub's counters, read at
scrape time. Registered by the origin's wiring."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from livecast.chat.service import ChatService


class ChatCollector(Collector):
    def __init__(self, service: ChatService) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        service = self.service
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
            ("livecast_chat_refused_address", "refused_too_many_connections",
             "Chat sockets refused: address at its cap"),
            ("livecast_chat_refused_room_full", "refused_room_full", "Chat sockets refused: room at max_viewers"),
            ("livecast_chat_refused_cooldown", "refused_cooldown", "Chat sockets refused (429) after an abuse close"),
            ("livecast_chat_displaced", "displaced", "Anonymous chat sockets closed to let a logged-in viewer in"),
            ("livecast_chat_closed_flood", "closed_too_many_frames", "Chat sockets closed over the frame budget"),
            ("livecast_chat_closed_unmasked", "closed_protocol_error", "Chat sockets failed on an unmasked frame"),
        ):
            counter = CounterMetricFamily(name, doc)
            counter.add_metric([], stats.get(key, 0))
            yield counter
