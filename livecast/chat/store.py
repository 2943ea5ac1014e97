"""Chat persistence in SQLite: comments, likes totals, gifts (with the coin transfer),
bans and per-room chat settings. Tables are created by migration 2."""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from livecast.chat.frames import user_json
from livecast.storage.sqlite import Database
from livecast.core.errors import Conflict, RoomNotFound

log = logging.getLogger(__name__)


def now_ts() -> str:
    """Now as ISO 8601 UTC with milliseconds, e.g. ``2025-01-02T03:04:05.678Z``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


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


_COMMENT_SELECT = (
    "SELECT c.id, c.content, c.created_at, u.username, u.role FROM comments c"
    " JOIN users u ON u.id = c.user_id WHERE c.room_id = ? AND c.deleted = 0"
)


class ChatStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- room state -----------------------------------------------------------------

    async def room_state(self, room_id: int) -> RoomChatState:
        row = await self.db.fetchone(
            "SELECT likes, slow_mode_seconds, chat_enabled, max_viewers FROM room_chat WHERE room_id = ?",
            (room_id,))
        bans = await self.db.fetchall("SELECT user_id FROM chat_bans WHERE room_id = ?", (room_id,))
        banned = {int(r["user_id"]) for r in bans}
        if row is None:
            return RoomChatState(ChatRoomSettings(), 0, banned)
        settings = ChatRoomSettings(int(row["slow_mode_seconds"]), bool(row["chat_enabled"]),
                                    int(row["max_viewers"]))
        return RoomChatState(settings, int(row["likes"]), banned)

    async def save_settings(self, room_id: int, settings: ChatRoomSettings) -> None:
        try:
            async with self.db.transaction() as conn:
                await conn.execute(
                    "INSERT INTO room_chat (room_id, slow_mode_seconds, chat_enabled, max_viewers)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (room_id) DO UPDATE SET"
                    " slow_mode_seconds = excluded.slow_mode_seconds,"
                    " chat_enabled = excluded.chat_enabled, max_viewers = excluded.max_viewers",
                    (room_id, settings.slow_mode_seconds, int(settings.chat_enabled), settings.max_viewers))
        except sqlite3.IntegrityError as err:
            raise RoomNotFound("no such room") from err

    # -- comments -------------------------------------------------------------------

    async def add_comment(self, room_id: int, user_id: int, text: str) -> tuple[int, str]:
        """Store a comment (committed when this returns); its id and timestamp."""
        ts = now_ts()
        try:
            async with self.db.transaction() as conn:
                cur = await conn.execute(
                    "INSERT INTO comments (room_id, user_id, content, created_at) VALUES (?, ?, ?, ?)",
                    (room_id, user_id, text, ts))
                return int(cur.lastrowid or 0), ts
        except sqlite3.IntegrityError as err:  # the room (or user) was deleted meanwhile
            raise RoomNotFound("no such room") from err

    async def history(self, room_id: int, limit: int) -> list[Comment]:
        """The last ``limit`` comments, oldest first."""
        if limit <= 0:
            return []
        rows = await self.db.fetchall(_COMMENT_SELECT + " ORDER BY c.id DESC LIMIT ?", (room_id, limit))
        return [Comment.from_row(r) for r in reversed(list(rows))]

    async def page(self, room_id: int, before: int | None, limit: int) -> list[Comment]:
        """Up to ``limit`` comments older than ``before`` (or the newest), newest first."""
        if before is None:
            rows = await self.db.fetchall(_COMMENT_SELECT + " ORDER BY c.id DESC LIMIT ?", (room_id, limit))
        else:
            rows = await self.db.fetchall(_COMMENT_SELECT + " AND c.id < ? ORDER BY c.id DESC LIMIT ?",
                                          (room_id, before, limit))
        return [Comment.from_row(r) for r in rows]

    async def delete_comment(self, room_id: int, comment_id: int) -> bool:
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "UPDATE comments SET deleted = 1 WHERE id = ? AND room_id = ? AND deleted = 0",
                (comment_id, room_id))
            return cur.rowcount > 0

    # -- retention (livecast.chat.retention) -------------------------------------------

    async def delete_expired(self, cutoff: str, batch: int) -> int:
        """Delete up to ``batch`` of the oldest comments created before ``cutoff``. Only the
        ``batch`` oldest rows are looked at (ids grow with time), so no run scans the table."""
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "DELETE FROM comments WHERE id IN (SELECT id FROM"
                " (SELECT id, created_at FROM comments ORDER BY id LIMIT ?) WHERE created_at < ?)",
                (batch, cutoff))
            return max(0, cur.rowcount)

    async def rooms_over(self, keep: int) -> list[int]:
        """Rooms holding more than ``keep`` comments (deleted ones included: they take space too)."""
        rows = await self.db.fetchall(
            "SELECT room_id FROM comments GROUP BY room_id HAVING COUNT(*) > ? ORDER BY room_id", (keep,))
        return [int(r["room_id"]) for r in rows]

    async def nth_newest_comment(self, room_id: int, n: int) -> int | None:
        """The id of the room's ``n``-th newest comment (None if it holds fewer)."""
        row = await self.db.fetchone(
            "SELECT id FROM comments WHERE room_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?", (room_id, n - 1))
        return int(row["id"]) if row else None

    async def delete_older(self, room_id: int, before: int, batch: int) -> int:
        """Delete up to ``batch`` of the room's oldest comments with ids below ``before``."""
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "DELETE FROM comments WHERE id IN"
                " (SELECT id FROM comments WHERE room_id = ? AND id < ? ORDER BY id LIMIT ?)",
                (room_id, before, batch))
            return max(0, cur.rowcount)

    # -- likes ----------------------------------------------------------------------

    async def add_likes(self, deltas: dict[int, int]) -> None:
        """Add to several rooms' totals in one transaction (rooms deleted meanwhile are skipped)."""
        async with self.db.transaction() as conn:
            for room_id, delta in deltas.items():
                await conn.execute(
                    "INSERT INTO room_chat (room_id, likes) SELECT ?, ? WHERE EXISTS"
                    " (SELECT 1 FROM rooms WHERE id = ?)"
                    " ON CONFLICT (room_id) DO UPDATE SET likes = likes + excluded.likes",
                    (room_id, delta, room_id))

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
            async with self.db.transaction() as conn:
                cur = await conn.execute(
                    "UPDATE users SET coins = coins - ? WHERE id = ? AND coins >= ?",
                    (value, sender_id, value))
                if cur.rowcount != 1:
                    raise InsufficientCoins(f"not enough coins: this gift costs {value}")
                await conn.execute("UPDATE users SET coins = coins + ? WHERE id = ?", (value, recipient_id))
                cur = await conn.execute(
                    "INSERT INTO gifts (room_id, sender_id, recipient_id, gift, quantity, value, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (room_id, sender_id, recipient_id, gift, quantity, value, ts))
                gift_id = int(cur.lastrowid or 0)
                async with conn.execute("SELECT coins FROM users WHERE id = ?", (sender_id,)) as c:
                    row = await c.fetchone()
        except sqlite3.IntegrityError as err:
            raise RoomNotFound("no such room") from err
        return gift_id, ts, int(row[0]) if row else 0

    async def leaderboard(self, room_id: int, limit: int) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            "SELECT u.username, SUM(g.value) AS value, SUM(g.quantity) AS gifts FROM gifts g"
            " JOIN users u ON u.id = g.sender_id WHERE g.room_id = ?"
            " GROUP BY g.sender_id ORDER BY value DESC, MIN(g.id) LIMIT ?",
            (room_id, limit))
        return [{"user": {"username": str(r["username"])}, "value": int(r["value"]), "gifts": int(r["gifts"])}
                for r in rows]

    # -- bans -----------------------------------------------------------------------

    async def ban(self, room_id: int, user_id: int, by_id: int) -> bool:
        """True if newly banned, False if the user already was."""
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "INSERT OR IGNORE INTO chat_bans (room_id, user_id, banned_by, created_at) VALUES (?, ?, ?, ?)",
                (room_id, user_id, by_id, now_ts()))
            return cur.rowcount > 0

    async def unban(self, room_id: int, user_id: int) -> bool:
        async with self.db.transaction() as conn:
            cur = await conn.execute("DELETE FROM chat_bans WHERE room_id = ? AND user_id = ?", (room_id, user_id))
            return cur.rowcount > 0

    async def bans(self, room_id: int, limit: int = -1, after: int = 0) -> list[dict[str, Any]]:
        """Up to ``limit`` (-1: all) bans in the order they were made, those whose
        ``position`` (a page cursor) is above ``after``."""
        rows = await self.db.fetchall(
            "SELECT b.rowid AS position, u.username, b.created_at, m.username AS by_username FROM chat_bans b"
            " JOIN users u ON u.id = b.user_id LEFT JOIN users m ON m.id = b.banned_by"
            " WHERE b.room_id = ? AND b.rowid > ? ORDER BY b.rowid LIMIT ?", (room_id, after, limit))
        return [{"user": {"username": str(r["username"])}, "created_at": str(r["created_at"]),
                 "by": {"username": str(r["by_username"])} if r["by_username"] else None,
                 "position": int(r["position"])} for r in rows]
