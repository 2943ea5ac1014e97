"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from livecast.cluster.leases import LEASES

from livecast.keys import DB

routes = web.RouteTableDef()


DB_CHECK_INTERVAL = 1.0  # seconds a database ping result is reused (probes may come often)
DB_PING_TIMEOUT = 1.0
_db_checks: dict[int, tuple[float, bool]] = {}


async def _database_reachable(db: Any) -> bool:
    now = time.monotonic()
    checked = _db_checks.get(id(db))
    if checked is not None and now - checked[0] < DB_CHECK_INTERVAL:
        return checked[1]
    try:
        ok = bool(await asyncio.wait_for(db.ping(), DB_PING_TIMEOUT))
    except TimeoutError:
        ok = False
    _db_checks[id(db)] = (time.monotonic(), ok)
    return ok


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """Liveness (always 200 while the process answers), with what it depends on: the
    database and, on a cluster origin, Redis; "degraded" when one does not answer."""
    body: dict[str, Any] = {"status": "ok"}
    db = request.app.get(DB)
    if db is not None:
        body["database"] = await _database_reachable(db)
    leases = request.app.get(LEASES)
    if leases is not None:
        body["redis"] = not leases.degraded
    if not all(v for k, v in body.items() if k != "status"):
        body["status"] = "degraded"
    return web.json_response(body)


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    db = request.app.get(DB)
    if db is not None and not await db.ping():
        return web.json_response({"status": "unavailable", "database": False}, status=503)
    return web.json_response({"status": "ready", "database": db is not None})
