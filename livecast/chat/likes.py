"""Likes: totals kept in memory, increments written to the database in batches.

A like only touches memory; ``flush`` writes the accumulated increments of every room in
one transaction. It runs at least once a second and on shutdown, so a crash loses at
most about a second of likes.
"""

from __future__ import annotations

import asyncio
import logging

from livecast.chat.store import ChatStore
from livecast.storage.errors import StorageError

log = logging.getLogger(__name__)


class PendingLikes:
    def __init__(self, store: ChatStore) -> None:
        self.store = store
        self._pending: dict[int, int] = {}
        self._lock = asyncio.Lock()
        self.flushed = 0

    def add(self, room_id: int, count: int) -> None:
        self._pending[room_id] = self._pending.get(room_id, 0) + count

    def forget(self, room_id: int) -> None:
        self._pending.pop(room_id, None)

    def __len__(self) -> int:
        return len(self._pending)

    async def flush(self) -> int:
        """Write what has accumulated; on failure it is kept for the next try."""
        async with self._lock:
            if not self._pending:
                return 0
            batch, self._pending = self._pending, {}
            try:
                await self.store.add_likes(batch)
            except StorageError:
                log.exception("could not write %d room(s) of likes; will retry", len(batch))
                for room_id, count in batch.items():
                    self.add(room_id, count)
                return 0
            self.flushed += 1
            return len(batch)
