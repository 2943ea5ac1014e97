"""Each room's recording choice (the room field ``record``) as room JSON shows it.

Room JSON is built synchronously, so the choices are kept in memory: loaded from the index at
start, updated at once by this node's changes and reloaded every ``REFRESH`` seconds, so that
a change made through another origin shows here within that time. The recorder itself always
reads the choice from the index when a broadcast starts.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from livecast.storage.errors import StorageError
from livecast.storage.recordings import RecordingRepository

log = logging.getLogger(__name__)

REFRESH = 10.0


class RoomChoices:
    def __init__(self, repo: RecordingRepository, default: bool) -> None:
        self.repo = repo
        self.default = default
        self._by_slug: dict[str, bool] = {}

    async def load(self) -> None:
        self._by_slug = await self.repo.all_choices()

    def record(self, slug: str) -> bool:
        """Whether the room's next broadcast is recorded (its choice, else the default)."""
        return self._by_slug.get(slug, self.default)

    def remember(self, slug: str, record: bool | None) -> None:
        if record is None:
            self._by_slug.pop(slug, None)
        else:
            self._by_slug[slug] = record

    def room_extra(self, slug: str) -> dict[str, Any]:
        return {"record": self.record(slug)}

    async def refresh_forever(self, interval: float = REFRESH) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.load()
            except StorageError as err:
                log.warning("reloading the rooms' recording choices failed: %s", err)
