"""The chat repository: comments, likes totals, bans and per-room chat settings."""

from __future__ import annotations

import logging

from livecast.storage.database import Database, Row, limit_or_all

log = logging.getLogger(__name__)

ROOM_SETTINGS = "SELECT likes, slow_mode_seconds, chat_enabled, max_viewers FROM room_chat WHERE room_id = ?"
BANNED_IDS = "SELECT user_id FROM chat_bans WHERE room_id = ?"
SAVE_SETTINGS = (
    "INSERT INTO room_chat (room_id, slow_mode_seconds, chat_enabled, max_viewers)"
    " VALUES (?, ?, ?, ?) ON CONFLICT (room_id) DO UPDATE SET"
    " slow_mode_seconds = excluded.slow_mode_seconds,"
    " chat_enabled = excluded.chat_enabled, max_viewers = excluded.max_viewers"
)
INSERT_COMMENT = "INSERT INTO comments (room_id, user_id, content, created_at) VALUES (?, ?, ?, ?) RETURNING id"
_COMMENTS = (
    "SELECT c.id, c.content, c.created_at, u.username, u.role FROM comments c"
    " JOIN users u ON u.id = c.user_id WHERE c.room_id = ? AND c.deleted = 0"
)
NEWEST_COMMENTS = _COMMENTS + " ORDER BY c.id DESC LIMIT ?"
COMMENTS_BEFORE = _COMMENTS + " AND c.id < ? ORDER BY c.id DESC LIMIT ?"
DELETE_COMMENT = "UPDATE comments SET deleted = 1 WHERE id = ? AND room_id = ? AND deleted = 0"
DELETE_EXPIRED = (
    "DELETE FROM comments WHERE id IN (SELECT oldest.id FROM"
    " (SELECT id, created_at FROM comments ORDER BY id LIMIT ?) AS oldest WHERE oldest.created_at < ?)"
)
ROOMS_OVER = "SELECT room_id FROM comments GROUP BY room_id HAVING COUNT(*) > ? ORDER BY room_id"
NTH_NEWEST = "SELECT id FROM comments WHERE room_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?"
DELETE_OLDER = (
    "DELETE FROM comments WHERE id IN"
    " (SELECT id FROM comments WHERE room_id = ? AND id < ? ORDER BY id LIMIT ?)"
)
ADD_LIKES = (
    "INSERT INTO room_chat (room_id, likes) SELECT CAST(? AS BIGINT), CAST(? AS BIGINT)"
    " WHERE EXISTS (SELECT 1 FROM rooms WHERE id = ?)"
    " ON CONFLICT (room_id) DO UPDATE SET likes = room_chat.likes + excluded.likes"
)
BAN = (
    "INSERT INTO chat_bans (room_id, user_id, banned_by, created_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (room_id, user_id) DO NOTHING"
)
UNBAN = "DELETE FROM chat_bans WHERE room_id = ? AND user_id = ?"
BANS = (
    "SELECT b.id AS position, u.username, b.created_at, m.username AS by_username FROM chat_bans b"
    " JOIN users u ON u.id = b.user_id LEFT JOIN users m ON m.id = b.banned_by"
    " WHERE b.room_id = ? AND b.id > ? ORDER BY b.id LIMIT ?"
)

STATEMENTS: tuple[str, ...] = (
    ROOM_SETTINGS, BANNED_IDS, SAVE_SETTINGS, INSERT_COMMENT, NEWEST_COMMENTS, COMMENTS_BEFORE,
    DELETE_COMMENT, DELETE_EXPIRED, ROOMS_OVER, NTH_NEWEST, DELETE_OLDER, ADD_LIKES, BAN, UNBAN, BANS,
)


class ChatRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def room_settings(self, room_id: int) -> Row | None:
        return await self.db.fetch_one(ROOM_SETTINGS, (room_id,))

    async def banned_ids(self, room_id: int) -> set[int]:
        return {int(r["user_id"]) for r in await self.db.fetch_all(BANNED_IDS, (room_id,))}

    async def save_settings(self, room_id: int, slow_mode_seconds: int, chat_enabled: bool,
                            max_viewers: int) -> None:
        """``ForeignKeyViolation`` if the room is gone."""
        await self.db.execute(SAVE_SETTINGS, (room_id, slow_mode_seconds, int(chat_enabled), max_viewers))

    # -- comments -------------------------------------------------------------------

    async def add_comment(self, room_id: int, user_id: int, text: str, created_at: str) -> int:
        """The comment's id; ``ForeignKeyViolation`` if the room or user is gone."""
        return await self.db.insert(INSERT_COMMENT, (room_id, user_id, text, created_at))

    async def newest_comments(self, room_id: int, limit: int) -> list[Row]:
        return await self.db.fetch_all(NEWEST_COMMENTS, (room_id, limit))

    async def comments_before(self, room_id: int, before: int, limit: int) -> list[Row]:
        return await self.db.fetch_all(COMMENTS_BEFORE, (room_id, before, limit))

    async def delete_comment(self, room_id: int, comment_id: int) -> int:
        return await self.db.execute(DELETE_COMMENT, (comment_id, room_id))

    async def delete_expired(self, cutoff: str, batch: int) -> int:
        return await self.db.execute(DELETE_EXPIRED, (batch, cutoff))

    async def rooms_over(self, keep: int) -> list[int]:
        return [int(r["room_id"]) for r in await self.db.fetch_all(ROOMS_OVER, (keep,))]

    async def nth_newest_comment(self, room_id: int, n: int) -> int | None:
        row = await self.db.fetch_one(NTH_NEWEST, (room_id, n - 1))
        return int(row["id"]) if row else None

    async def delete_older(self, room_id: int, before: int, batch: int) -> int:
        return await self.db.execute(DELETE_OLDER, (room_id, before, batch))

    # -- likes and bans ----------------------------------------------------------------

    async def add_likes(self, deltas: dict[int, int]) -> None:
        """Add to several rooms' totals in one transaction (rooms deleted meanwhile are skipped)."""
        async with self.db.transaction() as tx:
            for room_id, delta in deltas.items():
                await tx.execute(ADD_LIKES, (room_id, delta, room_id))

    async def ban(self, room_id: int, user_id: int, by_id: int, created_at: str) -> bool:
        """True if newly banned, False if the user already was."""
        return await self.db.execute(BAN, (room_id, user_id, by_id, created_at)) > 0

    async def unban(self, room_id: int, user_id: int) -> bool:
        return await self.db.execute(UNBAN, (room_id, user_id)) > 0

    async def bans(self, room_id: int, limit: int, after: int) -> list[Row]:
        return await self.db.fetch_all(BANS, (room_id, after, limit_or_all(limit)))
