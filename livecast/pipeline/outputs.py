"""Queued outputs: a hub output whose consumer runs in its own task, off the publisher's path.

The publisher's ``write`` only appends to a bounded queue (units and bytes) and wakes the
drain task; the sink (the HLS segmenter, later a recorder or a push relay) consumes the
units in that task. The publisher never waits for a sink. When the queue is full the
output drops units, audio and video alike, until the next video keyframe (or, in a
stream without video, the next audio unit) that fits again, so the sink resumes on a
decodable picture with audio and video consistent. Drops are counted on the output and
on the stream's ``stats.dropped``, and logged at most once per episode. Decoder
configuration units and metadata are never dropped: they are tiny and rare, and the sink
cannot decode anything after a change without them. MediaMTX's per-reader ring buffers
are the model.

A ``lossless`` output (the HLS output: it must keep every segment) never drops at its
bounds: it reports the stream as congested, and the source stops reading until the
queue is down to half (an RTMP publisher then waits in TCP, as it did when muxing ran on
the read path). Only a source that ignores this meets a hard cap of four times the
bounds, where even a lossless output drops to the next keyframe.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any, Protocol

from livecast.core.media import MediaUnit, Track
from livecast.core.tasks import Supervisor
from livecast.pipeline.hub import LiveStream

log = logging.getLogger(__name__)

DEFAULT_MAX_UNITS = 1000
DEFAULT_MAX_BYTES = 4 * 1024 * 1024
_LOSSLESS_HARD_CAP = 4  # times the bounds
_BATCH = 64  # units delivered before the drain task lets the loop serve others


class Sink(Protocol):
    """The consumer behind a queued output; its methods run in the output's own task."""

    async def write(self, unit: MediaUnit) -> None: ...
    async def set_metadata(self, values: dict[str, Any]) -> None: ...
    async def close(self) -> None: ...


class _Metadata:
    __slots__ = ("values",)

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values


_CLOSE = object()


class QueuedOutput:
    """A hub ``Output`` that hands units to ``sink`` through a bounded queue and a task."""

    def __init__(self, stream: LiveStream, sink: Sink, tasks: Supervisor, *,
                 max_units: int = DEFAULT_MAX_UNITS, max_bytes: int = DEFAULT_MAX_BYTES,
                 lossless: bool = False) -> None:
        self.stream = stream
        self.sink = sink
        self.lossless = lossless
        self.behind = False  # lossless: the stream is told it is congested
        scale = _LOSSLESS_HARD_CAP if lossless else 1
        self.max_units = max_units * scale
        self.max_bytes = max_bytes * scale
        self._soft_units = max_units
        self._soft_bytes = max_bytes
        self.dropped = 0
        self.queued_bytes = 0
        self._queue: deque[object] = deque()
        self._wake = asyncio.Event()
        self._dropping = False
        self._has_video = False
        self._closed = False
        self.task = tasks.spawn(self._drain(), name=f"output-{stream.slug}")

    def __repr__(self) -> str:
        return f"QueuedOutput({self.sink!r})"

    # -- the publisher's side (synchronous, never waits) --------------------------------
    def write(self, unit: MediaUnit) -> None:
        if self._closed:
            return
        if unit.track is Track.VIDEO:
            self._has_video = True
        if not unit.config and (self._dropping or self._full(unit)):
            if not self._resumes(unit):
                self._drop()
                return
            self._dropping = False
        self._push(unit, len(unit.payload))
        if self.lossless and not self.behind and self._over_soft():
            self.behind = True
            self.stream.congestion(self, True)

    def _over_soft(self) -> bool:
        return len(self._queue) >= self._soft_units or self.queued_bytes >= self._soft_bytes

    def _caught_up(self) -> bool:
        return len(self._queue) <= self._soft_units // 2 and self.queued_bytes <= self._soft_bytes // 2

    def set_metadata(self, values: dict[str, Any]) -> None:
        if not self._closed:
            self._push(_Metadata(values), 0)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._push(_CLOSE, 0)

    def _full(self, unit: MediaUnit) -> bool:
        return (len(self._queue) >= self.max_units
                or self.queued_bytes + len(unit.payload) > self.max_bytes)

    def _resumes(self, unit: MediaUnit) -> bool:
        """A unit that ends a drop episode: a keyframe (video, or audio without video) that fits."""
        if self._full(unit) or not unit.keyframe:
            return False
        return unit.track is Track.VIDEO or not self._has_video

    def _drop(self) -> None:
        if not self._dropping:
            self._dropping = True
            log.warning("output %r of room %s is too slow: dropping to the next keyframe (%d dropped so far)",
                        self, self.stream.slug, self.dropped)
        self.dropped += 1
        self.stream.stats.dropped += 1

    def _push(self, item: object, size: int) -> None:
        self._queue.append(item)
        self.queued_bytes += size
        self._wake.set()

    # -- the sink's side (the output's task) --------------------------------------------
    async def _drain(self) -> None:
        queue = self._queue
        batch = 0
        try:
            while True:
                if not queue:
                    self._wake.clear()
                    await self._wake.wait()
                    batch = 0
                    continue
                item = queue.popleft()
                if item is _CLOSE:
                    return
                await self._deliver(item)
                if self.behind and self._caught_up():
                    self.behind = False
                    self.stream.congestion(self, False)
                batch += 1
                if batch >= _BATCH:
                    batch = 0
                    await asyncio.sleep(0)  # a yield, not a delay
        finally:
            queue.clear()
            self.queued_bytes = 0
            if self.behind:
                self.behind = False
                self.stream.congestion(self, False)
            await self._close_sink()

    async def _deliver(self, item: object) -> None:
        try:
            if isinstance(item, _Metadata):
                await self.sink.set_metadata(item.values)
                return
            assert isinstance(item, MediaUnit)
            self.queued_bytes -= len(item.payload)
            await self.sink.write(item)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("output %r failed in room %s; it goes on with the next unit", self, self.stream.slug)

    async def _close_sink(self) -> None:
        try:
            await self.sink.close()
        except Exception:
            log.exception("output %r failed to close in room %s", self, self.stream.slug)
