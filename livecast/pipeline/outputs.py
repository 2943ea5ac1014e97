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
bounds, where even a lossless output drops to the next keyframe. A lossless output
congests early, at ``congest_bytes`` (256 KiB by default) or its bounds, whichever is
lower: a publisher pushing faster than real time is held back in TCP instead of piling
megabytes in memory, and the sink reads payloads while they are still in the CPU cache.

A sink whose methods are plain functions (``SyncSink``: the HLS segmenter, whose writes
never wait) is fed from a loop callback (``call_soon``), a batch at a time: no task wake
and no coroutine per unit, and still never inside the publisher's ``data_received``. Its
task only waits for the end, so a supervisor can wait for the queue to drain on shutdown.
An ``async`` sink (a push relay that awaits its socket) is awaited unit by unit in the
output's task, which is woken once per batch of units, not once per unit.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from typing import Any, Protocol, cast

from livecast.core.media import MediaUnit, Track
from livecast.core.tasks import Supervisor
from livecast.pipeline.hub import LiveStream

log = logging.getLogger(__name__)

DEFAULT_MAX_UNITS = 1000
DEFAULT_MAX_BYTES = 4 * 1024 * 1024
DEFAULT_CONGEST_BYTES = 256 * 1024  # lossless: where the source is held back
_LOSSLESS_HARD_CAP = 4  # times the bounds
_BATCH = 64  # units delivered before the drain task lets the loop serve others


class Sink(Protocol):
    """The consumer behind a queued output; its methods run in the output's own task."""

    async def write(self, unit: MediaUnit) -> None: ...
    async def set_metadata(self, values: dict[str, Any]) -> None: ...
    async def close(self) -> None: ...


class SyncSink(Protocol):
    """A sink whose methods never wait: called straight from the output's task."""

    def write(self, unit: MediaUnit) -> None: ...
    def set_metadata(self, values: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


class _Metadata:
    __slots__ = ("values",)

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values


_CLOSE = object()


class KeyframeGate:
    """The admission rule of a bounded output queue, shared by every queued output: when the
    queue is full, drop units (audio and video alike) until the next video keyframe that
    fits (in a stream without video, the next audio unit); decoder configuration is never
    dropped. Drops are counted here and on the stream, and logged once per episode."""

    __slots__ = ("output", "stream", "max_units", "max_bytes", "dropped", "_dropping", "_has_video")

    def __init__(self, output: object, stream: LiveStream, max_units: int, max_bytes: int) -> None:
        self.output = output
        self.stream = stream
        self.max_units = max_units
        self.max_bytes = max_bytes
        self.dropped = 0
        self._dropping = False
        self._has_video = False

    def admit(self, unit: MediaUnit, queued_units: int, queued_bytes: int) -> bool:
        """True if ``unit`` may join a queue holding ``queued_units`` units and ``queued_bytes``."""
        if unit.track is Track.VIDEO:
            self._has_video = True
        if unit.config:
            return True
        full = queued_units >= self.max_units or queued_bytes + len(unit.payload) > self.max_bytes
        if not self._dropping and not full:
            return True
        if not full and unit.keyframe and (unit.track is Track.VIDEO or not self._has_video):
            self._dropping = False
            return True
        if not self._dropping:
            self._dropping = True
            log.warning("output %r of room %s is too slow: dropping to the next keyframe (%d dropped so far)",
                        self.output, self.stream.slug, self.dropped)
        self.dropped += 1
        self.stream.stats.dropped += 1
        return False


class QueuedOutput:
    """A hub ``Output`` that hands units to ``sink`` through a bounded queue and a task."""

    def __init__(self, stream: LiveStream, sink: Sink | SyncSink, tasks: Supervisor, *,
                 max_units: int = DEFAULT_MAX_UNITS, max_bytes: int = DEFAULT_MAX_BYTES,
                 lossless: bool = False, congest_bytes: int = DEFAULT_CONGEST_BYTES) -> None:
        self.stream = stream
        self.sink = sink
        self.lossless = lossless
        self.behind = False  # lossless: the stream is told it is congested
        scale = _LOSSLESS_HARD_CAP if lossless else 1
        self.max_units = max_units * scale
        self.max_bytes = max_bytes * scale
        self._soft_units = max_units
        self._soft_bytes = min(max_bytes, congest_bytes) if lossless else max_bytes
        self.gate = KeyframeGate(self, stream, self.max_units, self.max_bytes)
        self.queued_bytes = 0
        self._queue: deque[object] = deque()
        self._sync = not inspect.iscoroutinefunction(sink.write)
        self._loop = asyncio.get_running_loop()
        self._waiter: asyncio.Future[None] | None = None  # async sink: set while the task waits
        self._scheduled = False  # sync sink: a batch callback is pending
        self._finished = self._loop.create_future()  # sync sink: the queue drained and the sink closed
        self._closed = False
        drain = self._until_finished() if self._sync else self._drain()
        self.task = tasks.spawn(drain, name=f"output-{stream.slug}")

    def __repr__(self) -> str:
        return f"QueuedOutput({self.sink!r})"

    # -- the publisher's side (synchronous, never waits) --------------------------------
    def write(self, unit: MediaUnit) -> None:
        if self._closed or not self.gate.admit(unit, len(self._queue), self.queued_bytes):
            return
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

    @property
    def dropped(self) -> int:
        return self.gate.dropped

    def _push(self, item: object, size: int) -> None:
        self._queue.append(item)
        self.queued_bytes += size
        if self._sync:
            if not self._scheduled and not self._finished.done():
                self._scheduled = True
                self._loop.call_soon(self._run_batch)
            return
        waiter = self._waiter
        if waiter is not None:  # wake the task once; later units join its batch
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- the sink's side: a sync sink, from loop callbacks -------------------------------
    def _run_batch(self) -> None:
        self._scheduled = False
        if self._finished.done():
            return
        done = self._deliver_batch()
        if self.behind and self._caught_up():
            self.behind = False
            self.stream.congestion(self, False)
        if done:
            self._finish_sync()
        elif self._queue:
            self._scheduled = True
            self._loop.call_soon(self._run_batch)

    def _finish_sync(self) -> None:
        self._queue.clear()
        self.queued_bytes = 0
        if self.behind:
            self.behind = False
            self.stream.congestion(self, False)
        try:
            cast(SyncSink, self.sink).close()
        except Exception:
            log.exception("output %r failed to close in room %s", self, self.stream.slug)
        if not self._finished.done():
            self._finished.set_result(None)

    async def _until_finished(self) -> None:
        """A sync sink's task: it only waits for the end (or closes the sink if cancelled)."""
        try:
            await asyncio.shield(self._finished)
        finally:
            if not self._finished.done():
                self._finish_sync()

    # -- the sink's side: an async sink, in the output's task ---------------------------
    async def _drain(self) -> None:
        queue = self._queue
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not queue:
                    self._waiter = loop.create_future()
                    await self._waiter
                    continue
                done = await self._deliver_async()
                if self.behind and self._caught_up():
                    self.behind = False
                    self.stream.congestion(self, False)
                if done:
                    return
                if queue:
                    await asyncio.sleep(0)  # a yield between batches, not a delay
        finally:
            self._waiter = None
            queue.clear()
            self.queued_bytes = 0
            if self.behind:
                self.behind = False
                self.stream.congestion(self, False)
            await self._close_sink()

    def _deliver_batch(self) -> bool:
        """Up to ``_BATCH`` items into a sync sink; True once the close marker is reached."""
        queue = self._queue
        sink = cast(SyncSink, self.sink)
        for _ in range(min(len(queue), _BATCH)):
            item = queue.popleft()
            if item is _CLOSE:
                return True
            try:
                if isinstance(item, MediaUnit):
                    self.queued_bytes -= len(item.payload)
                    sink.write(item)
                else:
                    sink.set_metadata(cast(_Metadata, item).values)
            except Exception:
                log.exception("output %r failed in room %s; it goes on with the next unit",
                              self, self.stream.slug)
        return False

    async def _deliver_async(self) -> bool:
        """Up to ``_BATCH`` items into an async sink, awaiting each; True at the close marker."""
        queue = self._queue
        for _ in range(min(len(queue), _BATCH)):
            item = queue.popleft()
            if item is _CLOSE:
                return True
            await self._deliver(item)
            if self.behind and self._caught_up():
                self.behind = False
                self.stream.congestion(self, False)
        return False

    async def _deliver(self, item: object) -> None:
        sink = cast(Sink, self.sink)
        try:
            if isinstance(item, _Metadata):
                await sink.set_metadata(item.values)
                return
            assert isinstance(item, MediaUnit)
            self.queued_bytes -= len(item.payload)
            await sink.write(item)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("output %r failed in room %s; it goes on with the next unit", self, self.stream.slug)

    async def _close_sink(self) -> None:
        try:
            await cast(Sink, self.sink).close()
        except Exception:
            log.exception("output %r failed to close in room %s", self, self.stream.slug)
