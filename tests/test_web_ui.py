"""The browser UI, driven end to end: headless Chromium (Debian's ``chromium`` package)
through Playwright against a real node, with a real RTMP publisher in a child process.

Needs ``pip install playwright`` and ``/usr/bin/chromium`` (``apt-get install chromium``);
never ``playwright install``. hls.js must be installed (``npm ci``) for the hls.js test.
Screenshots go to ``test-artifacts/`` (not committed).
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import playwright.async_api as playwright_api
import pytest

from helpers import make_room, rtmp_url
from publisher import start_publisher

from livecast.web.routes import find_node_modules

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.timeout(300)]

CHROMIUM = Path(os.environ.get("LIVECAST_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-zygote",  # fewer processes; allowed with --no-sandbox
]
TEST_TIMEOUT = 120.0  # a hung browser fails its test instead of blocking the whole run
STEP_TIMEOUT = 30.0
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
PASSWORD = "correct horse 1"
H264_MSE = 'video/mp4; codecs="avc1.42E01E,mp4a.40.2"'


def bounded(test: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    @functools.wraps(test)
    async def run(*args: Any, **kwargs: Any) -> None:
        await asyncio.wait_for(test(*args, **kwargs), TEST_TIMEOUT)

    return run


class PageWatch:
    """Collects what a page must not do: script errors, CSP violations, requests elsewhere."""

    def __init__(self, page: Any, base: str) -> None:
        self.problems: list[str] = []
        page.on("pageerror", lambda err: self.problems.append(f"page error: {err}"))
        page.on("console", self._console)
        page.on("request", lambda req: self._request(req, base))

    def _console(self, msg: Any) -> None:
        text = msg.text
        if "Content Security Policy" in text or (msg.type == "error" and "Failed to load resource" not in text):
            self.problems.append(f"console {msg.type}: {text}")

    def _request(self, req: Any, base: str) -> None:
        url = req.url
        if not (url.startswith(base) or url.startswith(base.replace("http", "ws", 1))
                or url.startswith(("blob:", "data:"))):
            self.problems.append(f"third-party request: {url}")


def chromium_executable(tmp_path: Path) -> str:
    """Chromium, started with normal scheduling even if this process runs under a real-time
    policy (a real-time browser that busy-waits starves a small machine completely)."""
    realtime = hasattr(os, "sched_getscheduler") and os.sched_getscheduler(0) in (
        getattr(os, "SCHED_FIFO", -1), getattr(os, "SCHED_RR", -1))
    chrt = shutil.which("chrt")
    if not realtime or chrt is None:
        return str(CHROMIUM)
    wrapper = tmp_path / "chromium-normal-priority"
    wrapper.write_text(f'#!/bin/sh\nexec {chrt} --other 0 {CHROMIUM} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Any]:
    # The browser tests are part of the suite: a missing browser is a failure, not a skip
    # (a skip would hide a CI that forgot to install it).
    assert CHROMIUM.exists(), f"{CHROMIUM} not found: apt-get install chromium (see README)"
    async with playwright_api.async_playwright() as p:
        # launch() gives every context a fresh temporary profile (user-data dir).
        instance = await p.chromium.launch(executable_path=chromium_executable(tmp_path), args=CHROMIUM_ARGS,
                                           headless=True, timeout=STEP_TIMEOUT * 1000)
        try:
            yield instance
        finally:
            await instance.close()


async def new_page(browser: Any, node: Any, width: int = 1280, height: int = 800) -> tuple[Any, Any, PageWatch]:
    context = await asyncio.wait_for(
        browser.new_context(viewport={"width": width, "height": height}, base_url=node.base), STEP_TIMEOUT)
    context.set_default_timeout(15_000)
    page = await asyncio.wait_for(context.new_page(), STEP_TIMEOUT)
    return context, page, PageWatch(page, node.base)


async def api_login(context: Any, node: Any, username: str) -> None:
    """Register and log in through the context's own cookie jar (no UI, fast)."""
    r = await context.request.post(node.url("/api/v1/auth/register"), data={"username": username, "password": PASSWORD})
    assert r.status == 201, await r.text()
    r = await context.request.post(node.url("/api/v1/auth/login"), data={"username": username, "password": PASSWORD})
    assert r.status == 200, await r.text()


async def player_status(page: Any) -> dict[str, Any]:
    return await page.evaluate("""() => {
        const v = document.getElementById('video'), box = document.getElementById('player');
        const p = window.livecastPlayer;
        return {time: v.currentTime, state: box.dataset.state, engine: box.dataset.engine,
                error: v.error ? v.error.message || String(v.error.code) : null,
                fatal: p ? p.fatalErrors : null, recoveries: p ? p.recoveries : null,
                played: p ? p.played : 0};
    }""")


async def wait_playing(page: Any, advance: float, timeout: float = 25.0) -> dict[str, Any]:
    """Wait until the video plays, then until currentTime has advanced by ``advance`` s."""
    deadline = time.monotonic() + timeout
    start: float | None = None
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = await player_status(page)
        assert status["state"] != "error", status
        if status["state"] == "playing" and status["time"] > 0:
            if start is None:
                start = status["time"]
            elif status["time"] - start >= advance:
                return status
        await asyncio.sleep(0.25)
    raise AssertionError(f"video did not advance {advance}s within {timeout}s (started at {start}): {status}")


async def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / name), full_page=True)


@bounded
async def test_chromium_plays_h264_with_mse(browser: Any) -> None:
    """The premise of the player tests: this Chromium decodes H.264/AAC through MediaSource."""
    page = await asyncio.wait_for(browser.new_page(), STEP_TIMEOUT)
    assert await page.evaluate(f"() => MediaSource.isTypeSupported('{H264_MSE}')"), \
        "this Chromium has no H.264/AAC for MSE; the player tests cannot be honest here"
    await page.close()


@bounded
async def test_register_stream_chat_like_gift(browser: Any, node: Any) -> None:
    streamer_ctx, streamer, streamer_watch = await new_page(browser, node)
    viewer_ctx, viewer, viewer_watch = await new_page(browser, node)
    name = f"streamer{int(time.time() * 1000) % 10**6}"

    # Sign up (which logs in), log out, log in again through the form.
    await streamer.goto("/register")
    await streamer.fill("#username", name)
    await streamer.fill("#password", "short")
    await streamer.click("button[type=submit]")
    await streamer.wait_for_selector("[data-error-for=password]:has-text('password must be')")
    await streamer.fill("#password", PASSWORD)
    await streamer.click("button[type=submit]")
    await streamer.wait_for_url("**/dashboard")
    await streamer.click("#nav button:has-text('Log out')")
    await streamer.wait_for_url(node.url("/"))
    await streamer.goto("/login?next=/dashboard")
    await streamer.fill("#username", name)
    await streamer.fill("#password", PASSWORD)
    await streamer.click("button[type=submit]")
    await streamer.wait_for_url("**/dashboard")

    # Create a room and read the OBS settings off the dashboard.
    await streamer.fill("#create-title", "Friday <b>night</b> stream")
    await streamer.fill("#create-description", "Music & chat")
    await streamer.click("#create-form button[type=submit]")
    panel = streamer.locator("article.dash-room").first
    await panel.wait_for()
    slug = await panel.get_attribute("data-slug")
    assert slug
    key_input = panel.locator("input.obs-key")
    assert set(await key_input.input_value()) == {"•"}  # hidden until revealed
    await panel.locator("button.obs-reveal").click()
    key = await key_input.input_value()
    server = await panel.locator("input.obs-server").input_value()
    assert server == f"rtmp://127.0.0.1:{node.rtmp_port}/live"
    assert key.startswith("lc_")

    publisher = await start_publisher(f"{server}/{key}", seconds=40, realtime=True, width=640, height=360)
    try:
        # The viewer watches: the video advances by 3 s with no player error.
        await api_login(viewer_ctx, node, f"viewer{int(time.time() * 1000) % 10**6}")
        await viewer.goto(f"/r/{slug}")
        assert await text_when_loaded(viewer, "#room-title") == "Friday <b>night</b> stream"
        status = await wait_playing(viewer, 3.0)
        assert status["fatal"] == 0 and status["error"] is None, status

        # The streamer opens the room page too: a second browser context in the same chat.
        await streamer.goto(f"/r/{slug}")
        await streamer.wait_for_selector("#chat-state:has-text('connected')")
        await viewer.wait_for_selector("#chat-state:has-text('connected')")

        await viewer.fill("#chat-input", "hello from the viewer")
        await viewer.press("#chat-input", "Enter")
        await streamer.wait_for_selector(".chat-line .chat-text:has-text('hello from the viewer')")
        await viewer.fill("#chat-input", "please delete me")
        await viewer.press("#chat-input", "Enter")
        doomed = streamer.locator(".chat-line", has_text="please delete me")
        await doomed.locator("button:has-text('Delete')").click()  # the owner moderates from the room page
        await viewer.wait_for_selector(".chat-text:has-text('please delete me')", state="detached")

        # Likes: the total moves on the other side.
        before = int(await streamer.text_content("#like-count") or "0")
        await viewer.click("#like")
        await viewer.click("#like")
        await streamer.wait_for_function(
            f"() => Number(document.getElementById('like-count').textContent) >= {before + 2}")

        # A gift: the balance drops, the streamer's chat shows it.
        await viewer.wait_for_function("() => /^\\d+$/.test(document.getElementById('balance').textContent)")
        balance = int(await viewer.text_content("#balance") or "")
        await viewer.select_option("#gift-select", "rose")
        await viewer.click("#gift-form button[type=submit]")
        await viewer.wait_for_function(
            f"() => Number(document.getElementById('balance').textContent) === {balance - 5}")
        await streamer.wait_for_selector(".chat-gift:has-text('sent Rose')")

        status = await player_status(viewer)
        assert status["state"] == "playing" and status["fatal"] == 0, status
        await shot(viewer, "room-live.png")

        # Dashboard while live: stream health from the room's stream block.
        await streamer.goto("/dashboard")
        stats = streamer.locator(f"article[data-slug='{slug}'] .stats")
        await stats.locator("dd[data-stat='Resolution']:has-text('640×360')").wait_for()
        assert "h264" in (await stats.text_content() or "").lower()
        await shot(streamer, "dashboard.png")
    finally:
        await publisher.stop()
    await publisher.result()

    # Edit the title; rotate the key (after a confirm) and see the new one.
    panel = streamer.locator(f"article[data-slug='{slug}']")
    await panel.locator("input[name=title]").fill("Saturday stream")
    await panel.locator("button:has-text('Save changes')").click()
    await panel.locator("h2:has-text('Saturday stream')").wait_for()
    streamer.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await panel.locator("button.obs-rotate").click()
    await streamer.wait_for_selector("#toast:has-text('New stream key')")
    await panel.locator("button.obs-reveal").click()
    new_key = await panel.locator("input.obs-key").input_value()
    assert new_key.startswith("lc_") and new_key != key
    assert not viewer_watch.problems, viewer_watch.problems
    assert not streamer_watch.problems, streamer_watch.problems
    await streamer_ctx.close()
    await viewer_ctx.close()


async def text_when_loaded(page: Any, selector: str) -> str:
    """The element's text once the page's script has filled it in (the HTML ships a
    placeholder, "…"); the assertion on it stays exact."""
    await page.wait_for_function(
        "sel => { const el = document.querySelector(sel); return el && el.textContent && el.textContent !== '…'; }",
        arg=selector,
    )
    return str(await page.text_content(selector))


@bounded
async def test_offline_room_starts_playing_by_itself(browser: Any, node: Any) -> None:
    """An offline room page switches to a playing player when the stream starts (hls.js)."""
    assert find_node_modules() is not None, "hls.js is not installed: run `npm ci` in the checkout"
    room = await make_room(node, "Starts later")
    context, page, watch = await new_page(browser, node)
    await page.goto(f"/r/{room['slug']}?player=hls.js")
    await page.wait_for_selector("#offline-card", state="visible")
    assert await page.text_content("#live-badge") == "offline"
    await page.wait_for_selector("#chat-state:has-text('connected')")

    publisher = await start_publisher(rtmp_url(node, room["stream_key"]), seconds=30, realtime=True)
    try:
        await page.wait_for_selector("#live-badge:has-text('LIVE')")
        status = await wait_playing(page, 1.5)
        assert status["engine"] == "hls.js" and status["fatal"] == 0, status
        assert await page.is_hidden("#offline-card")
    finally:
        await publisher.stop()
    await publisher.result()
    assert not watch.problems, watch.problems
    await context.close()


@bounded
async def test_html_in_comments_is_text_and_layout_fits_360px(browser: Any, node: Any) -> None:
    room = await make_room(node, "<script>alert(1)</script> room")
    context, page, watch = await new_page(browser, node, width=360, height=740)
    await api_login(context, node, f"mallory{int(time.time() * 1000) % 10**6}")
    response = await page.goto(f"/r/{room['slug']}")
    assert response is not None
    csp = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    await page.wait_for_selector("#chat-state:has-text('connected')")

    evil = '<img src=x onerror="window.pwned=1"><b>bold</b> & <i>'
    await page.fill("#chat-input", evil)
    await page.click("#chat-form button[type=submit]")
    line = page.locator(".chat-line .chat-text").last
    await line.wait_for()
    assert await line.text_content() == evil
    assert await page.locator("#chat-log img, #chat-log b, #chat-log i").count() == 0
    assert await text_when_loaded(page, "#room-title") == "<script>alert(1)</script> room"
    assert await page.evaluate("() => window.pwned === undefined")

    # 360 px wide: nothing overflows sideways.
    overflow = await page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"page is {overflow}px wider than the 360px viewport"
    await shot(page, "room-mobile.png")
    assert not watch.problems, watch.problems
    await context.close()


@bounded
async def test_admin_page_roles_disable_coins(browser: Any, node: Any) -> None:
    from livecast.keys import USERS

    users = node.node.app[USERS]
    await users.create_user("root_admin", PASSWORD, role="admin")
    await users.create_user("carol", PASSWORD, role="viewer")
    context, page, watch = await new_page(browser, node)
    r = await context.request.post(node.url("/api/v1/auth/login"),
                                   data={"username": "root_admin", "password": PASSWORD})
    assert r.status == 200
    await page.goto("/admin")
    row = page.locator("tr[data-username='carol']")
    await row.wait_for()
    await row.locator("select").select_option("streamer")
    await page.wait_for_selector("#toast:has-text('carol updated')")
    await row.locator("input[type=number]").fill("250")
    await row.locator("button:has-text('Grant')").click()
    await row.locator("td.coins:has-text('350')").wait_for()
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await row.locator("button:has-text('Disable')").click()
    await row.locator("button:has-text('Enable')").wait_for()
    carol = await users.get_by_username("carol")
    assert carol is not None and (carol.role, carol.coins, carol.disabled) == ("streamer", 350, True)
    await shot(page, "admin.png")
    assert not watch.problems, watch.problems
    await context.close()


@bounded
async def test_player_recovers_from_reconnect_and_restart(browser: Any, node_factory: Any) -> None:
    """A publisher reconnect within the grace (discontinuity), then a stop past the grace
    (playlist gone) and a new publish: the player gets back to playing each time by itself."""
    node = await node_factory(hls={"segment_duration": 1.0, "reconnect_grace": 2.0})
    room = await make_room(node, "Flaky uplink")
    url = rtmp_url(node, room["stream_key"])
    context, page, watch = await new_page(browser, node)
    await page.goto(f"/r/{room['slug']}")
    await page.wait_for_selector("#offline-card", state="visible")

    first = await start_publisher(url, seconds=6, realtime=True)
    await wait_playing(page, 1.0)
    await first.result()
    second = await start_publisher(url, seconds=8, realtime=True)  # reconnect within the grace
    played = (await player_status(page))["played"]
    await page.wait_for_selector("#live-badge:has-text('LIVE')")
    await second.result()
    # 8 s of new media: far more than what was buffered before the reconnect was watched.
    status = await player_status(page)
    assert status["played"] - played >= 5.0, status

    await page.wait_for_selector("#offline-card", state="visible", timeout=20_000)  # ended, grace over
    third = await start_publisher(url, seconds=8, realtime=True)
    try:
        status = await wait_playing(page, 1.5)
        assert status["state"] == "playing", status
    finally:
        await third.stop()
    await third.result()
    assert not watch.problems, watch.problems
    await context.close()
