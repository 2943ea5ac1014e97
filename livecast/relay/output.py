"""``PushOutput``: one push target's bounded queue, taken by the target's task a batch at a time.

The same contract as ``pipeline.outputs.QueuedOutput`` (MediaMTX's per-reader ring buffer):
the publisher's ``write`` only appends to a bounded queue (units and bytes) and wakes the
task, so a slow or stalled target never delays the room or the other targets; when the
queue is full the output drops units, audio and video alike, until the next video
keyframe that fits (in a stream without video, the next audio unit), counted on the output
and on the stream's ``stats.dropped`` and logged once per episode; decoder configuration
units and metadata are never dropped. What differs is the consumer's side: the task takes
everything queued at once and hands it to the sink as one batch (``write_batch``), which
sends it with one transport call. Forwarding a unit to a target is then a list append and
a few checks, not a task wake-up, an await and a socket write each, which is what a push
target costs per unit (see docs/PERFORMANCE.md, "Relay: push targets").
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from livecast.core.media import MediaUnit
from livecast.core.tasks import Supervisor
from livecast.pipeline.hub import LiveStream
from livecast.pipeline.outputs import KeyframeGate

log = logging.getLogger(__name__)


class BatchSink(Protocol):
    """The consumer behind a push output; its methods run in the output's own task."""

    async def write_batch(self, units: list[MediaUnit]) -> None: ...
    async def set_metadata(self, values: dict[str, Any]) -> None: ...
    async def close(self) -> None: ...


class _Metadata:
    __slots__ = ("values",)

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values


class PushOutput:
    """Hands units to ``sink`` in batches through a bounded queue and a task of its own."""

    def __init__(self, stream: LiveStream, sink: BatchSink, tasks: Supervisor, *,
                 max_units: int, max_bytes: int) -> None:
        self.stream = stream
        self.sink = sink
        self.gate = KeyframeGate(self, stream, max_units, max_bytes)
        self.queued_bytes = 0
        self._queue: list[MediaUnit | _Metadata] = []
        self._wake = asyncio.Event()
        self._closed = False
        self.task = tasks.spawn(self._run(), name=f"push-{stream.slug}")

    def __repr__(self) -> str:
        return f"PushOutput({self.sink!r})"

    # -- the publisher's side (synchronous, never waits) --------------------------------
    def write(self, unit: MediaUnit) -> None:
        if self._closed or not self.gate.admit(unit, len(self._queue), self.queued_bytes):
            return
        self._queue.append(unit)
        self.queued_bytes += len(unit.payload)
        self._wake.set()

    def set_metadata(self, values: dict[str, Any]) -> None:
        if not self._closed:
            self._queue.append(_Metadata(values))
            self._wake.set()

    def close(self) -> None:
        """The task sends what is queued, then closes the sink."""
        self._closed = True
        self._wake.set()

    @property
    def dropped(self) -> int:
        return self.gate.dropped

    # -- the sink's side (the output's task) --------------------------------------------
    async def _run(self) -> None:
        try:
            while True:
                if not self._queue:
                    if self._closed:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                batch, self._queue = self._queue, []
                self.queued_bytes = 0
                await self._deliver(batch)
        finally:
            self._queue = []
            self.queued_bytes = 0
            try:
                await self.sink.close()
            except Exception:
                log.exception("output %r failed to close in room %s", self, self.stream.slug)

    async def _deliver(self, batch: list[MediaUnit | _Metadata]) -> None:
        units: list[MediaUnit] = []
        for item in batch:
            if isinstance(item, _Metadata):
                await self._guarded(units)
                units = []
                await self._guarded(item)
            else:
                units.append(item)
        await self._guarded(units)

    async def _guarded(self, item: list[MediaUnit] | _Metadata) -> None:
        try:
            if isinstance(item, _Metadata):
                await self.sink.set_metadata(item.values)
            elif item:
                await self.sink.write_batch(item)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("output %r failed in room %s; it goes on with the next batch", self, self.stream.slug)
