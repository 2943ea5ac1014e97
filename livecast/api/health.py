"""Liveness and readiness probes."""

from __future__ import annotations

from aiohttp import web

from livecast.keys import DB

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    db = request.app.get(DB)
    if db is not None and not await db.ping():
        return web.json_response({"status": "unavailable", "database": False}, status=503)
    return web.json_response({"status": "ready", "database": db is not None})
