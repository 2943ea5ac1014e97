"""The ladder in a real browser: headless Chromium plays a room's multivariant playlist with
hls.js, the quality menu lists Auto and every level, and choosing a level switches to it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from helpers import rtmp_url
from publisher import start_publisher
from test_transcode_ladder import HLS, LADDER
from test_web_ui import api_login, bounded, browser, new_page, shot  # noqa: F401 - browser is a fixture

from livecast.web.routes import find_node_modules

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.timeout(300)]


async def _status(page: Any) -> dict[str, Any]:
    return await page.evaluate("""() => {
        const v = document.getElementById('video'), box = document.getElementById('player');
        const p = window.livecastPlayer, hls = p && p.hls;
        const q = document.getElementById('quality-box');
        return {time: v.currentTime, state: box.dataset.state, engine: p ? p.engine : null,
                levels: hls ? hls.levels.map(l => l.height) : [], current: hls ? hls.currentLevel : null,
                menu: q && !q.hidden ? [...q.querySelectorAll('option')].map(o => o.textContent) : null,
                playing: q && q.querySelector('#quality-playing')
                    ? q.querySelector('#quality-playing').textContent : null,
                playFrom: box.dataset.playFrom || null, videoHeight: v.videoHeight};
    }""")


async def _until(page: Any, predicate: Any, what: str, timeout: float = 40.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = await _status(page)
        assert status["state"] != "error", status
        if predicate(status):
            return status
        await asyncio.sleep(0.25)
    raise AssertionError(f"{what} not within {timeout}s: {status}")


async def _ladder_room(browser: Any, node: Any, user: str,  # noqa: F811
                       title: str) -> tuple[tuple[Any, Any, Any], str, Any]:
    """The owner's browser context logged in as ``user`` (context, page, watch), a room, and a
    real-time 720p publisher into it, once the master playlist lists all three variants."""
    owner, owner_page, owner_watch = await new_page(browser, node)
    await api_login(owner, node, user)
    r = await owner.request.post(node.url("/api/v1/rooms"), data={"title": title}, headers={"Origin": node.base})
    assert r.status == 201, await r.text()
    room = (await r.json())["room"]
    slug = room["slug"]
    publisher = await start_publisher(rtmp_url(node, room["stream_key"]), seconds=60, fps=30, gop=30,
                                      width=1280, height=720, realtime=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        async with node.http.get(node.url(f"/hls/{slug}/master.m3u8")) as resp:
            if resp.status == 200 and (await resp.text()).count("#EXT-X-STREAM-INF") == 3:
                break
        await asyncio.sleep(0.2)
    return (owner, owner_page, owner_watch), slug, publisher


@bounded
async def test_room_page_plays_the_ladder_and_the_menu_switches(browser: Any, node_factory: Any) -> None:  # noqa: F811
    assert find_node_modules() is not None, "hls.js is not installed: run `npm ci` in the checkout"
    node = await node_factory(transcode=LADDER, hls=HLS)
    # the page asks for the master playlist once all three variants are listed
    (owner, dashboard, owner_watch), slug, publisher = await _ladder_room(browser, node, "ladderowner", "Ladder")
    try:
        context, page, watch = await new_page(browser, node)
        await page.goto(f"/r/{slug}?player=hls.js")  # this Chromium claims native HLS but lacks H.264
        status = await _until(page, lambda s: s["state"] == "playing" and s["time"] > 0 and s["menu"],
                              "playing with a quality menu")
        assert status["playFrom"] == node.url(f"/hls/{slug}/master.m3u8"), status
        assert sorted(status["levels"]) == [240, 480, 720], status
        assert status["menu"][0] == "Auto" and len(status["menu"]) == 4, status
        lowest = status["levels"].index(240)
        await page.select_option("#quality-select", str(lowest))
        status = await _until(page, lambda s: s["current"] == lowest and "240p" in s["playing"]
                              and s["videoHeight"] == 240, "the 240p level chosen by hand")
        await shot(page, "room-ladder-240p.png")
        assert not watch.problems, watch.problems
        await context.close()

        # The owner's dashboard: one health row per rendition.
        await dashboard.goto("/dashboard")
        table = dashboard.locator(f"article[data-slug='{slug}'] table.renditions")
        await table.locator("tr[data-rendition='240p'] td:has-text('426×240')").wait_for()
        await table.locator("tr[data-rendition='480p'] td:has-text('real time')").wait_for()
        assert await table.locator("tbody tr").count() == 3
        await shot(dashboard, "dashboard-renditions.png")
        assert not owner_watch.problems, owner_watch.problems
        await owner.close()
    finally:
        await publisher.stop()
    await publisher.result()


STALLS_JS = """() => {
    const v = document.getElementById('video');
    window.stalls = []; let since = null;
    v.addEventListener('waiting', () => { since = performance.now(); });
    v.addEventListener('playing', () => {
        if (since !== null) window.stalls.push(performance.now() - since);
        since = null;
    });
}"""


@bounded
async def test_a_throttled_network_moves_auto_to_a_lower_level(browser: Any, node_factory: Any) -> None:  # noqa: F811
    assert find_node_modules() is not None, "hls.js is not installed: run `npm ci` in the checkout"
    node = await node_factory(transcode=LADDER, hls=HLS)
    (owner, _, _), slug, publisher = await _ladder_room(browser, node, "throttled", "Throttled")
    try:
        context, page, _ = await new_page(browser, node)
        await page.goto(f"/r/{slug}?player=hls.js")
        await page.evaluate(STALLS_JS)
        status = await _until(page, lambda s: s["state"] == "playing" and s["time"] > 0 and s["menu"], "playing")
        top = status["levels"].index(720)
        await _until(page, lambda s: s["current"] == top, "the top level on an open network")
        # About 1.2 Mbit/s: the source (about 4 Mbit/s) no longer fits, 480p (0.8) does.
        await page.evaluate("window.stalls = []")  # only the stalls after the network slows down count
        cdp = await context.new_cdp_session(page)
        await cdp.send("Network.emulateNetworkConditions", {
            "offline": False, "latency": 40, "downloadThroughput": 150_000, "uploadThroughput": 150_000})
        status = await _until(page, lambda s: s["levels"][s["current"]] < 720, "a lower level", timeout=60)
        played = status["time"]
        status = await _until(page, lambda s: s["time"] > played + 3, "playback going on at the lower level")
        stalls = await page.evaluate("window.stalls")
        print(f"auto moved to {status['levels'][status['current']]}p; stalls (ms): {[round(s) for s in stalls]}")
        await context.close()
        await owner.close()
    finally:
        await publisher.stop()
    await publisher.result()
