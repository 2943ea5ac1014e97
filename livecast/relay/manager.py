"""The push-target manager: which targets each room has, and their outputs while it is live.

Enabled targets are held in memory (loaded at start, refreshed by the API after every
change), so the hub's output factory can attach one ``QueuedOutput`` per target at once
when a room goes live. Each target's status survives the room's sessions; a change of
state is emitted to the listeners (webhooks, metrics).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from livecast.config import RelaySettings
from livecast.core.media import MediaUnit
from livecast.core.tasks import Supervisor
from livecast.pipeline.hub import LiveStream
from livecast.pipeline.outputs import QueuedOutput
from livecast.relay.push import PushSink
from livecast.relay.targets import PushTarget, TargetStatus
from livecast.storage.database import Row
from livecast.storage.targets import TargetRepository

log = logging.getLogger(__name__)

StateListener = Callable[[PushTarget, TargetStatus], None]


def target_from_row(row: Row) -> PushTarget:
    return PushTarget(int(row["id"]), str(row["slug"]), str(row["name"]), str(row["url"]),
                      str(row["stream_key"]), bool(row["enabled"]), bool(row["verify_tls"]))


class RelayOutputs:
    """The hub output of one live session: fans out to one queued output per target."""

    def __init__(self, outputs: list[QueuedOutput]) -> None:
        self.outputs = outputs

    def __repr__(self) -> str:
        return f"RelayOutputs({len(self.outputs)} targets)"

    def write(self, unit: MediaUnit) -> None:
        for output in self.outputs:
            output.write(unit)

    def set_metadata(self, values: dict[str, Any]) -> None:
        for output in self.outputs:
            output.set_metadata(values)

    def close(self) -> None:
        for output in self.outputs:
            output.close()


class RelayManager:
    def __init__(self, repo: TargetRepository, settings: RelaySettings, tasks: Supervisor) -> None:
        self.repo = repo
        self.settings = settings
        self._tasks = tasks
        self._targets: dict[str, list[PushTarget]] = {}
        self._status: dict[int, TargetStatus] = {}
        self._live: dict[int, QueuedOutput] = {}
        self.listeners: list[StateListener] = []

    async def load(self) -> None:
        rows = await self.repo.all_enabled()
        self._targets = {}
        for row in rows:
            target = target_from_row(row)
            self._targets.setdefault(target.slug, []).append(target)

    async def refresh(self, slug: str) -> None:
        """Re-read ``slug``'s targets after a change; targets of a live room that were
        removed or disabled stop now (new ones start with the room's next session)."""
        targets = [target_from_row(r) for r in await self.repo.by_room(slug)]
        enabled = [t for t in targets if t.enabled]
        self._targets[slug] = enabled
        keep = {t.id for t in enabled}
        for target in targets:
            if target.id not in keep:
                self._stop_output(target.id)
        known = {t.id for t in targets}
        for target_id in [i for i, s in self._status.items() if i not in known and self._owned(i, slug)]:
            self._stop_output(target_id)
            del self._status[target_id]

    def _owned(self, target_id: int, slug: str) -> bool:
        output = self._live.get(target_id)
        return output is None or output.stream.slug == slug

    def _stop_output(self, target_id: int) -> None:
        output = self._live.pop(target_id, None)
        if output is not None:
            output.close()

    def status(self, target_id: int) -> TargetStatus:
        return self._status.setdefault(target_id, TargetStatus())

    def output(self, stream: LiveStream) -> RelayOutputs:
        """The hub output factory: one queued output per enabled target of the room."""
        outputs = []
        for target in self._targets.get(stream.slug, []):
            old = self._live.pop(target.id, None)
            if old is not None:
                old.close()  # a takeover: the old session's connection ends
            sink = PushSink(target, self.status(target.id), self.settings, self._emit)
            output = QueuedOutput(stream, sink, self._tasks, max_units=self.settings.queue_units,
                                  max_bytes=self.settings.queue_bytes)
            self._live[target.id] = output
            outputs.append(output)
        return RelayOutputs(outputs)

    def targets_json(self, slug: str, targets: list[PushTarget]) -> list[dict[str, Any]]:
        """Each target's JSON; ``dropped`` adds what its queue dropped in the live session."""
        found = []
        for target in targets:
            body = target.to_json(self.status(target.id))
            output = self._live.get(target.id)
            body["dropped"] += output.dropped if output is not None else 0
            found.append(body)
        return found

    def live_summary(self, slug: str) -> list[dict[str, Any]]:
        """The room JSON's owner-only view: state of each enabled target."""
        return [{"id": t.id, "name": t.name, "state": self.status(t.id).state, "reason": self.status(t.id).reason}
                for t in self._targets.get(slug, [])]

    def _emit(self, target: PushTarget, status: TargetStatus) -> None:
        for listener in self.listeners:
            try:
                listener(target, status)
            except Exception:
                log.exception("relay state listener %r failed", listener)
