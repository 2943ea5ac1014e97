"""Wires the accounts/rooms/admin API into an origin app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from livecast.api import admin, auth, openapi, rooms
from livecast.core.ratelimit import LimiterFactory, local_limiter
from livecast.keys import DB, ROOMS, SETTINGS, USERS
from livecast.rooms import RoomService
from livecast.users import UserService

log = logging.getLogger(__name__)


def setup(app: web.Application, limiters: LimiterFactory = local_limiter
          ) -> Callable[[web.Application], AsyncIterator[None]]:
    """Register the routes and the services' start-up. Call after the database context.
    ``limiters`` makes the login and registration limits (shared through Redis in a cluster)."""
    auth.setup_limits(app, limiters)
    app.add_routes(auth.routes)
    app.add_routes(rooms.routes)
    app.add_routes(admin.routes)
    app.router.add_get("/api/v1/openapi.json", openapi.openapi_json)
    return _services_ctx


async def _services_ctx(app: web.Application) -> AsyncIterator[None]:
    db = app[DB]
    users = UserService(db, app[SETTINGS].auth)
    room_service = RoomService(db)
    app[USERS] = users
    app[ROOMS] = room_service
    # One origin: nothing is live before it starts. Several (cluster.redis): rooms live on
    # the others stay live; the lease sweep (app/cluster_state) clears rooms nobody holds.
    offline = 0 if app[SETTINGS].cluster.redis else await room_service.set_all_offline()
    if offline:
        log.info("marked %d room(s) offline after start-up", offline)
    await users.warm_up()
    purged = await users.purge_expired_sessions()
    if purged:
        log.info("removed %d expired session(s)", purged)
    yield
    users.close()
