"""Chat persistence: comments, likes totals, gifts (with the coin transfer), bans and
per-room chat settings, through the chat and ledger repositories of ``livecast.storage``."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from livecast.chat.frames import user_json
from livecast.core.errors import Conflict, RoomNotFound
from livecast.storage.chat import ChatRepository
from livecast.storage.database import Database
from livecast.storage.errors import ForeignKeyViolation
from livecast.storage.ledger import LedgerRepository

log = logging.getLogger(__name__)


def now_ts() -> str:
    """Now as ISO 8601 UTC with milliseconds, e.g. ``2025-01-02T03:04:05.678Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class ChatRoomSettings:
    slow_mode_seconds: int = 0
    chat_enabled: bool = True
    max_viewers: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Comment:
    id: int
    username: str
    role: str
    text: str
    ts: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "user": user_json(self.username, self.role), "text": self.text, "ts": self.ts}

    @classmethod
    def from_row(cls, row: Any) -> Comment:
        return cls(int(row["id"]), str(row["username"]), str(row["role"]), str(row["content"]),
                   str(row["created_at"]))


@dataclass(frozen=True)
class RoomChatState:
    settings: ChatRoomSettings
    likes: int
    banned: set[int]


class InsufficientCoins(Conflict):
    code = "insufficient_coins"


class ChatStore:
    def __init__(self, db: Database) -> None:
        self.repo = ChatRepository(db)
        self.ledger = LedgerRepository(db)

    # -- room state -----------------------------------------------------------------

    async def room_state(self, room_id: int) -> RoomChatState:
        row = await self.repo.room_settings(room_id)
        banned = await self.repo.banned_ids(room_id)
        if row is None:
            return RoomChatState(ChatRoomSettings(), 0, banned)
        settings = ChatRoomSettings(int(row["slow_mode_seconds"]), bool(row["chat_enabled"]),
                                    int(row["max_viewers"]))
        return RoomChatState(settings, int(row["likes"]), banned)

    async def save_settings(self, room_id: int, settings: ChatRoomSettings) -> None:
        try:
            await self.repo.save_settings(room_id, settings.slow_mode_seconds, settings.chat_enabled,
                                          settings.max_viewers)
        except ForeignKeyViolation as err:
            raise RoomNotFound("no such room") from err

    # -- comments -------------------------------------------------------------------

    async def add_comment(self, room_id: int, user_id: int, text: str) -> tuple[int, str]:
        """Store a comment (committed when this returns); its id and timestamp."""
        ts = now_ts()
        try:
            return await self.repo.add_comment(room_id, user_id, text, ts), ts
        except ForeignKeyViolation as err:  # the room (or user) was deleted meanwhile
            raise RoomNotFound("no such room") from err

    async def history(self, room_id: int, limit: int) -> list[Comment]:
        """The last ``limit`` comments, oldest first."""
        if limit <= 0:
            return []
        rows = await self.repo.newest_comments(room_id, limit)
        return [Comment.from_row(r) for r in reversed(rows)]

    async def page(self, room_id: int, before: int | None, limit: int) -> list[Comment]:
        """Up to ``limit`` comments older than ``before`` (or the newest), newest first."""
        if before is None:
            rows = await self.repo.newest_comments(room_id, limit)
        else:
            rows = await self.repo.comments_before(room_id, before, limit)
        return [Comment.from_row(r) for r in rows]

    async def delete_comment(self, room_id: int, comment_id: int) -> bool:
        return await self.repo.delete_comment(room_id, comment_id) > 0

    # -- retention (livecast.chat.retention) -------------------------------------------

    async def delete_expired(self, cutoff: str, batch: int) -> int:
        """Delete up to ``batch`` of the oldest comments created before ``cutoff``. Only the
        ``batch`` oldest rows are looked at (ids grow with time), so no run scans the table."""
        return await self.repo.delete_expired(cutoff, batch)

    async def rooms_over(self, keep: int) -> list[int]:
        """Rooms holding more than ``keep`` comments (deleted ones included: they take space too)."""
        return await self.repo.rooms_over(keep)

    async def nth_newest_comment(self, room_id: int, n: int) -> int | None:
        """The id of the room's ``n``-th newest comment (None if it holds fewer)."""
        return await self.repo.nth_newest_comment(room_id, n)

    async def delete_older(self, room_id: int, before: int, batch: int) -> int:
        """Delete up to ``batch`` of the room's oldest comments with ids below ``before``."""
        return await self.repo.delete_older(room_id, before, batch)

    # -- likes ----------------------------------------------------------------------

    async def add_likes(self, deltas: dict[int, int]) -> None:
        """Add to several rooms' totals in one transaction (rooms deleted meanwhile are skipped)."""
        await self.repo.add_likes(deltas)

    # -- gifts ----------------------------------------------------------------------

    async def send_gift(self, room_id: int, sender_id: int, recipient_id: int, gift: str,
                        quantity: int, value: int) -> tuple[int, str, int]:
        """Debit the sender, credit the recipient and record the gift in one transaction.

        Returns (gift id, timestamp, sender's new balance). ``InsufficientCoins`` (and
        nothing changed) when the sender cannot pay: the conditional UPDATE makes
        concurrent sends unable to overdraw.
        """
        ts = now_ts()
        try:
            record = await self.ledger.send_gift(room_id, sender_id, recipient_id, gift, quantity, value, ts)
        except ForeignKeyViolation as err:
            raise RoomNotFound("no such room") from err
        if record is None:
            raise InsufficientCoins(f"not enough coins: this gift costs {value}")
        return record.id, ts, record.sender_balance

    async def leaderboard(self, room_id: int, limit: int) -> list[dict[str, Any]]:
        rows = await self.ledger.leaderboard(room_id, limit)
        return [{"user": {"username": str(r["username"])}, "value": int(r["value"]), "gifts": int(r["gifts"])}
                for r in rows]

    # -- bans -----------------------------------------------------------------------

    async def ban(self, room_id: int, user_id: int, by_id: int) -> bool:
        """True if newly banned, False if the user already was."""
        return await self.repo.ban(room_id, user_id, by_id, now_ts())

    async def unban(self, room_id: int, user_id: int) -> bool:
        return await self.repo.unban(room_id, user_id)

    async def bans(self, room_id: int, limit: int = -1, after: int = 0) -> list[dict[str, Any]]:
        """Up to ``limit`` (-1: all) bans in the order they were made, those whose
        ``position`` (a page cursor) is above ``after``."""
        rows = await self.repo.bans(room_id, limit, after)
        return [{"user": {"username": str(r["username"])}, "created_at": str(r["created_at"]),
                 "by": {"username": str(r["by_username"])} if r["by_username"] else None,
                 "position": int(r["position"])} for r in rows]
