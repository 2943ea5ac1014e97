"""Retention: finished recordings older than ``recording.max_age_days``, and the oldest ones
while a room holds more than ``recording.max_room_bytes`` or all together more than
``recording.max_bytes``, are deleted (index and media). A recording in progress is never
deleted, though its bytes count."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from livecast.config import RecordingSettings
from livecast.storage.recordings import RecordingRepository

log = logging.getLogger(__name__)

DAY = 86400.0


class Retention:
    def __init__(self, settings: RecordingSettings, repo: RecordingRepository,
                 delete: Callable[[int], object], clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.repo = repo
        self._delete = delete
        self.clock = clock

    def active(self) -> bool:
        s = self.settings
        return s.max_age_days > 0 or s.max_bytes > 0 or s.max_room_bytes > 0

    async def sweep(self) -> list[int]:
        """Delete what the limits say, oldest first; the ids deleted."""
        finished = await self.repo.finished_oldest_first()
        per_room = await self.repo.bytes_by_room()
        total = sum(per_room.values())
        doomed: list[int] = []
        cutoff = self.clock() - self.settings.max_age_days * DAY
        for row in finished:
            room, size = int(row["room_id"]), int(row["bytes"])
            too_old = self.settings.max_age_days > 0 and float(row["ended_at"] or 0) < cutoff
            room_over = 0 < self.settings.max_room_bytes < per_room.get(room, 0)
            total_over = 0 < self.settings.max_bytes < total
            if too_old or room_over or total_over:
                doomed.append(int(row["id"]))
                per_room[room] = per_room.get(room, 0) - size
                total -= size
        for recording_id in doomed:
            result = self._delete(recording_id)
            if asyncio.iscoroutine(result):
                await result
        if doomed:
            log.info("retention deleted %d recording(s): %s", len(doomed), doomed)
        return doomed

    async def run_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("recording retention sweep failed")
            await asyncio.sleep(self.settings.retention_interval)
