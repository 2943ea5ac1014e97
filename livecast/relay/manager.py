"""The push-target manager: which targets each room has, and their outputs while it is live.

Enabled targets are held in memory (loaded at start, refreshed by the API after every
change), so the hub's output factory can attach one ``PushOutput`` per target at once
when a room goes live. Each target's status survives the room's sessions; a change of
state is emitted to the listeners (webhooks, metrics).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from livecast.config import RelaySettings
from livecast.core.tasks import Supervisor
from livecast.pipeline.hub import LiveStream
from livecast.relay.fanout import RelayOutputs
from livecast.relay.flusher import WriteFlusher
from livecast.relay.output import PushOutput
from livecast.relay.push import PushSink
from livecast.relay.targets import PushTarget, TargetStatus
from livecast.storage.database import Row
from livecast.storage.targets import TargetRepository

log = logging.getLogger(__name__)

StateListener = Callable[[PushTarget, TargetStatus], None]


def target_from_row(row: Row) -> PushTarget:
    return PushTarget(int(row["id"]), str(row["slug"]), str(row["name"]), str(row["url"]),
                      str(row["stream_key"]), bool(row["enabled"]), bool(row["verify_tls"]))


class RelayManager:
    def __init__(self, repo: TargetRepository, settings: RelaySettings, tasks: Supervisor) -> None:
        self.repo = repo
        self.settings = settings
        self._tasks = tasks
        self._targets: dict[str, list[PushTarget]] = {}
        self._status: dict[int, TargetStatus] = {}
        self._live: dict[int, PushOutput] = {}
        self._running: dict[int, PushTarget] = {}  # the settings each live output runs with
        self._sessions: dict[str, RelayOutputs] = {}
        self._status_slug: dict[int, str] = {}
        self.listeners: list[StateListener] = []
        self._flusher = WriteFlusher()

    async def load(self) -> None:
        rows = await self.repo.all_enabled()
        self._targets = {}
        for row in rows:
            target = target_from_row(row)
            self._targets.setdefault(target.slug, []).append(target)

    async def refresh(self, slug: str) -> None:
        """Re-read ``slug``'s targets after a change and apply it to a live room at once:
        removed or disabled targets stop, new or changed ones (re)start."""
        targets = [target_from_row(r) for r in await self.repo.by_room(slug)]
        enabled = [t for t in targets if t.enabled]
        self._targets[slug] = enabled
        session = self._sessions.get(slug)
        live = session is not None and not session.closed
        wanted = {t.id: t for t in enabled}
        for target_id, running in list(self._running.items()):
            if running.slug == slug and wanted.get(target_id) != running:
                self._stop_output(target_id, session)
        if live and session is not None:
            for target in enabled:
                if target.id not in self._running:
                    session.add(self._start_output(session.stream, target))
        known = {t.id for t in targets}
        for target_id in [i for i in self._status if i not in known and i not in self._running]:
            if self._status_slug.get(target_id) == slug:
                del self._status[target_id]

    def _stop_output(self, target_id: int, session: RelayOutputs | None) -> None:
        output = self._live.pop(target_id, None)
        self._running.pop(target_id, None)
        if output is None:
            return
        if session is not None:
            session.remove(output)
        else:
            output.close()

    def _start_output(self, stream: LiveStream, target: PushTarget) -> PushOutput:
        sink = PushSink(target, self.status(target.id), self.settings, self._emit, self._flusher)
        output = PushOutput(stream, sink, self._tasks, max_units=self.settings.queue_units,
                              max_bytes=self.settings.queue_bytes)
        self._live[target.id] = output
        self._running[target.id] = target
        self._status_slug[target.id] = target.slug
        return output

    def forget(self, slug: str) -> None:
        """The room was deleted: its targets stop and are dropped (their rows went with it)."""
        session = self._sessions.pop(slug, None)
        for target in self._targets.pop(slug, []):
            self._stop_output(target.id, session)
            self._status.pop(target.id, None)

    def statuses(self) -> list[TargetStatus]:
        """The status of every enabled target (for metrics)."""
        return [self.status(t.id) for targets in self._targets.values() for t in targets]

    def status(self, target_id: int) -> TargetStatus:
        return self._status.setdefault(target_id, TargetStatus())

    def output(self, stream: LiveStream) -> RelayOutputs:
        """The hub output factory: one queued output per enabled target of the room."""
        session = RelayOutputs(stream, self.settings.push_batch_seconds)
        old = self._sessions.get(stream.slug)
        for target in self._targets.get(stream.slug, []):
            self._stop_output(target.id, old)  # a takeover: the old session's connection ends
            session.add(self._start_output(stream, target))
        self._sessions[stream.slug] = session
        return session

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
