"""The recordings repository: all SQL about recordings, their stored segments and a room's
recording choice. Times are UNIX seconds (REAL). Portable SQL only (SQLite and PostgreSQL).

A segment row is inserted only after its bytes are durably stored, in one transaction with
the recording's running totals, so the index never lists what storage does not hold.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from livecast.storage.database import Database, Params, Row, limit_or_all

log = logging.getLogger(__name__)

_COLUMNS = (
    "r.id, r.room_id, ro.slug, ro.owner_id, r.status, r.visibility, r.container, r.started_at,"
    " r.ended_at, r.duration, r.bytes, r.gaps"
)
_SELECT = f"SELECT {_COLUMNS} FROM recordings r JOIN rooms ro ON ro.id = r.room_id"
INSERT = (
    "INSERT INTO recordings (room_id, status, visibility, container, started_at, node, seen_at)"
    " VALUES (?, 'recording', ?, ?, ?, ?, ?) RETURNING id"
)
BY_ID = _SELECT + " WHERE r.id = ?"
BY_ROOM = _SELECT + " WHERE ro.slug = ? AND r.id < ? ORDER BY r.id DESC LIMIT ?"
LIVE_IN_ROOM = _SELECT + " WHERE ro.slug = ? AND r.status = 'recording' ORDER BY r.id DESC LIMIT 1"
ADD_SEGMENT = (
    "INSERT INTO recording_segments (recording_id, seq, object_key, init_key, media_start, duration,"
    " program_date_time, bytes, discontinuity) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
ADD_TOTALS = "UPDATE recordings SET duration = duration + ?, bytes = bytes + ?, seen_at = ? WHERE id = ?"
TOUCH = "UPDATE recordings SET seen_at = ? WHERE id = ? AND status = 'recording'"
ADD_GAP = "UPDATE recordings SET gaps = gaps + 1 WHERE id = ?"
SEGMENTS = (
    "SELECT seq, object_key, init_key, media_start, duration, program_date_time, bytes, discontinuity"
    " FROM recording_segments WHERE recording_id = ? ORDER BY seq"
)
FINISH = "UPDATE recordings SET status = ?, ended_at = ? WHERE id = ? AND status = 'recording'"
OPEN_OF_NODE = (
    "SELECT id, started_at, duration FROM recordings WHERE status = 'recording' AND (node = ? OR node = '')"
)
OPEN_STALE = (
    "SELECT id, started_at, duration FROM recordings"
    " WHERE status = 'recording' AND node != ? AND (seen_at IS NULL OR seen_at < ?)"
)
SET_VISIBILITY = "UPDATE recordings SET visibility = ? WHERE id = ?"
DELETE = "DELETE FROM recordings WHERE id = ?"
ROOM_CHOICE = (
    "SELECT ro.id, rr.record FROM rooms ro LEFT JOIN room_recording rr ON rr.room_id = ro.id"
    " WHERE ro.slug = ?"
)
ALL_CHOICES = "SELECT ro.slug, rr.record FROM room_recording rr JOIN rooms ro ON ro.id = rr.room_id"
CLEAR_CHOICE = "DELETE FROM room_recording WHERE room_id = ?"
SET_CHOICE = "INSERT INTO room_recording (room_id, record) VALUES (?, ?)"

CHAT_COMMENTS = (
    "SELECT c.id, c.content, c.created_at, u.username FROM comments c JOIN users u ON u.id = c.user_id"
    " WHERE c.room_id = ? AND c.deleted = 0 AND c.created_at >= ? AND c.created_at <= ? ORDER BY c.id LIMIT ?"
)
CHAT_GIFTS = (
    "SELECT g.id, g.gift, g.quantity, g.created_at, u.username FROM gifts g JOIN users u ON u.id = g.sender_id"
    " WHERE g.room_id = ? AND g.created_at >= ? AND g.created_at <= ? ORDER BY g.id LIMIT ?"
)

FINISHED_OLDEST_FIRST = (
    "SELECT id, room_id, bytes, ended_at FROM recordings WHERE status != 'recording' ORDER BY started_at, id"
)
BYTES_BY_ROOM = "SELECT room_id, SUM(bytes) AS total FROM recordings GROUP BY room_id"

_CLIP = (
    "SELECT c.id, c.room_id, ro.slug, ro.owner_id, c.recording_id, c.user_id, c.title, c.visibility,"
    " c.media_start, c.duration, c.object_key, c.created_at FROM clips c JOIN rooms ro ON ro.id = c.room_id"
)
INSERT_CLIP = (
    "INSERT INTO clips (room_id, recording_id, user_id, title, visibility, media_start, duration, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"
)
CLIP_STORED = "UPDATE clips SET object_key = ? WHERE id = ?"
CLIP_BY_ID = _CLIP + " WHERE c.id = ?"
CLIPS_BY_ROOM = _CLIP + " WHERE ro.slug = ? AND c.object_key IS NOT NULL AND c.id < ? ORDER BY c.id DESC LIMIT ?"
DELETE_CLIP = "DELETE FROM clips WHERE id = ?"

STATEMENTS: tuple[str, ...] = (
    INSERT, BY_ID, BY_ROOM, LIVE_IN_ROOM, ADD_SEGMENT, ADD_TOTALS, TOUCH, ADD_GAP, SEGMENTS, FINISH,
    OPEN_OF_NODE, OPEN_STALE,
    SET_VISIBILITY, DELETE, ROOM_CHOICE, ALL_CHOICES, CLEAR_CHOICE, SET_CHOICE, CHAT_COMMENTS, CHAT_GIFTS,
    FINISHED_OLDEST_FIRST, BYTES_BY_ROOM, INSERT_CLIP, CLIP_STORED, CLIP_BY_ID, CLIPS_BY_ROOM, DELETE_CLIP,
)


@dataclass(frozen=True)
class StoredSegment:
    seq: int
    object_key: str
    init_key: str | None
    media_start: float
    duration: float
    program_date_time: float
    bytes: int
    discontinuity: bool

    @classmethod
    def from_row(cls, row: Row) -> StoredSegment:
        return cls(int(row["seq"]), str(row["object_key"]), row["init_key"], float(row["media_start"]),
                   float(row["duration"]), float(row["program_date_time"]), int(row["bytes"]),
                   bool(row["discontinuity"]))


class RecordingRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, room_id: int, visibility: str, container: str, started_at: float,
                     node: str = "") -> int:
        return await self.db.insert(INSERT, (room_id, visibility, container, started_at, node, started_at))

    async def add_segments(self, recording_id: int, segments: list[StoredSegment], now: float = 0.0) -> None:
        """Index stored segments and add them to the running totals (the recording seen alive
        at ``now``), in one transaction."""
        if not segments:
            return
        statements: list[tuple[str, Params]] = [
            (ADD_SEGMENT, (recording_id, s.seq, s.object_key, s.init_key, s.media_start, s.duration,
                           s.program_date_time, s.bytes, int(s.discontinuity)))
            for s in segments]
        statements.append((ADD_TOTALS, (sum(s.duration for s in segments), sum(s.bytes for s in segments),
                                        now, recording_id)))
        await self.db.execute_batch(statements)

    async def add_gap(self, recording_id: int) -> None:
        await self.db.execute(ADD_GAP, (recording_id,))

    async def finish(self, recording_id: int, status: str, ended_at: float) -> int:
        return await self.db.execute(FINISH, (status, ended_at, recording_id))

    async def touch(self, recording_ids: list[int], now: float) -> None:
        """The recording node shows these recordings in progress alive."""
        if recording_ids:
            async with self.db.transaction() as tx:
                for recording_id in recording_ids:
                    await tx.execute(TOUCH, (now, recording_id))

    async def interrupt_open(self, node: str) -> list[int]:
        """At ``node``'s start: the recordings it (or a node before migration 7) left
        ``recording`` become ``interrupted``, ending where their last stored segment ends."""
        return await self._interrupt(await self.db.fetch_all(OPEN_OF_NODE, (node,)))

    async def interrupt_stale(self, node: str, seen_before: float) -> list[int]:
        """Other nodes' recordings in progress not seen alive since ``seen_before``."""
        return await self._interrupt(await self.db.fetch_all(OPEN_STALE, (node, seen_before)))

    async def _interrupt(self, rows: list[Row]) -> list[int]:
        closed = []
        for row in rows:
            ended = float(row["started_at"]) + float(row["duration"])
            if await self.finish(int(row["id"]), "interrupted", ended):  # 0: another node was first
                closed.append(int(row["id"]))
        return closed

    async def by_id(self, recording_id: int) -> Row | None:
        return await self.db.fetch_one(BY_ID, (recording_id,))

    async def by_room(self, slug: str, limit: int, before: int | None) -> list[Row]:
        return await self.db.fetch_all(BY_ROOM, (slug, before if before is not None else 2**62,
                                                 limit_or_all(limit)))

    async def live_in_room(self, slug: str) -> Row | None:
        """The room's recording in progress (any node's), if any."""
        return await self.db.fetch_one(LIVE_IN_ROOM, (slug,))

    async def segments(self, recording_id: int) -> list[StoredSegment]:
        rows = await self.db.fetch_all(SEGMENTS, (recording_id,))
        return [StoredSegment.from_row(row) for row in rows]

    async def set_visibility(self, recording_id: int, visibility: str) -> int:
        return await self.db.execute(SET_VISIBILITY, (visibility, recording_id))

    async def delete(self, recording_id: int) -> int:
        return await self.db.execute(DELETE, (recording_id,))

    async def room_choice(self, slug: str) -> tuple[int, bool | None] | None:
        """(room id, the room's own choice or None for the default); None: no such room."""
        row = await self.db.fetch_one(ROOM_CHOICE, (slug,))
        if row is None:
            return None
        record = row["record"]
        return int(row["id"]), None if record is None else bool(record)

    async def all_choices(self) -> dict[str, bool]:
        """Every room's own choice, by slug (rooms following the default are absent)."""
        return {str(row["slug"]): bool(row["record"]) for row in await self.db.fetch_all(ALL_CHOICES)}

    async def set_room_choice(self, room_id: int, record: bool | None) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(CLEAR_CHOICE, (room_id,))
            if record is not None:
                await tx.execute(SET_CHOICE, (room_id, int(record)))

    async def chat_between(self, room_id: int, start: str, end: str, limit: int) -> tuple[list[Row], list[Row]]:
        """Comments (not deleted) and gifts of a room written between two ISO 8601 UTC times."""
        comments = await self.db.fetch_all(CHAT_COMMENTS, (room_id, start, end, limit))
        gifts = await self.db.fetch_all(CHAT_GIFTS, (room_id, start, end, limit))
        return comments, gifts

    async def finished_oldest_first(self) -> list[Row]:
        """Finished recordings (never one in progress), oldest first."""
        return await self.db.fetch_all(FINISHED_OLDEST_FIRST)

    async def bytes_by_room(self) -> dict[int, int]:
        """Stored bytes per room, recordings in progress included."""
        return {int(r["room_id"]): int(r["total"] or 0) for r in await self.db.fetch_all(BYTES_BY_ROOM)}


@dataclass(frozen=True)
class NewClip:
    room_id: int
    recording_id: int
    user_id: int
    title: str
    visibility: str
    media_start: float
    duration: float
    created_at: float


class ClipRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert(self, clip: NewClip) -> int:
        return await self.db.insert(INSERT_CLIP, (clip.room_id, clip.recording_id, clip.user_id, clip.title,
                                                  clip.visibility, clip.media_start, clip.duration,
                                                  clip.created_at))

    async def stored(self, clip_id: int, object_key: str) -> None:
        await self.db.execute(CLIP_STORED, (object_key, clip_id))

    async def by_id(self, clip_id: int) -> Row | None:
        return await self.db.fetch_one(CLIP_BY_ID, (clip_id,))

    async def by_room(self, slug: str, limit: int, before: int | None) -> list[Row]:
        return await self.db.fetch_all(CLIPS_BY_ROOM, (slug, before if before is not None else 2**62,
                                                       limit_or_all(limit)))

    async def delete(self, clip_id: int) -> int:
        return await self.db.execute(DELETE_CLIP, (clip_id,))
