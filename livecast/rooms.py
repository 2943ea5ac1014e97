"""Rooms: a slug, a title, an owner and the stream key OBS publishes with.

Stream keys are ``lc_`` + ``secrets.token_urlsafe(24)`` (192 bits). The room row keeps
the key (its owner can read it back) and its SHA-256 (UNIQUE), which is what a publish
is looked up by; the match is then confirmed with ``hmac.compare_digest``.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import logging
import re
import secrets
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from livecast.core.errors import Conflict, RoomNotFound, ValidationError
from livecast.storage.database import Database
from livecast.storage.errors import UniqueViolation
from livecast.storage.rooms import (
    SLUG_CONSTRAINT,
    NewRoom,
    RoomLimitReached,
    RoomRepository,
)
from livecast.users import User, utc_now

log = logging.getLogger(__name__)

SLUG_RE = re.compile(r"[a-z0-9-]{3,40}")
SLUG_MAX = 40
TITLE_MAX = 100
DESCRIPTION_MAX = 2000
STREAM_KEY_PREFIX = "lc_"
# Refused in titles and descriptions: C0/C1 controls (a description keeps tab and newlines),
# bidi embeddings/overrides/isolates and marks (which can reverse how the rest of a page
# reads), and zero-width characters (invisible look-alikes). ZWNJ and ZWJ (U+200C/D) stay
# allowed: Persian and Indic text and emoji sequences need them.
_INVISIBLE = "\u061c\u200b\u200e\u200f\u202a-\u202e\u2060-\u2069\ufeff"
_CONTROL = re.compile(f"[\\x00-\\x1f\\x7f-\\x9f{_INVISIBLE}]")
_CONTROL_MULTILINE = re.compile(f"[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f{_INVISIBLE}]")
# The same rules as JSON Schema patterns, for the OpenAPI document (\\uXXXX escapes work in
# Python's re and in ECMA regular expressions alike).
_REFUSED = (r"\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u061c\u200b\u200e\u200f"
            r"\u202a-\u202e\u2060-\u2069\ufeff")
TITLE_PATTERN = rf"^[^{_REFUSED}\t\n\r]*[^{_REFUSED}\s][^{_REFUSED}\t\n\r]*$"
DESCRIPTION_PATTERN = rf"^[^{_REFUSED}]*$"

# A room-JSON extra may return {OWNER_ONLY: {"stream": {...}}}: fields merged into those
# blocks only for the room's owner and admins (e.g. the publisher's address).
OWNER_ONLY = "owner_only"

RoomExtra = Callable[[str], dict[str, Any]]


class RoomExtras:
    """Live data other components add to every room JSON the API returns: each extra gets a
    slug and returns keys to add or override (ingest: ``live``, ``stream``; chat:
    ``viewers``). The composition root makes one and hands it to the components."""

    def __init__(self) -> None:
        self._extras: list[RoomExtra] = []

    def register(self, extra: RoomExtra) -> Callable[[], None]:
        """Add ``extra``; returns the call that removes it again."""
        self._extras.append(extra)

        def unregister() -> None:
            if extra in self._extras:
                self._extras.remove(extra)

        return unregister

    def __iter__(self) -> Iterator[RoomExtra]:
        return iter(tuple(self._extras))

def new_stream_key() -> str:
    return STREAM_KEY_PREFIX + secrets.token_urlsafe(24)


def stream_key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _text(value: object, field: str, *, min_len: int, max_len: int, multiline: bool) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a string", field=field)
    value = value.strip()
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValidationError(f"{field} is not valid text", field=field) from err
    if (_CONTROL_MULTILINE if multiline else _CONTROL).search(value):
        raise ValidationError(f"{field} contains control, bidi-override or zero-width characters",
                              field=field, code="invalid_characters")
    if not min_len <= len(value) <= max_len:
        raise ValidationError(f"{field} must be {min_len}-{max_len} characters", field=field)
    return value


def validate_title(value: object) -> str:
    return _text(value, "title", min_len=1, max_len=TITLE_MAX, multiline=False)


def validate_description(value: object) -> str:
    if value is None:
        return ""
    return _text(value, "description", min_len=0, max_len=DESCRIPTION_MAX, multiline=True)


def validate_slug(value: object) -> str:
    if not isinstance(value, str) or not SLUG_RE.fullmatch(value):
        raise ValidationError("slug must be 3-40 characters of a-z, 0-9 and '-'", field="slug")
    return value


def slugify(title: str) -> str:
    """A valid (not necessarily free) slug derived from a title: 'Café Live!' -> 'cafe-live'."""
    ascii_ = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_.lower()).strip("-")
    slug = slug[:SLUG_MAX].strip("-")
    if not slug:
        return "room"
    if len(slug) < 3:
        return f"{slug}-room"
    return slug


def _with_suffix(base: str, n: int) -> str:
    suffix = f"-{n}"
    return base[: SLUG_MAX - len(suffix)].rstrip("-") + suffix


@dataclass(frozen=True)
class Room:
    id: int
    slug: str
    owner_id: int
    owner_username: str
    title: str
    description: str
    stream_key: str
    live: bool
    started_at: str | None
    created_at: str

    @classmethod
    def from_row(cls, row: Any) -> Room:
        return cls(
            id=int(row["id"]),
            slug=str(row["slug"]),
            owner_id=int(row["owner_id"]),
            owner_username=str(row["owner_username"]),
            title=str(row["title"]),
            description=str(row["description"]),
            stream_key=str(row["stream_key"]),
            live=bool(row["live"]),
            started_at=row["started_at"],
            created_at=str(row["created_at"]),
        )

    @property
    def hls_url(self) -> str:
        return f"/hls/{self.slug}/index.m3u8"

    @property
    def master_url(self) -> str:
        """The multivariant playlist (served when a transcoding ladder is on)."""
        return f"/hls/{self.slug}/master.m3u8"

    def to_json(self, owner_view: bool = False, *, rtmp_url: str | None = None) -> dict[str, Any]:
        """Public room JSON; ``stream_key`` and ``rtmp_url`` only in the owner's view."""
        body: dict[str, Any] = {
            "slug": self.slug,
            "title": self.title,
            "description": self.description,
            "owner": {"username": self.owner_username},
            "live": self.live,
            "viewers": 0,
            "hls_url": self.hls_url,
            "created_at": self.created_at,
        }
        if owner_view:
            body["stream_key"] = self.stream_key
            if rtmp_url is not None:
                body["rtmp_url"] = rtmp_url
        return body

    def is_managed_by(self, user: User) -> bool:
        return user.role == "admin" or user.id == self.owner_id


# How often a derived slug is retried when another creation took it in the meantime.
_SLUG_ATTEMPTS = 8


class RoomService:
    def __init__(self, db: Database) -> None:
        self.repo = RoomRepository(db)

    async def create(self, owner: User, title: object, description: object = None,
                     slug: object = None, *, max_rooms: int = 0) -> Room:
        """Create a room. A given slug that is taken is 409 ``slug_taken``; a derived one
        gets the first free ``-2``, ``-3``... suffix. An owner (not an admin) who already
        has ``max_rooms`` rooms (0 = no cap) gets 409 ``room_limit``.

        The slug is settled by the unique constraint: a derived slug that another creation
        took in the meantime is recomputed and tried again."""
        title_ = validate_title(title)
        description_ = validate_description(description)
        given = None if slug is None else validate_slug(slug)
        cap = max_rooms if max_rooms > 0 and owner.role != "admin" else 0
        for attempt in range(_SLUG_ATTEMPTS):
            slug_ = given or await self._free_slug(slugify(title_))
            key = new_stream_key()
            room = NewRoom(slug_, owner.id, title_, description_, key, stream_key_hash(key), utc_now())
            try:
                await self.repo.insert(room, cap)
            except RoomLimitReached as err:
                raise Conflict(f"you already have {max_rooms} rooms, the most allowed; delete one first",
                               code="room_limit") from err
            except UniqueViolation as err:
                if err.constraint != SLUG_CONSTRAINT:
                    raise
                if given is not None or attempt == _SLUG_ATTEMPTS - 1:
                    raise Conflict("slug is already taken", field="slug", code="slug_taken") from err
                continue
            log.info("user %s created room %s", owner.username, slug_)
            return await self.require(slug_)
        raise Conflict("slug is already taken", field="slug", code="slug_taken")

    async def _free_slug(self, base: str) -> str:
        # Every candidate base[:k].rstrip("-") + "-N" (k >= 32) starts with this prefix.
        taken = await self.repo.slugs_starting(base[:32].rstrip("-"))
        if base not in taken:
            return base
        n = 2
        while _with_suffix(base, n) in taken:
            n += 1
        return _with_suffix(base, n)

    async def list(self, limit: int = -1, after: tuple[int, int] | None = None,
                   owner_id: int | None = None) -> builtins.list[Room]:
        """Live rooms first, then newest (highest id) first: up to ``limit`` (-1: all) rooms,
        those after ``after`` = ``sort_key(room)`` of the previous page's last room."""
        rows = await self.repo.page(limit, after, owner_id)
        return [Room.from_row(r) for r in rows]

    @staticmethod
    def sort_key(room: Room) -> tuple[int, int]:
        """The position of a room in ``list()``'s order (what a page cursor holds)."""
        return (int(room.live), room.id)

    async def get(self, slug: str) -> Room | None:
        if not isinstance(slug, str) or not SLUG_RE.fullmatch(slug):
            return None
        row = await self.repo.by_slug(slug)
        return Room.from_row(row) if row else None

    async def require(self, slug: str) -> Room:
        room = await self.get(slug)
        if room is None:
            raise RoomNotFound("no such room")
        return room

    async def list_by_owner(self, owner_id: int) -> builtins.list[Room]:
        rows = await self.repo.by_owner(owner_id)
        return [Room.from_row(r) for r in rows]

    async def update(self, slug: str, *, title: object = None, description: object = None) -> Room:
        """Change the title and/or description (None leaves a field as it is)."""
        title_ = None if title is None else validate_title(title)
        description_ = None if description is None else validate_description(description)
        self._check_slug(slug)
        self._found(await self.repo.update_text(slug, title_, description_))
        return await self.require(slug)

    async def delete(self, slug: str) -> None:
        self._check_slug(slug)
        self._found(await self.repo.delete(slug))
        log.info("room %s deleted", slug)

    async def rotate_key(self, slug: str) -> Room:
        """A new stream key; the old one stops matching the moment this returns."""
        key = new_stream_key()
        self._check_slug(slug)
        self._found(await self.repo.set_key(slug, key, stream_key_hash(key)))
        log.info("stream key of room %s rotated", slug)
        return await self.require(slug)

    @staticmethod
    def _check_slug(slug: str) -> None:
        if not isinstance(slug, str) or not SLUG_RE.fullmatch(slug):
            raise RoomNotFound("no such room")

    @staticmethod
    def _found(changed: int) -> None:
        """RoomNotFound when a write to a room changed nothing (it is not, or no longer, there)."""
        if changed == 0:
            raise RoomNotFound("no such room")

    async def find_by_stream_key(self, key: object) -> Room | None:
        """The room this key publishes to, or None."""
        if not isinstance(key, str) or not 1 <= len(key) <= 256:
            return None
        row = await self.repo.by_key_hash(stream_key_hash(key))
        if row is None:
            return None
        room = Room.from_row(row)
        if not hmac.compare_digest(room.stream_key.encode(), key.encode("utf-8", "surrogatepass")):
            return None
        return room

    async def set_live(self, slug: str, live: bool, owner: str = "") -> bool:
        """Mark a room live (``started_at`` = now) under ``owner`` (the live run's token), or
        offline if ``owner`` is the one that set it live; False if nothing changed (no such
        room, or it is live under another owner: another origin took it over)."""
        if live:
            return await self.repo.set_live(slug, utc_now(), owner) > 0
        return await self.repo.set_offline(slug, owner) > 0

    async def live_runs(self) -> builtins.list[tuple[str, str]]:
        """(slug, owner token) of every room flagged live."""
        return await self.repo.live_runs()

    async def set_all_offline(self) -> int:
        return await self.repo.set_all_offline()
