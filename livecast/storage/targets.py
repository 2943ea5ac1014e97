"""The push-targets repository: all SQL about a room's relay targets.

The target's stream key is stored because it must be sent to the target server; no
statement here is used to return it to a client (the relay's JSON masks it).
"""

from __future__ import annotations

import logging

from livecast.storage.database import Database, Row

log = logging.getLogger(__name__)

_COLUMNS = "t.id, t.room_id, r.slug, t.name, t.url, t.stream_key, t.enabled, t.verify_tls, t.created_at"
_SELECT = f"SELECT {_COLUMNS} FROM push_targets t JOIN rooms r ON r.id = t.room_id"
BY_ROOM = _SELECT + " WHERE r.slug = ? ORDER BY t.id"
BY_ID = _SELECT + " WHERE r.slug = ? AND t.id = ?"
ALL_ENABLED = _SELECT + " WHERE t.enabled != 0 ORDER BY t.id"
COUNT_ROOM = "SELECT COUNT(*) AS n FROM push_targets WHERE room_id = ?"
INSERT = (
    "INSERT INTO push_targets (room_id, name, url, stream_key, enabled, verify_tls, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id"
)
UPDATE = (
    "UPDATE push_targets SET name = ?, url = ?, stream_key = ?, enabled = ?, verify_tls = ?"
    " WHERE id = ? AND room_id = ?"
)
DELETE = "DELETE FROM push_targets WHERE id = ? AND room_id = ?"

STATEMENTS: tuple[str, ...] = (BY_ROOM, BY_ID, ALL_ENABLED, COUNT_ROOM, INSERT, UPDATE, DELETE)


class TargetLimitReached(Exception):
    """The room already holds the most push targets allowed."""


class TargetRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def by_room(self, slug: str) -> list[Row]:
        return await self.db.fetch_all(BY_ROOM, (slug,))

    async def by_id(self, slug: str, target_id: int) -> Row | None:
        return await self.db.fetch_one(BY_ID, (slug, target_id))

    async def all_enabled(self) -> list[Row]:
        return await self.db.fetch_all(ALL_ENABLED)

    async def insert(self, room_id: int, values: tuple[str, str, str, bool, bool], created_at: str,
                     max_targets: int) -> int:
        """The new target's id; ``TargetLimitReached`` when the room holds ``max_targets``."""
        name, url, key, enabled, verify = values
        async with self.db.transaction() as tx:
            row = await tx.fetch_one(COUNT_ROOM, (room_id,))
            if row is not None and int(row["n"]) >= max_targets:
                raise TargetLimitReached(room_id)
            return await tx.insert(INSERT, (room_id, name, url, key, int(enabled), int(verify), created_at))

    async def update(self, room_id: int, target_id: int, values: tuple[str, str, str, bool, bool]) -> int:
        name, url, key, enabled, verify = values
        return await self.db.execute(UPDATE, (name, url, key, int(enabled), int(verify), target_id, room_id))

    async def delete(self, room_id: int, target_id: int) -> int:
        return await self.db.execute(DELETE, (target_id, room_id))
