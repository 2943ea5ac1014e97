"""Chat replay: the comments and gifts written during a broadcast, each placed at the media
time of the recording at the moment it was written (through the segments' program
date-times), so a replay shows them in step with the video."""

from __future__ import annotations

import bisect
import logging
from datetime import UTC, datetime
from typing import Any

from livecast.storage.database import Row
from livecast.storage.recordings import StoredSegment

log = logging.getLogger(__name__)


def iso_ms(ts: float) -> str:
    """The chat tables' time format: ISO 8601 UTC with milliseconds and Z."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class MediaClock:
    """Wall time -> media time of one recording, from its stored segments."""

    def __init__(self, segments: list[StoredSegment]) -> None:
        self._segments = segments
        self._walls = [s.program_date_time for s in segments]

    def offset(self, wall: float) -> float:
        if not self._segments:
            return 0.0
        i = bisect.bisect_right(self._walls, wall) - 1
        if i < 0:
            return self._segments[0].media_start
        segment = self._segments[i]
        into = min(max(wall - segment.program_date_time, 0.0), segment.duration)
        return segment.media_start + into


def replay(clock: MediaClock, comments: list[Row], gifts: list[Row], start: float,
           end: float) -> list[dict[str, Any]]:
    """The events with ``offset`` in start..end (seconds), in offset order."""
    events: list[dict[str, Any]] = []
    for row in comments:
        events.append({"type": "comment", "id": int(row["id"]), "user": str(row["username"]),
                       "text": str(row["content"]), "ts": str(row["created_at"])})
    for row in gifts:
        events.append({"type": "gift", "id": int(row["id"]), "user": str(row["username"]),
                       "gift": str(row["gift"]), "quantity": int(row["quantity"]), "ts": str(row["created_at"])})
    for event in events:
        event["offset"] = round(clock.offset(parse_iso(event["ts"])), 3)
    events = [e for e in events if start <= e["offset"] <= end]
    events.sort(key=lambda e: (e["offset"], e["ts"]))
    return events
