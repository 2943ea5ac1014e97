"""The rooms-and-keys repository: all SQL about rooms and their stream keys.

A room is created in a transaction that first locks its owner's row (a no-op UPDATE:
a row lock on PostgreSQL, the write lock on SQLite), so two creations by one owner
cannot both pass the room cap; the slug is settled by the ``rooms_slug_key`` constraint.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from livecast.storage.database import Database, Row, limit_or_all

log = logging.getLogger(__name__)

SLUG_CONSTRAINT = "rooms_slug_key"

_SELECT = (
    "SELECT r.id, r.slug, r.owner_id, u.username AS owner_username, r.title, r.description,"
    " r.stream_key, r.live, r.started_at, r.created_at FROM rooms r JOIN users u ON u.id = r.owner_id"
)
LOCK_OWNER = "UPDATE users SET role = role WHERE id = ?"
COUNT_OWNED = "SELECT COUNT(*) AS n FROM rooms WHERE owner_id = ?"
SLUGS_LIKE = "SELECT slug FROM rooms WHERE slug LIKE ?"
INSERT = (
    "INSERT INTO rooms (slug, owner_id, title, description, stream_key, stream_key_hash, live, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, 0, ?) RETURNING id"
)
BY_SLUG = _SELECT + " WHERE r.slug = ?"
BY_OWNER = _SELECT + " WHERE r.owner_id = ? ORDER BY r.id"
BY_KEY_HASH = _SELECT + " WHERE r.stream_key_hash = ?"
UPDATE_TEXT = "UPDATE rooms SET title = COALESCE(?, title), description = COALESCE(?, description) WHERE slug = ?"
DELETE = "DELETE FROM rooms WHERE slug = ?"
SET_KEY = "UPDATE rooms SET stream_key = ?, stream_key_hash = ? WHERE slug = ?"
SET_LIVE = "UPDATE rooms SET live = 1, started_at = ?, live_owner = ? WHERE slug = ?"
# Only the live run that set the flag clears it: after a takeover by another origin, the
# old origin's stop changes nothing.
SET_OFFLINE = "UPDATE rooms SET live = 0, started_at = NULL, live_owner = '' WHERE slug = ? AND live_owner = ?"
LIVE_RUNS = "SELECT slug, live_owner FROM rooms WHERE live != 0"
ALL_OFFLINE = "UPDATE rooms SET live = 0, started_at = NULL, live_owner = '' WHERE live != 0"

_ORDER = " ORDER BY r.live DESC, r.id DESC LIMIT ?"
_OWNER = "r.owner_id = ?"
_AFTER = "(r.live, r.id) < (?, ?)"


def list_sql(by_owner: bool, after: bool) -> str:
    """The listing statement (one of four, all in STATEMENTS)."""
    where = [w for w, on in ((_OWNER, by_owner), (_AFTER, after)) if on]
    return _SELECT + (" WHERE " + " AND ".join(where) if where else "") + _ORDER


STATEMENTS: tuple[str, ...] = (
    LOCK_OWNER, COUNT_OWNED, SLUGS_LIKE, INSERT, BY_SLUG, BY_OWNER, BY_KEY_HASH, UPDATE_TEXT, DELETE,
    SET_KEY, SET_LIVE, SET_OFFLINE, LIVE_RUNS, ALL_OFFLINE,
    *(list_sql(o, a) for o in (False, True) for a in (False, True)),
)


@dataclass(frozen=True)
class NewRoom:
    slug: str
    owner_id: int
    title: str
    description: str
    stream_key: str
    stream_key_hash: str
    created_at: str


class RoomLimitReached(Exception):
    """The owner already holds the most rooms allowed."""


class RoomRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert(self, room: NewRoom, max_rooms: int = 0) -> int:
        """The new room's id. ``RoomLimitReached`` when the owner holds ``max_rooms``
        (0: no cap); ``UniqueViolation(rooms_slug_key)`` when the slug is taken."""
        async with self.db.transaction() as tx:
            if max_rooms > 0:
                await tx.execute(LOCK_OWNER, (room.owner_id,))
                row = await tx.fetch_one(COUNT_OWNED, (room.owner_id,))
                if row is not None and int(row["n"]) >= max_rooms:
                    raise RoomLimitReached(room.owner_id)
            return await tx.insert(INSERT, (room.slug, room.owner_id, room.title, room.description,
                                            room.stream_key, room.stream_key_hash, room.created_at))

    async def slugs_starting(self, prefix: str) -> set[str]:
        """Slugs beginning with ``prefix`` (slugs hold only a-z, 0-9 and '-': no LIKE
        wildcard to escape)."""
        rows = await self.db.fetch_all(SLUGS_LIKE, (prefix + "%",))
        return {str(r["slug"]) for r in rows}

    async def page(self, limit: int, after: tuple[int, int] | None, owner_id: int | None) -> list[Row]:
        params: list[object] = []
        if owner_id is not None:
            params.append(owner_id)
        if after is not None:
            # ``live`` is 0 or 1: any larger cursor value orders the same as 2, which fits
            # the column's type on every backend (PostgreSQL's INTEGER refuses > 2**31 - 1).
            params.extend((min(after[0], 2), after[1]))
        return await self.db.fetch_all(list_sql(owner_id is not None, after is not None),
                                       (*params, limit_or_all(limit)))

    async def by_slug(self, slug: str) -> Row | None:
        return await self.db.fetch_one(BY_SLUG, (slug,))

    async def by_owner(self, owner_id: int) -> list[Row]:
        return await self.db.fetch_all(BY_OWNER, (owner_id,))

    async def by_key_hash(self, key_hash: str) -> Row | None:
        return await self.db.fetch_one(BY_KEY_HASH, (key_hash,))

    async def update_text(self, slug: str, title: str | None, description: str | None) -> int:
        return await self.db.execute(UPDATE_TEXT, (title, description, slug))

    async def delete(self, slug: str) -> int:
        return await self.db.execute(DELETE, (slug,))

    async def set_key(self, slug: str, key: str, key_hash: str) -> int:
        return await self.db.execute(SET_KEY, (key, key_hash, slug))

    async def set_live(self, slug: str, started_at: str, owner: str) -> int:
        return await self.db.execute(SET_LIVE, (started_at, owner, slug))

    async def set_offline(self, slug: str, owner: str) -> int:
        """Clear the flag if ``owner`` set it; 0 when the room is live under another owner."""
        return await self.db.execute(SET_OFFLINE, (slug, owner))

    async def live_runs(self) -> list[tuple[str, str]]:
        """(slug, live_owner) of every room flagged live."""
        return [(str(r["slug"]), str(r["live_owner"])) for r in await self.db.fetch_all(LIVE_RUNS)]

    async def set_all_offline(self) -> int:
        return await self.db.execute(ALL_OFFLINE)
