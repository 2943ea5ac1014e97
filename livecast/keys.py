"""Typed application state keys (``web.AppKey``), shared by the app factory and handlers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from livecast.config import Settings
    from livecast.core.events import EventBus
    from livecast.storage.database import Database

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
DB: web.AppKey[Database] = web.AppKey("db")
EVENTS: web.AppKey[EventBus] = web.AppKey("events")
# The ports actually bound (differ from the settings when those are 0, as in tests).
BOUND_PORTS: web.AppKey[dict[str, int]] = web.AppKey("bound_ports")

# Accounts/rooms API (livecast.api.routes builds these once the database is open).
if TYPE_CHECKING:

    from livecast.rooms import RoomExtras, RoomService
    from livecast.users import UserService

USERS: web.AppKey[UserService] = web.AppKey("users")
ROOMS: web.AppKey[RoomService] = web.AppKey("rooms")
# Live data merged into every room JSON the API returns (livecast.rooms.RoomExtras); the
# origin's composition root makes it and hands it to the components that add to it.
ROOM_EXTRAS: web.AppKey[RoomExtras] = web.AppKey("room_extras")
