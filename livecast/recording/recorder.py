"""The recorder: stores each broadcast of a room with recording on, segment by segment.

It is an HLS segment tap: the HLS service hands it every finished segment of a room's
source rendition (the bytes viewers get, no re-encoding) and the end of each publish
session. Each session is one ``Broadcast`` with a bounded queue and a task of its own: the
segmenter's path only appends (dropping the oldest waiting segment when full, a gap), the
task stores each segment durably (retried with backoff) and only then indexes it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from livecast.config import RecordingSettings
from livecast.core.backoff import Backoff
from livecast.core.tasks import Supervisor, cancel_and_wait
from livecast.hls.muxer import EXTENSIONS
from livecast.hls.segmenter import Segment
from livecast.recording.objects import ObjectStorage, StorageError
from livecast.storage.errors import StorageError as DatabaseError
from livecast.storage.recordings import RecordingRepository, StoredSegment

log = logging.getLogger(__name__)


def recording_prefix(recording_id: int) -> str:
    return f"recordings/{recording_id}/"


@dataclass
class RecorderStats:
    segments_stored: int = 0
    bytes_stored: int = 0
    upload_failures: int = 0  # failed attempts (each retried)
    segments_lost: int = 0  # gaps: dropped from a full queue or failed every attempt
    stopped_low_disk: int = 0


@dataclass(frozen=True)
class _Pending:
    seq: int
    media_start: float
    segment: Segment


class Broadcast:
    """One publish session's recording: queue on the segmenter's path, storage in a task."""

    def __init__(self, recorder: Recorder, slug: str) -> None:
        self.recorder = recorder
        self.slug = slug
        self.queue: deque[_Pending] = deque()
        self.wake = asyncio.Event()
        self.ended = False
        self.discarding = False  # recording off for this room, or stopped
        self.recording_id: int | None = None
        self._offered = 0
        self._media = 0.0
        self._gap = False
        self._init: tuple[int, str] | None = None

    def offer(self, segment: Segment) -> None:
        item = _Pending(self._offered, self._media, segment)
        self._offered += 1
        self._media += segment.duration
        if self.discarding:
            return
        if len(self.queue) >= self.recorder.settings.queue_segments:
            self.queue.popleft()
            self._lost("queue full (storage too slow)")
        self.queue.append(item)
        self.wake.set()

    def end(self) -> None:
        self.ended = True
        self.wake.set()

    async def run(self) -> None:
        try:
            if await self._open():
                await self._drain()
        finally:
            if self.recording_id is not None:
                await self.recorder.repo.finish(self.recording_id, "complete", self.recorder.clock())
                log.info("room %s: recording %d complete", self.slug, self.recording_id)

    async def _open(self) -> bool:
        choice = await self.recorder.repo.room_choice(self.slug)
        record = choice is not None and (choice[1] if choice[1] is not None else self.recorder.settings.enabled)
        while not self.queue and not self.ended:
            await self._wait()
        if choice is None or not record or not self.queue or not self._space_left():
            self.discarding = True
            self.queue.clear()
            return False
        first = self.queue[0].segment
        self.recording_id = await self.recorder.repo.create(choice[0], "public", first.kind, first.wall_start,
                                                            self.recorder.node)
        log.info("room %s: recording %d started", self.slug, self.recording_id)
        return True

    async def _drain(self) -> None:
        while self.queue or not self.ended:
            if not self.queue:
                await self._wait()
                continue
            if not self._space_left():
                self.discarding = True
                self.queue.clear()
                return
            await self._store_ready()

    async def _wait(self) -> None:
        self.wake.clear()
        await self.wake.wait()

    def _space_left(self) -> bool:
        free = self.recorder.storage.free_bytes()
        if free is None or free >= self.recorder.settings.min_free_bytes:
            return True
        self.recorder.stats.stopped_low_disk += 1
        log.warning("room %s: recording stopped, %d bytes free is below recording.min_free_bytes",
                    self.slug, free)
        return False

    async def _store_ready(self) -> None:
        """Store every segment waiting now, then index those stored in one transaction (one
        per segment in real time; fewer when segments arrive faster than storage takes them)."""
        assert self.recording_id is not None
        stored: list[StoredSegment] = []
        for _ in range(len(self.queue)):
            item = self.queue.popleft()
            segment = await self._store(item)
            if segment is not None:
                stored.append(segment)
        await self.recorder.repo.add_segments(self.recording_id, stored, self.recorder.clock())
        self.recorder.stats.segments_stored += len(stored)
        self.recorder.stats.bytes_stored += sum(s.bytes for s in stored)

    async def _store(self, item: _Pending) -> StoredSegment | None:
        """Store one segment (and its init segment when new); the row to index, None if lost."""
        assert self.recording_id is not None
        segment, prefix = item.segment, recording_prefix(self.recording_id)
        init_key: str | None = None
        if segment.init is not None:
            if self._init is None or self._init[0] != segment.init_id:
                key = f"{prefix}init{segment.init_id}.mp4"
                if not await self._put(key, segment.init):
                    self._lost("init segment not stored")
                    return None
                self._init = (segment.init_id, key)
            init_key = self._init[1]
        key = f"{prefix}{item.seq}.{EXTENSIONS[segment.kind]}"
        if not await self._put(key, segment.data):
            self._lost("segment not stored")
            await self.recorder.repo.add_gap(self.recording_id)
            return None
        row = StoredSegment(item.seq, key, init_key, item.media_start, segment.duration, segment.wall_start,
                            len(segment.data), self._gap or segment.discontinuity)
        self._gap = False
        return row

    async def _put(self, key: str, data: bytes | bytearray) -> bool:
        settings = self.recorder.settings
        backoff = Backoff(settings.upload_backoff, settings.upload_backoff * 16, jitter=0.2)
        for attempt in range(1, settings.upload_attempts + 1):
            try:
                await self.recorder.storage.put(key, data)
                return True
            except StorageError as err:
                self.recorder.stats.upload_failures += 1
                log.warning("room %s: storing %s failed (attempt %d/%d): %s", self.slug, key, attempt,
                            settings.upload_attempts, err)
            if attempt < settings.upload_attempts:
                await asyncio.sleep(backoff.next())
        return False

    def _lost(self, why: str) -> None:
        self._gap = True
        self.recorder.stats.segments_lost += 1
        log.warning("room %s: a segment is missing from the recording: %s", self.slug, why)


class Recorder:
    """The HLS ``SegmentTap`` that records; ``start`` closes what a crash left open."""

    def __init__(self, settings: RecordingSettings, storage: ObjectStorage, repo: RecordingRepository,
                 clock: Callable[[], float] = time.time, stats: RecorderStats | None = None,
                 node: str = "") -> None:
        self.settings = settings
        self.node = node  # cluster.node_url: the recordings this node makes carry it
        self.storage = storage
        self.repo = repo
        self.clock = clock
        self.stats = stats if stats is not None else RecorderStats()
        self._broadcasts: dict[tuple[str, str], Broadcast] = {}
        self._tasks = Supervisor("recorder")
        self._keepalive: asyncio.Task[None] | None = None

    def segment(self, slug: str, prefix: str, segment: Segment) -> None:
        key = (slug, prefix)
        broadcast = self._broadcasts.get(key)
        if broadcast is None:
            broadcast = self._broadcasts[key] = Broadcast(self, slug)
            self._tasks.spawn(self._run(key, broadcast), name=f"recorder-{slug}")
        broadcast.offer(segment)

    def ended(self, slug: str, prefix: str) -> None:
        broadcast = self._broadcasts.get((slug, prefix))
        if broadcast is not None:
            broadcast.end()

    def live_recording(self, slug: str) -> int | None:
        """The id of the recording of ``slug``'s broadcast in progress, if any."""
        for (s, _), broadcast in self._broadcasts.items():
            if s == slug and not broadcast.ended and broadcast.recording_id is not None:
                return broadcast.recording_id
        return None

    async def _run(self, key: tuple[str, str], broadcast: Broadcast) -> None:
        try:
            await broadcast.run()
        except Exception:
            log.exception("room %s: recorder failed", broadcast.slug)
        finally:
            self._broadcasts.pop(key, None)

    async def start(self) -> None:
        """Close what this node's last run left open; then keep this node's recordings in
        progress alive and close other nodes' that went quiet (``recording.stale_after``)."""
        interrupted = await self.repo.interrupt_open(self.node)
        if interrupted:
            log.warning("%d recording(s) left open by the last run are now interrupted: %s",
                        len(interrupted), interrupted)
        self._keepalive = asyncio.create_task(self._keep_alive(), name="recorder-keepalive")

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self.settings.stale_after / 4)
            try:
                await self.check_liveness()
            except DatabaseError as err:
                log.warning("recordings keep-alive failed: %s", err)

    async def check_liveness(self) -> None:
        now = self.clock()
        live = [b.recording_id for b in self._broadcasts.values() if b.recording_id is not None]
        await self.repo.touch(live, now)
        closed = await self.repo.interrupt_stale(self.node, now - self.settings.stale_after)
        if closed:
            log.warning("recording(s) of another node not seen alive for %.0f s are now interrupted: %s",
                        self.settings.stale_after, closed)

    async def close(self, timeout: float = 10.0) -> None:
        await cancel_and_wait(self._keepalive)
        for broadcast in list(self._broadcasts.values()):
            broadcast.end()
        await self._tasks.wait(timeout=timeout)
        await self._tasks.close()
        await self.storage.close()
