"""Comments do not pile up forever: they expire and each room keeps a bounded number.

Every ``chat.prune_interval`` seconds the pruner deletes comments older than
``chat.comment_retention_days`` and, in rooms that got comments since the last run (all
rooms on the first run), the oldest comments beyond ``chat.max_comments_per_room``.
Deletes run in small batches, each its own short write transaction, with a yield to
the event loop between them, so the database's write lock is never held for long and
posting goes on during a large prune.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone

from livecast.chat.store import ChatStore
from livecast.config import ChatSettings

log = logging.getLogger(__name__)

BATCH = 500


def cutoff_ts(days: float, now: datetime | None = None) -> str:
    """The timestamp (as comments store it) before which comments have expired."""
    moment = (now or datetime.now(timezone.utc)) - timedelta(days=days)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class CommentPruner:
    def __init__(self, store: ChatStore, chat: ChatSettings) -> None:
        self.store = store
        self.chat = chat
        self._touched: set[int] | None = None  # None: check every room (first run)
        self.deleted = 0

    def commented(self, room_id: int) -> None:
        """A comment was stored in this room: check its cap on the next run."""
        if self._touched is not None:
            self._touched.add(room_id)

    async def run(self) -> None:
        """Prune now and every ``prune_interval`` seconds until cancelled."""
        while True:
            try:
                await self.prune()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database was busy or failing: try again next time
                log.exception("comment prune failed")
            await asyncio.sleep(self.chat.prune_interval)

    async def prune(self) -> int:
        """One run; the number of comments deleted."""
        deleted = 0
        if self.chat.comment_retention_days > 0:
            deleted += await self._batches(lambda: self.store.delete_expired(cutoff_ts(
                self.chat.comment_retention_days), BATCH))
        keep = self.chat.max_comments_per_room
        rooms, self._touched = self._touched, set()
        if keep > 0:
            for room_id in await self.store.rooms_over(keep) if rooms is None else sorted(rooms):
                deleted += await self._room(room_id, keep)
        if deleted:
            self.deleted += deleted
            log.info("comment prune: %d deleted (expired or beyond a room's cap)", deleted)
        return deleted

    async def _room(self, room_id: int, keep: int) -> int:
        oldest_kept = await self.store.nth_newest_comment(room_id, keep)
        if oldest_kept is None:
            return 0
        return await self._batches(lambda: self.store.delete_older(room_id, oldest_kept, BATCH))

    @staticmethod
    async def _batches(delete: Callable[[], Awaitable[int]]) -> int:
        total = 0
        while True:
            count = await delete()
            total += count
            if count < BATCH:
                return total
            await asyncio.sleep(0)  # let queued writes (new comments) in between batches
