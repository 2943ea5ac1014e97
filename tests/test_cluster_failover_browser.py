"""A viewer's browser across an origin failover: headless Chromium plays the room page
served by edge E (hls.js, and Chromium's own HLS player, playing from E's /hls/ URL), E lists origins A and B (sharing
PostgreSQL and Redis, separate OS processes); A is SIGKILLed mid-stream and the publisher
reconnects to B. The video must go on by itself: ``video.currentTime`` gets past
everything that was buffered when A died, so the player is playing B's side of the
joined playlist, without a fatal error and without a reload."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest

from helpers import make_room, rtmp_url, wait_for
from pg import PgCluster
from publisher import start_publisher
from test_cluster_failover import HLS, LEASE
from test_web_ui import bounded, browser, new_page, player_status, shot, wait_playing  # noqa: F401 - a fixture

from livecast.web.routes import find_node_modules

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.cluster, pytest.mark.timeout(300)]

AFTER_THE_MOVE = 2.0  # seconds of B's media the player must show


async def buffered_end(page: Any) -> float:
    """The end of what the video element has buffered (s), 0 if nothing."""
    return float(await page.evaluate(
        "() => { const b = document.getElementById('video').buffered; return b.length ? b.end(b.length - 1) : 0; }"))


async def plays_from(edge: Any, slug: str) -> str:
    async with edge.http.get(edge.url(f"/api/v1/rooms/{slug}/play")) as r:
        assert r.status == 200, await r.text()
        return str((await r.json())["hls_url"])


@pytest.mark.parametrize("engine", ["hls.js", "native"])
@bounded
async def test_the_player_on_the_edge_keeps_playing_across_the_failover(browser: Any, cluster: Any,  # noqa: F811
                                                                        pg_server: PgCluster, engine: str) -> None:
    assert find_node_modules() is not None, "hls.js is not installed: run `npm ci` in the checkout"
    redis = await cluster.redis()
    url = pg_server.url(await pg_server.create_database("failover_browser"))
    sections = {"database": {"url": url}, "cluster": {"redis": redis.url, "lease_seconds": LEASE}, "hls": HLS}
    a, b = await asyncio.gather(cluster.node("a", **sections), cluster.node("b", **sections))
    edge = await cluster.node("e", role="edge", origin=SimpleNamespace(base=f"{a.base},{b.base}"), hls=HLS)
    room = await make_room(edge, "Failover")
    slug = room["slug"]
    target = edge.url(f"/hls/{slug}/index.m3u8")

    async def sent_to_the_edge() -> bool:
        return await plays_from(edge, slug) == target

    await wait_for(sent_to_the_edge, timeout=15, what="/play hands out E (its first heartbeat)")
    first = await start_publisher(rtmp_url(a, room["stream_key"]), seconds=60, realtime=True)
    second = None
    try:
        context, page, watch = await new_page(browser, edge)
        await page.goto(f"/r/{slug}?player={engine}")
        assert (await wait_playing(page, 2.0, timeout=40))["engine"] == engine
        assert await page.evaluate("() => document.getElementById('player').dataset.playFrom") == target
        await a.kill()
        held = await buffered_end(page)  # all of A's media the player will ever have
        await first.stop()
        second = await start_publisher(rtmp_url(b, room["stream_key"]), seconds=30, realtime=True)
        deadline = time.monotonic() + 45
        status = await player_status(page)
        while status["time"] < held + AFTER_THE_MOVE and time.monotonic() < deadline:
            assert status["state"] != "error", status
            await asyncio.sleep(0.25)
            status = await player_status(page)
        assert status["time"] >= held + AFTER_THE_MOVE, (held, status)  # B's media is on screen
        assert status["engine"] == engine and status["fatal"] == 0, status

        async def playing_on() -> bool:  # a live player may stop a moment at the live edge
            now = await player_status(page)
            assert now["state"] != "error" and now["fatal"] == 0, now
            return bool(now["state"] == "playing" and now["time"] > status["time"])

        await wait_for(playing_on, timeout=20, what="the player playing on after the move")
        await shot(page, f"room-failover-edge-{engine}.png")
        assert not watch.problems, watch.problems
        await context.close()
    finally:
        await first.stop()
        if second is not None:
            await second.stop()
