"""RecordingService: what the HTTP handlers ask of recordings (listing, access, playlists,
stored bytes, visibility, deletion, a room's recording choice)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from livecast.config import RecordingSettings
from livecast.core.errors import Conflict, Forbidden, NotFound, RoomNotFound, ValidationError
from livecast.recording.chatreplay import MediaClock, iso_ms, replay
from livecast.recording.choices import RoomChoices
from livecast.recording.objects import ObjectStorage, StorageError
from livecast.recording.recorder import Recorder, recording_prefix
from livecast.recording.remux import Remuxer
from livecast.recording.vod import SEGMENT_NAME, UrlSigner, render_dvr, render_vod
from livecast.storage.database import Row
from livecast.storage.recordings import RecordingRepository, StoredSegment

log = logging.getLogger(__name__)

VISIBILITIES = ("public", "private")


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Recording:
    id: int
    room_id: int
    slug: str
    owner_id: int
    status: str
    visibility: str
    container: str
    started_at: float
    ended_at: float | None
    duration: float
    bytes: int
    gaps: int

    @classmethod
    def from_row(cls, row: Row) -> Recording:
        return cls(int(row["id"]), int(row["room_id"]), str(row["slug"]), int(row["owner_id"]),
                   str(row["status"]), str(row["visibility"]), str(row["container"]),
                   float(row["started_at"]), None if row["ended_at"] is None else float(row["ended_at"]),
                   float(row["duration"]), int(row["bytes"]), int(row["gaps"]))

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "room": self.slug, "status": self.status, "visibility": self.visibility,
                "container": self.container, "started_at": _iso(self.started_at),
                "ended_at": _iso(self.ended_at), "duration": round(self.duration, 3), "bytes": self.bytes,
                "gaps": self.gaps, "playlist_url": f"/vod/{self.id}/index.m3u8"}


class RecordingService:
    def __init__(self, settings: RecordingSettings, repo: RecordingRepository, storage: ObjectStorage,
                 recorder: Recorder, signer: UrlSigner, cache_dir: Path, remuxer: Remuxer,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.repo = repo
        self.storage = storage
        self.recorder = recorder
        self.signer = signer
        self.clock = clock
        self.cache_dir = cache_dir
        self.remuxer = remuxer
        self._building: dict[int, asyncio.Lock] = {}
        self.choices = RoomChoices(repo, settings.enabled)

    async def list_room(self, slug: str, limit: int, before: int | None) -> list[Recording]:
        return [Recording.from_row(r) for r in await self.repo.by_room(slug, limit, before)]

    async def require(self, recording_id: int) -> Recording:
        row = await self.repo.by_id(recording_id)
        if row is None:
            raise NotFound("no such recording")
        return Recording.from_row(row)

    def check_view(self, recording: Recording, manager: bool, exp: str | None, sig: str | None) -> None:
        """Public recordings are open; a private one needs its manager or a valid signature."""
        if recording.visibility == "public" or manager:
            return
        if self.signer.valid(recording.id, exp, sig, self.clock()):
            return
        raise Forbidden("this recording is private")

    def signed_query(self, recording: Recording, ttl: int | None = None) -> tuple[str, int]:
        expires = int(self.clock()) + (ttl if ttl is not None else self.settings.signed_url_ttl)
        return self.signer.query(recording.id, expires), expires

    async def playlist(self, recording: Recording, query: str) -> bytes:
        return render_vod(await self.repo.segments(recording.id), query, ended=recording.status != "recording")

    async def live(self, slug: str) -> Recording | None:
        row = await self.repo.live_in_room(slug)
        return None if row is None else Recording.from_row(row)

    async def dvr_playlist(self, recording: Recording) -> bytes:
        return render_dvr(await self.repo.segments(recording.id), recording.id, self.settings.dvr_window)

    async def read(self, recording: Recording, name: str) -> bytes:
        if not SEGMENT_NAME.fullmatch(name):
            raise NotFound("no such segment")
        try:
            data = await self.storage.get(recording_prefix(recording.id) + name)
        except StorageError as err:
            log.warning("recording %d: reading %s failed: %s", recording.id, name, err)
            raise NotFound("segment not available") from err
        if data is None:
            raise NotFound("no such segment")
        return data

    async def chat(self, recording: Recording, start: float, end: float) -> list[dict[str, Any]]:
        """Comments and gifts of the broadcast with their offset (s) from the recording start."""
        segments = await self.repo.segments(recording.id)
        wall_end = recording.ended_at if recording.ended_at is not None else self.clock()
        comments, gifts = await self.repo.chat_between(
            recording.room_id, iso_ms(recording.started_at), iso_ms(wall_end), self.settings.chat_replay_max)
        return replay(MediaClock(segments), comments, gifts, start, end)

    async def download(self, recording: Recording) -> Path:
        """The whole recording as one MP4 file (made once per node, then served from its cache)."""
        if recording.status == "recording":
            raise Conflict("the broadcast is still being recorded; download it once it has ended")
        target = self.cache_dir / f"{recording.id}.mp4"
        lock = self._building.setdefault(recording.id, asyncio.Lock())
        async with lock:
            if not target.exists():
                await self._build(recording, target)
        self._building.pop(recording.id, None)
        return target

    async def _build(self, recording: Recording, target: Path) -> None:
        segments = await self.repo.segments(recording.id)
        if not segments:
            raise NotFound("this recording has no stored media")
        frames = await self._remux(segments, target)
        log.info("recording %d: download.mp4 made (%d video packets)", recording.id, frames)

    async def store_mp4(self, segments: list[StoredSegment], name: str, key: str) -> None:
        """Remux ``segments`` into one MP4 and store it as ``key``."""
        target = self.cache_dir / f"{name}.mp4"
        try:
            await self._remux(segments, target)
            data = await asyncio.to_thread(target.read_bytes)
            await self.storage.put(key, data)
        finally:
            target.unlink(missing_ok=True)

    async def _remux(self, segments: list[StoredSegment], target: Path) -> int:
        """Join the segments (one init's worth) into a source file, remux it in a worker."""
        first_init = segments[0].init_key
        source = target.with_suffix(".src")
        await asyncio.to_thread(self.cache_dir.mkdir, parents=True, exist_ok=True)
        try:
            with open(source, "wb") as out:
                if first_init is not None:
                    out.write(await self._object(first_init))
                for segment in segments:
                    if segment.init_key != first_init:
                        break  # a new init (codec change): FFmpeg reads one init per file
                    out.write(await self._object(segment.object_key))
            return await self.remuxer.remux(source, target)
        finally:
            source.unlink(missing_ok=True)

    async def _object(self, key: str) -> bytes:
        try:
            data = await self.storage.get(key)
        except StorageError as err:
            raise NotFound("recorded media not available") from err
        if data is None:
            raise NotFound("recorded media not available")
        return data

    async def set_visibility(self, recording: Recording, visibility: object) -> Recording:
        if visibility not in VISIBILITIES:
            raise ValidationError("visibility must be 'public' or 'private'", field="visibility")
        await self.repo.set_visibility(recording.id, str(visibility))
        return await self.require(recording.id)

    async def delete(self, recording: Recording) -> None:
        if recording.status == "recording":
            raise Conflict("the broadcast is still being recorded")
        await self.repo.delete(recording.id)
        await self.storage.delete_prefix(recording_prefix(recording.id))
        (self.cache_dir / f"{recording.id}.mp4").unlink(missing_ok=True)

    async def delete_by_id(self, recording_id: int) -> None:
        """Retention's delete: gone already is fine."""
        row = await self.repo.by_id(recording_id)
        if row is not None:
            await self.delete(Recording.from_row(row))

    async def set_room_choice(self, slug: str, record: object) -> bool:
        if record is not None and not isinstance(record, bool):
            raise ValidationError("record must be true, false or null (the server's default)", field="record")
        choice = await self.repo.room_choice(slug)
        if choice is None:
            raise RoomNotFound("no such room")
        await self.repo.set_room_choice(choice[0], record)
        self.choices.remember(slug, record)
        return self.settings.enabled if record is None else record

    async def room_choice(self, slug: str) -> bool:
        choice = await self.repo.room_choice(slug)
        if choice is None:
            raise RoomNotFound("no such room")
        return self.settings.enabled if choice[1] is None else choice[1]


RECORDINGS: web.AppKey[RecordingService] = web.AppKey("recordings")
