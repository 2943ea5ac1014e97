"""Wires the relay into the origin: push targets (a hub output factory, their routes, the
owner-only ``relay`` block of the room JSON) and pull sources (a source for the session
manager, set with ``PATCH /api/v1/rooms/{slug}``, started on demand by playlist requests)."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from livecast.api.rooms import ROOM_UPDATERS
from livecast.cluster.pull_claims import PULL_CLAIMS
from livecast.core.errors import ValidationError
from livecast.core.events import RelayStateChanged, RoomDeleted
from livecast.core.tasks import Supervisor
from livecast.keys import DB, EVENTS, SETTINGS
from livecast.rooms import RoomExtras
from livecast.pipeline.hub import StreamHub
from livecast.pipeline.sessions import SessionManager
from livecast.relay.manager import RelayManager
from livecast.relay.metrics import RelayCollector
from livecast.relay.routes import RELAY, routes
from livecast.relay.sources import PullManager, validate_source_url
from livecast.rooms import OWNER_ONLY, Room
from livecast.storage.sources import SourceRepository
from livecast.storage.targets import TargetRepository

log = logging.getLogger(__name__)

Lifecycle = Callable[[web.Application], AsyncIterator[None]]
PULLS: web.AppKey[PullManager] = web.AppKey("pulls")
_PLAYLIST = re.compile(r"^/hls/([a-z0-9-]{3,40})/index\.m3u8$")
ON_DEMAND_WAIT = 15.0  # seconds a first viewer's playlist request waits for an on-demand pull


def setup(app: web.Application, hub: Callable[[], StreamHub], room_extras: RoomExtras) -> Lifecycle:
    """Routes and hooks now; the push manager once the database is open (the lifecycle)."""
    app.add_routes(routes)
    app.middlewares.append(_on_demand)
    app.setdefault(ROOM_UPDATERS, []).append(_updater(app))

    async def relay_ctx(app: web.Application) -> AsyncIterator[None]:
        tasks = Supervisor("relay-outputs")
        manager = RelayManager(TargetRepository(app[DB]), app[SETTINGS].relay, tasks)
        await manager.load()
        app[RELAY] = manager
        events = app[EVENTS]
        manager.listeners.append(lambda t, s: events.emit(
            RelayStateChanged(t.slug, "target", s.state, s.reason, t.id, t.name)))

        def on_event(event: object) -> None:
            if isinstance(event, RoomDeleted):  # a new room with this slug gets none of its targets
                manager.forget(event.slug)

        unsubscribe = events.subscribe(on_event)
        hub().add_output_factory(manager.output)
        unregister = room_extras.register(_room_extras(app))
        yield
        unregister()
        unsubscribe()
        await tasks.wait(timeout=5.0)
        await tasks.close()

    return relay_ctx


def pulls(app: web.Application, sessions: Callable[[], SessionManager]) -> Lifecycle:
    """The pull sources' lifecycle: after the media path has started (it needs its
    session manager), stopped before it."""

    async def pull_ctx(app: web.Application) -> AsyncIterator[None]:
        claim, cluster = app.get(PULL_CLAIMS), app[SETTINGS].cluster  # set on a cluster: one origin pulls
        manager = PullManager(SourceRepository(app[DB]), sessions(), app[SETTINGS].relay, claim,
                              max(cluster.lease_seconds, 1.0) if claim is not None else None)
        app[PULLS] = manager
        events = app[EVENTS]
        manager.listeners.append(lambda s: events.emit(RelayStateChanged(s.slug, "source", s.state, s.reason)))
        await manager.start()

        def on_event(event: object) -> None:
            if isinstance(event, RoomDeleted):
                manager.forget(event.slug)

        unsubscribe = app[EVENTS].subscribe(on_event)
        yield
        unsubscribe()
        await manager.close()

    return pull_ctx


def collector(app: web.Application) -> RelayCollector:
    """The relay's metrics collector (the composition root registers it)."""
    return RelayCollector(lambda: app.get(RELAY), lambda: app.get(PULLS))


def _updater(app: web.Application) -> Callable[[Room, dict[str, Any]], Awaitable[bool]]:
    async def update(room: Room, body: dict[str, Any]) -> bool:
        if "source_url" not in body and "source_on_demand" not in body:
            return False
        manager = app[PULLS]
        current = manager.owner_info(room.slug) or {"url": "", "on_demand": False}
        url = validate_source_url(body["source_url"]) if "source_url" in body else current["url"]
        on_demand = body.get("source_on_demand", current["on_demand"])
        if not isinstance(on_demand, bool):
            raise ValidationError("source_on_demand must be true or false", field="source_on_demand")
        await manager.set(room.slug, url, on_demand)
        log.info("room %s: pull source %s%s", room.slug, "set" if url else "removed",
                 " (on demand)" if url and on_demand else "")
        return True

    return update


@web.middleware
async def _on_demand(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                     ) -> web.StreamResponse:
    """A playlist request wakes its room's on-demand pull source; the first one waits
    (bounded) for the playlist to exist instead of answering 404."""
    match = _PLAYLIST.match(request.path)
    manager = request.app.get(PULLS)
    if match is None or manager is None:
        return await handler(request)
    started = manager.wanted(match.group(1))
    response = await handler(request)
    deadline = time.monotonic() + ON_DEMAND_WAIT
    while started and response.status == 404 and time.monotonic() < deadline:
        await asyncio.sleep(0.25)  # waiting for the first segment of a source just started
        response = await handler(request)
    return response


def _room_extras(app: web.Application) -> Callable[[str], dict[str, Any]]:
    def extras(slug: str) -> dict[str, Any]:
        added: dict[str, Any] = {}
        private: dict[str, Any] = {}
        summary = app[RELAY].live_summary(slug)
        if summary:
            added["relay"] = {}
            private["relay"] = {"targets": summary}
        pulls = app.get(PULLS)
        source = pulls.info(slug) if pulls is not None else None
        if source is not None and pulls is not None:
            added["source"] = source
            private["source"] = pulls.owner_info(slug)
        if private:
            added[OWNER_ONLY] = private
        return added

    return extras
