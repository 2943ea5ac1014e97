"""Wires the relay into the origin: the push-target manager as a hub output factory, its
routes, the owner-only ``targets`` block of the room JSON, and state-change events."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from livecast.core.tasks import Supervisor
from livecast.keys import DB, ROOM_EXTRAS, SETTINGS
from livecast.pipeline.hub import StreamHub
from livecast.relay.manager import RelayManager
from livecast.relay.routes import RELAY, routes
from livecast.rooms import OWNER_ONLY
from livecast.storage.targets import TargetRepository

log = logging.getLogger(__name__)

Lifecycle = Callable[[web.Application], AsyncIterator[None]]


def setup(app: web.Application, hub: Callable[[], StreamHub]) -> Lifecycle:
    """Routes now; the manager once the database is open (the returned lifecycle)."""
    app.add_routes(routes)

    async def relay_ctx(app: web.Application) -> AsyncIterator[None]:
        tasks = Supervisor("relay-outputs")
        manager = RelayManager(TargetRepository(app[DB]), app[SETTINGS].relay, tasks)
        await manager.load()
        app[RELAY] = manager
        hub().add_output_factory(manager.output)
        app[ROOM_EXTRAS].append(_room_extras(manager))
        yield
        await tasks.wait(timeout=5.0)
        await tasks.close()

    return relay_ctx


def _room_extras(manager: RelayManager) -> Callable[[str], dict[str, Any]]:
    def extras(slug: str) -> dict[str, Any]:
        summary = manager.live_summary(slug)
        if not summary:
            return {}
        return {OWNER_ONLY: {"relay": {"targets": summary}}, "relay": {}}

    return extras
