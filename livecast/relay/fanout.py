"""``RelayOutputs``: the hub output of one live session, fanned out to one queued output per target.

Units are handed to the targets in batches: the publisher's ``write`` only appends the
unit to the session's batch, and every ``batch_seconds`` (``relay.push_batch_seconds``)
the batch is encoded once (:class:`~livecast.relay.wire.WireUnit`: the message bytes all
targets share) and written to each target's ``PushOutput``. So each target's task wakes
once per batch, not once per unit, and sends the batch with one transport call; its
queue, its drops to the next keyframe and its counters work per unit as before. The
publisher never waits: a batch is a list append and, at the end of the period, one call
per unit and target that only queues. Metadata and the end of the session keep their
place: the pending batch goes first.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from livecast.core.media import MediaUnit, Track
from livecast.pipeline.hub import LiveStream
from livecast.relay.output import PushOutput
from livecast.relay.wire import WireUnit

log = logging.getLogger(__name__)


class RelayOutputs:
    """The hub output of one live session: fans out to one queued output per target.

    It keeps the session's latest decoder configuration and metadata, so a target added
    while the room is live starts with them."""

    def __init__(self, stream: LiveStream, batch_seconds: float = 0.0) -> None:
        self.stream = stream
        self.batch_seconds = batch_seconds
        self.outputs: list[PushOutput] = []
        self._configs: dict[Track, MediaUnit] = {}
        self._metadata: dict[str, Any] | None = None
        self._batch: list[MediaUnit] = []
        self._timer: asyncio.TimerHandle | None = None
        self.closed = False

    def __repr__(self) -> str:
        return f"RelayOutputs({len(self.outputs)} targets)"

    def add(self, output: PushOutput) -> None:
        if self._metadata is not None:
            output.set_metadata(self._metadata)
        for unit in self._configs.values():
            output.write(unit)
        self.outputs.append(output)

    def remove(self, output: PushOutput) -> None:
        if output in self.outputs:
            self.outputs.remove(output)
        output.close()

    def write(self, unit: MediaUnit) -> None:
        if unit.config:
            self._configs[unit.track] = unit = WireUnit(unit)
        if not self.outputs:
            return
        self._batch.append(unit)
        if self.batch_seconds <= 0:
            self._deliver()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.batch_seconds, self._deliver)

    def set_metadata(self, values: dict[str, Any]) -> None:
        self._deliver()
        self._metadata = values
        for output in self.outputs:
            output.set_metadata(values)

    def close(self) -> None:
        self._deliver()
        self.closed = True
        for output in self.outputs:
            output.close()

    def _deliver(self) -> None:
        """Encodes the batch once and queues it on every target's output."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._batch = self._batch, []
        if not batch:
            return
        units = [u if isinstance(u, WireUnit) else WireUnit(u) for u in batch]
        for output in self.outputs:
            for unit in units:
                output.write(unit)
