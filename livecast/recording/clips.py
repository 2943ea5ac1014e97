"""Clips: the last N seconds of a recorded live room, or a range of a recording, cut at
segment boundaries (every segment starts with a keyframe) and remuxed into one MP4 with
its own id, stored beside the recordings (``clips/{id}.mp4``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from livecast.core.errors import Conflict, Forbidden, NotFound, ValidationError
from livecast.recording.service import Recording, RecordingService
from livecast.storage.database import Row
from livecast.storage.recordings import ClipRepository, NewClip, StoredSegment

log = logging.getLogger(__name__)

TITLE_MAX = 100


@dataclass(frozen=True)
class Clip:
    id: int
    slug: str
    owner_id: int
    recording_id: int | None
    user_id: int | None
    title: str
    visibility: str
    media_start: float
    duration: float
    object_key: str | None
    created_at: float

    @classmethod
    def from_row(cls, row: Row) -> Clip:
        return cls(int(row["id"]), str(row["slug"]), int(row["owner_id"]),
                   None if row["recording_id"] is None else int(row["recording_id"]),
                   None if row["user_id"] is None else int(row["user_id"]), str(row["title"]),
                   str(row["visibility"]), float(row["media_start"]), float(row["duration"]), row["object_key"],
                   float(row["created_at"]))

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "room": self.slug, "recording": self.recording_id, "title": self.title,
                "visibility": self.visibility, "start": round(self.media_start, 3),
                "duration": round(self.duration, 3),
                "created_at": datetime.fromtimestamp(self.created_at, UTC).isoformat().replace("+00:00", "Z"),
                "url": f"/clips/{self.id}.mp4", "page": f"/clip/{self.id}"}


def pick_segments(segments: list[StoredSegment], start: float, end: float) -> list[StoredSegment]:
    """The segments covering start..end: from the one whose start is nearest ``start`` (a
    keyframe) up to the last one starting before ``end``, all of one init segment."""
    candidates = [s for s in segments if s.media_start < end] or segments[:1]
    first = min(range(len(candidates)), key=lambda i: abs(candidates[i].media_start - start))
    chosen: list[StoredSegment] = []
    for segment in candidates[first:]:
        if chosen and segment.init_key != chosen[0].init_key:
            break
        chosen.append(segment)
    return chosen


class ClipService:
    def __init__(self, recordings: RecordingService, repo: ClipRepository,
                 clock: Callable[[], float] = time.time) -> None:
        self.recordings = recordings
        self.repo = repo
        self.clock = clock
        self.settings = recordings.settings

    async def create(self, slug: str, user_id: int, manager: Callable[[Recording], bool],
                     data: dict[str, Any]) -> Clip:
        title = data.get("title") or ""
        if not isinstance(title, str) or len(title) > TITLE_MAX or not title.isprintable():
            raise ValidationError(f"title: printable text, at most {TITLE_MAX} characters", field="title")
        recording, start, end = await self._range(slug, data)
        if recording.visibility != "public" and not manager(recording):
            raise Forbidden("this recording is private")
        stored = await self.recordings.repo.segments(recording.id)
        if end is None and stored:  # the last ``start`` seconds of the live edge
            end = stored[-1].media_start + stored[-1].duration
            start = max(0.0, end - start)
        segments = pick_segments(stored, start, end or 0.0)
        if not segments:
            raise Conflict("nothing recorded in that range yet")
        duration = sum(s.duration for s in segments)
        clip_id = await self.repo.insert(NewClip(
            recording.room_id, recording.id, user_id, title, recording.visibility,
            segments[0].media_start, duration, self.clock()))
        try:
            key = f"clips/{clip_id}.mp4"
            await self.recordings.store_mp4(segments, f"clip-{clip_id}", key)
            await self.repo.stored(clip_id, key)
        except BaseException:
            await self.repo.delete(clip_id)
            raise
        log.info("clip %d of %s: %.1f s from %.1f s", clip_id, slug, duration, segments[0].media_start)
        return await self.require(clip_id)

    async def _range(self, slug: str, data: dict[str, Any]) -> tuple[Recording, float, float | None]:
        """(recording, from, to); live: (recording in progress, seconds, None)."""
        most = self.settings.max_clip_seconds
        if data.get("recording") is None:
            seconds = _number(data, "seconds", 1, most)
            recording = await self.recordings.live(slug)
            if recording is None:
                raise Conflict("the room is not live with recording on: clip a past broadcast instead",
                               code="not_recording")
            return recording, seconds, None
        recording_id = data.get("recording")
        if not isinstance(recording_id, int) or isinstance(recording_id, bool) or recording_id < 1:
            raise ValidationError("recording must be a recording id", field="recording")
        recording = await self.recordings.require(recording_id)
        if recording.slug != slug:
            raise NotFound("no such recording in this room")
        start = _number(data, "from", 0, 10_000_000)
        end = _number(data, "to", 0, 10_000_000)
        if not start < end <= start + most:
            raise ValidationError(f"to must be after from, at most {most} s later", field="to")
        return recording, start, end

    async def require(self, clip_id: int) -> Clip:
        row = await self.repo.by_id(clip_id)
        if row is None or row["object_key"] is None:
            raise NotFound("no such clip")
        return Clip.from_row(row)

    async def list_room(self, slug: str, limit: int, before: int | None) -> list[Clip]:
        return [Clip.from_row(r) for r in await self.repo.by_room(slug, limit, before)]

    async def read(self, clip: Clip) -> bytes:
        assert clip.object_key is not None
        data = await self.recordings.storage.get(clip.object_key)
        if data is None:
            raise NotFound("clip media not available")
        return data

    async def delete(self, clip: Clip) -> None:
        await self.repo.delete(clip.id)
        if clip.object_key is not None:
            await self.recordings.storage.delete(clip.object_key)


def _number(data: dict[str, Any], name: str, low: float, high: float) -> float:
    value = data.get(name)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
        raise ValidationError(f"{name} must be a number of seconds, {low}..{high}", field=name)
    return float(value)


CLIPS: web.AppKey[ClipService] = web.AppKey("clips")
