"""Live thumbnails: every ``transcode.thumbnail_interval`` seconds, a JPEG of each live room's
latest keyframe, decoded in a worker process (one for the node, started when first needed,
restarted if it dies). Needs a decode, not a ladder: it runs whether transcoding is on or not.

A hub output per publish session only keeps a reference to the newest H.264 keyframe and
the decoder configuration (no copy, no work on the publisher's path).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from livecast.core.media import Codec, MediaUnit, Track
from livecast.pipeline.hub import LiveStream
from livecast.transcode import wire
from livecast.transcode.process import WorkerProcess

log = logging.getLogger(__name__)

MAX_WIDTH = 640
REQUEST_TIMEOUT = 10.0
TICK = 0.5  # seconds between looks for rooms due a thumbnail


@dataclass
class Thumbnail:
    jpeg: bytes
    made_at: float


class _Tap:
    """The hub output: the newest keyframe of one publish session."""

    def __init__(self, service: ThumbnailService, stream: LiveStream) -> None:
        self.service = service
        self.slug = stream.slug
        self.avcc: bytes | None = None
        self.keyframe: bytes | None = None
        self.serial = 0  # counts keyframes

    def write(self, unit: MediaUnit) -> None:
        if unit.track is not Track.VIDEO or unit.codec is not Codec.H264:
            return
        if unit.config:
            self.avcc = unit.payload
        elif unit.keyframe and self.avcc is not None:
            self.keyframe = unit.payload
            self.serial += 1

    def set_metadata(self, values: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        self.service.stream_ended(self)


class ThumbnailService:
    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self._taps: dict[str, _Tap] = {}
        self._done: dict[str, tuple[int, float]] = {}  # slug -> (serial, when) of the last thumbnail
        self._thumbs: dict[str, Thumbnail] = {}
        self._worker: WorkerProcess | None = None
        self._reply: asyncio.Future[bytes] | None = None

    # -- hub side -----------------------------------------------------------------------
    def output(self, stream: LiveStream) -> _Tap:
        tap = self._taps[stream.slug] = _Tap(self, stream)
        return tap

    def stream_ended(self, tap: _Tap) -> None:
        if self._taps.get(tap.slug) is tap:
            del self._taps[tap.slug]
            self._thumbs.pop(tap.slug, None)
            self._done.pop(tap.slug, None)

    def thumbnail(self, slug: str) -> Thumbnail | None:
        return self._thumbs.get(slug)

    # -- the loop -----------------------------------------------------------------------
    async def lifecycle(self, _app: object) -> AsyncIterator[None]:
        task = asyncio.create_task(self._run(), name="thumbnails")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if self._worker is not None:
                await self._worker.finish(timeout=2.0)

    async def _run(self) -> None:
        while True:
            for slug, tap in list(self._taps.items()):
                try:
                    await self._maybe_make(slug, tap)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("thumbnail of room %s failed", slug)
            await asyncio.sleep(TICK)

    async def _maybe_make(self, slug: str, tap: _Tap) -> None:
        serial, when = self._done.get(slug, (0, float("-inf")))
        if tap.keyframe is None or tap.avcc is None or tap.serial == serial or self.clock() - when < self.interval:
            return
        self._done[slug] = (tap.serial, self.clock())
        jpeg = await self._decode(tap.avcc, tap.keyframe)
        if jpeg and self._taps.get(slug) is tap:
            self._thumbs[slug] = Thumbnail(jpeg, time.time())

    async def _decode(self, avcc: bytes, keyframe: bytes) -> bytes:
        if self._worker is None or self._worker.proc is None:
            self._worker = WorkerProcess({"max_width": MAX_WIDTH}, self._on_message, self._on_exit,
                                         write_timeout=REQUEST_TIMEOUT, module="livecast.transcode.thumbworker")
            await self._worker.start()
        self._reply = asyncio.get_running_loop().create_future()
        sent = await self._worker.send(wire.pack(wire.CONFIG, avcc) + wire.pack(wire.VIDEO, keyframe, flags=1))
        if not sent:
            return b""
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                return await self._reply
        except TimeoutError:
            log.warning("thumbnail worker gave no answer in %.0f s; restarting it", REQUEST_TIMEOUT)
            self._worker.kill()
            return b""

    def _on_message(self, msg: wire.Message) -> None:
        if msg.kind == wire.PACKET and self._reply is not None and not self._reply.done():
            self._reply.set_result(msg.payload)

    async def _on_exit(self) -> None:
        log.warning("thumbnail worker ended; a new one starts with the next thumbnail")
        if self._reply is not None and not self._reply.done():
            self._reply.set_result(b"")
        if self._worker is not None:
            self._worker.proc = None
