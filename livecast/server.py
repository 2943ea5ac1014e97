"""Running a node: bind the HTTP site (and, through the app, the RTMP listener), print
where to find it, and shut down gracefully on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys

from aiohttp import web

from livecast import logs, tls
from livecast.tls import ServerTls
from livecast.app import create_app
from livecast.config import Settings
from livecast.keys import BOUND_PORTS

log = logging.getLogger(__name__)


class RunningNode:
    """A started node; ``stop()`` shuts it down gracefully."""

    def __init__(self, runner: web.AppRunner, site: web.TCPSite) -> None:
        self.runner = runner
        self.site = site

    @property
    def app(self) -> web.Application:
        return self.runner.app

    @property
    def http_port(self) -> int:
        return int(self.runner.addresses[0][1])

    @property
    def rtmp_port(self) -> int | None:
        return self.app[BOUND_PORTS].get("rtmp")

    @property
    def rtmps_port(self) -> int | None:
        return self.app[BOUND_PORTS].get("rtmps")

    @property
    def tls(self) -> ServerTls | None:
        return tls.server_tls(self.app)

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_node(settings: Settings) -> RunningNode:
    app = create_app(settings)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        # One line per request, wanted only at log.level = debug (livecast.logs keeps the
        # logger at warning otherwise); without a logger aiohttp skips that path entirely.
        access_log=logging.getLogger("aiohttp.access") if settings.log.level == "debug" else None,
        shutdown_timeout=settings.server.shutdown_timeout,
        # aiohttp closes a connection whose next request's headers are not complete this
        # long after it opened or after its last response: an idle and a header timeout.
        keepalive_timeout=settings.server.keepalive_timeout,
        max_line_size=settings.server.max_line_size,
        max_field_size=settings.server.max_field_size,
        max_headers=settings.server.max_headers,
    )
    logs.quiet_malformed_requests()
    await runner.setup()
    server_tls = tls.server_tls(app)
    site = web.TCPSite(runner, settings.server.host, settings.server.http_port, backlog=1024,
                       ssl_context=server_tls.context if server_tls else None)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    app[BOUND_PORTS]["http"] = int(runner.addresses[0][1])  # edges announce it (livecast.edge.heartbeat)
    return RunningNode(runner, site)


def _display_host(settings: Settings) -> str:
    host = settings.server.host
    return "localhost" if host in ("0.0.0.0", "::", "") else host


def banner(node: RunningNode, settings: Settings) -> str:
    host = _display_host(settings)
    lines = [f"LiveCast {settings.server.role} is running"]
    scheme = "https" if node.tls else "http"
    base = settings.server.public_url.rstrip("/") or f"{scheme}://{host}:{node.http_port}"
    lines.append(f"  Web:        {base}/")
    if node.rtmp_port is not None:
        lines.append(f"  OBS server: rtmp://{host}:{node.rtmp_port}/live   (stream key: from your room's dashboard)")
    if node.rtmps_port is not None:
        lines.append(f"  OBS (TLS):  rtmps://{host}:{node.rtmps_port}/live")
    if settings.server.role == "origin":
        lines.append(f"  Data:       {settings.data_path.resolve()}")
    else:
        lines.append(f"  Origin:     {settings.server.origin}")
    lines.append("  Stop with Ctrl-C")
    return "\n".join(lines)


def settle_heap() -> None:
    """Take what start-up built (modules, classes, the app and its services: some 70,000
    objects) out of the cyclic garbage collector's reach. A full collection otherwise walks
    all of them, 50-90 ms on the reference machine, on the event loop, stalling every
    publisher and viewer; after this it walks only what the running node made since.
    Called once the node is up (``gc.freeze``: the objects stay, they are only no longer
    scanned)."""
    gc.collect()
    gc.freeze()


async def serve(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    node = await start_node(settings)
    settle_heap()
    server_tls = node.tls
    if server_tls is not None:  # SIGHUP: reload the certificate; live streams keep going
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGHUP, server_tls.reload)
    print(banner(node, settings), flush=True)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await node.stop()
        print("LiveCast stopped", file=sys.stderr, flush=True)


def run(settings: Settings) -> None:
    loop_factory = None
    if settings.server.uvloop:
        try:
            import uvloop
        except ImportError:
            log.info("uvloop is not installed; using asyncio's default event loop")
        else:
            loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(serve(settings))
