"""An edge's heartbeat: every ``cluster.heartbeat_interval`` seconds it tells the origin
where viewers reach it and how busy it is (``POST /api/v1/cluster/heartbeat``, cluster
secret in the header), so the origin's ``/api/v1/rooms/{slug}/play`` can send viewers
here. An edge that stops (or is killed) stops heartbeating and drops out of the origin's
choice after ``cluster.heartbeat_timeout``; a graceful stop says so at once.

The origin being down is normal for an edge: the loop keeps trying at the same pace,
logs the first failure and the recovery, and never ends but by cancellation. The reply
lists the cluster's media origins, which this edge's pages then allow in their CSP.

The announced URL is ``cluster.node_url``, else ``server.public_url``, else
``http(s)://HOST:PORT`` with the port actually bound (known once the site is up).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from livecast import tls
from livecast.cluster import load
from livecast.core.tasks import cancel_and_wait
from livecast.edge.upstream import ORIGIN
from livecast.keys import BOUND_PORTS, SETTINGS

log = logging.getLogger(__name__)

PATH = "/api/v1/cluster/heartbeat"
MAX_MEDIA_ORIGINS = 64
_CSP_ORIGIN = re.compile(r"https?://(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?")


@dataclass
class HeartbeatState:
    sent: int = 0  # heartbeats the origin accepted
    failed: int = 0
    failing: bool = False  # the last one failed (logged once per outage)
    node_url: str = ""
    media_origins: list[str] = field(default_factory=list)


HEARTBEAT: web.AppKey[HeartbeatState] = web.AppKey("edge_heartbeat", HeartbeatState)


def node_url(app: web.Application) -> str:
    """The base URL this edge announces; "" until the HTTP port is bound."""
    settings = app[SETTINGS]
    configured = settings.cluster.node_url or settings.server.public_url
    if configured:
        return configured.rstrip("/")
    port = app[BOUND_PORTS].get("http") or settings.server.http_port
    if not port:
        return ""
    host = settings.server.host
    if host in ("0.0.0.0", "::", ""):
        host = "localhost"
    elif ":" in host:
        host = f"[{host}]"
    scheme = "https" if tls.server_tls(app) else "http"
    return f"{scheme}://{host}:{port}"


def body(app: web.Application, url: str, *, healthy: bool | None = None) -> dict[str, Any]:
    meter = app[load.LOAD]
    return {"url": url, "viewers": meter.viewers(), "bytes_per_second": round(meter.bytes_per_second(), 1),
            "healthy": app[ORIGIN].up if healthy is None else healthy}


async def send(app: web.Application, *, timeout: float, healthy: bool | None = None) -> bool:
    """One heartbeat; True if the origin took it. Never raises but on cancellation."""
    state = app[HEARTBEAT]
    url = node_url(app)
    if not url:
        return False
    if url != state.node_url:
        log.info("announcing this edge to the origin as %s", url)
        if "://localhost:" in url:
            log.warning("this edge announces %s (bound to all interfaces, no cluster.node_url): "
                        "set cluster.node_url to the URL viewers reach it by", url)
        state.node_url = url
    origin = app[ORIGIN]
    target = origin.base  # the origin this heartbeat goes to (a failure moves the next one on)
    problem = ""
    try:
        async with origin.session.post(origin.url(PATH), json=body(app, url, healthy=healthy),
                                       headers=origin.headers(),
                                       timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            if resp.status == 200:
                reply = await resp.json()
                state.media_origins = _origins(reply.get("media_origins") if isinstance(reply, dict) else None)
            else:
                problem = f"the origin answered {resp.status}: {(await resp.text())[:200]}"
    except TimeoutError:
        problem = "the origin did not answer in time"
    except (aiohttp.ClientError, OSError, ValueError) as err:
        problem = f"{type(err).__name__}: {err}"
    if problem:
        state.failed += 1
        origin.failover()  # the next heartbeat tries another origin (if there are several)
        if not state.failing:
            log.warning("edge heartbeat to %s failed (%s); retrying every %.1f s", target, problem,
                        app[SETTINGS].cluster.heartbeat_interval)
            state.failing = True
        return False
    state.sent += 1
    if state.failing:
        log.info("edge heartbeat to %s works again", target)
        state.failing = False
    return True


def _origins(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return [v for v in value[:MAX_MEDIA_ORIGINS] if isinstance(v, str) and _CSP_ORIGIN.fullmatch(v)]


async def _run(app: web.Application) -> None:
    cluster = app[SETTINGS].cluster
    interval = max(0.05, cluster.heartbeat_interval)
    timeout = max(0.5, min(cluster.upstream_timeout, cluster.heartbeat_timeout / 2))
    while True:
        started = time.monotonic()
        await send(app, timeout=timeout)
        await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))


async def _heartbeat_ctx(app: web.Application) -> AsyncIterator[None]:
    app[HEARTBEAT] = HeartbeatState()
    task = asyncio.create_task(_run(app), name="edge-heartbeat")
    yield
    await cancel_and_wait(task)
    if app[HEARTBEAT].sent:  # leaving: stop being offered now rather than after the timeout
        await send(app, timeout=0.5, healthy=False)


def media_origins(app: web.Application) -> list[str]:
    """The cluster's media origins, as the origin's last heartbeat reply listed them."""
    return app[HEARTBEAT].media_origins if HEARTBEAT in app else []


def setup(app: web.Application) -> Callable[[web.Application], AsyncIterator[None]]:
    """The load meter (a middleware) and the heartbeat task.
    Call right after the origin client's context is registered."""
    load.setup(app)
    return _heartbeat_ctx
