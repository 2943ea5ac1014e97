"""The recording UI in headless Chromium: the replay page plays a recording, seeks to the
middle and shows the chat written up to that point; the live room page rewinds through the
DVR playlist and returns to live; the room page lists past broadcasts."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from helpers import make_room, register_and_login, rtmp_url, wait_for
from publisher import start_publisher
from test_chat_support import connect, post
from test_recording import FPS, RECORDING, _finished, _recordings
from test_web_ui import PASSWORD, PageWatch, browser, new_page  # noqa: F401  (browser is a fixture)

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.timeout(300)]


async def until(page: Any, expression: str, timeout: float = 15.0) -> None:
    """Poll a page expression (the pages' CSP forbids the eval that wait_for_function uses)."""
    deadline = time.monotonic() + timeout
    while not await page.evaluate(f"() => Boolean({expression})"):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s: {expression}")
        await asyncio.sleep(0.1)


async def _replay_state(page: Any) -> dict[str, Any]:
    return dict(await page.evaluate("""() => {
        const v = document.getElementById('replay-video');
        const texts = [...document.querySelectorAll('#replay-chat .chat-text')].map((e) => e.textContent);
        return {time: v.currentTime, duration: v.duration, texts, paused: v.paused,
                error: v.error ? String(v.error.code) : null};
    }"""))


async def test_replay_page_seeks_with_the_chat_and_live_page_rewinds(browser: Any, node_factory: Any) -> None:  # noqa: F811
    node = await node_factory(recording=RECORDING, hls={"segment_duration": 1.0})
    room = await make_room(node)
    slug = room["slug"]
    viewer = await register_and_login(node)
    ws, _ = await connect(node, slug, viewer)
    publisher = await start_publisher(rtmp_url(node, room["stream_key"]), seconds=12, fps=FPS, realtime=True)
    context, page, watch = await new_page(browser, node)
    try:
        async def started() -> float | None:
            found = await _recordings(node, slug)
            return found[0]["duration"] if found and found[0]["duration"] >= 1 else None

        await wait_for(started, timeout=20, what="the recording to start")
        await post(ws, "early words")
        begin = time.monotonic()
        await wait_for(lambda: time.monotonic() - begin >= 6, timeout=10, what="six seconds later")
        await post(ws, "late words")

        # Live page: rewind (to the broadcast's start: it is shorter than 30 s), then back to live.
        await page.goto(f"/r/{slug}")
        await page.locator("#dvr-rewind").click(timeout=15_000)
        try:
            await until(page, "document.getElementById('player').dataset.dvr === 'rewound'", 20)
        except AssertionError:
            raise AssertionError(str(await page.evaluate("() => { const v = document.getElementById('dvr-video');"
                                 " return [document.getElementById('player').dataset, v && v.readyState,"
                                 " v && v.error && v.error.code, v && v.duration, v && v.src]; }"))
                                 + str(watch.problems)) from None
        rewound = await page.evaluate("() => { const v = document.getElementById('dvr-video');"
                                      " const s = v.seekable;"
                                      " return [v.currentTime, s.length ? s.end(s.length - 1) : 0]; }")
        assert rewound[1] >= 5 and rewound[0] <= max(0.0, rewound[1] - 30) + 1.5, rewound
        assert await page.locator("#video").is_hidden()
        await page.locator("#dvr-live").click()
        await until(page, "document.getElementById('player').dataset.dvr === 'live'")
        assert await page.locator("#video").is_visible() and await page.locator("#dvr-video").is_hidden()
        await publisher.result()
        recording = await _finished(node, slug)

        # A clip's page plays its MP4.
        async with node.http.post(node.url(f"/api/v1/rooms/{slug}/clips"), headers=viewer["headers"],
                                  json={"recording": recording["id"], "from": 1, "to": 4}) as r:
            assert r.status == 201
            clip = (await r.json())["clip"]
        await page.goto(clip["page"])
        await until(page, "document.getElementById('clip-video').readyState >= 1"
                    " && document.getElementById('clip-video').duration > 2")
        assert await page.locator("#clip-room").text_content() == slug

        # The room page lists the broadcast; its link opens the replay page.
        await page.goto(f"/r/{slug}")
        await page.locator(f'#past-list a[href="/recordings/{recording["id"]}"]').click()
        await page.wait_for_url(f"**/recordings/{recording['id']}")
        await until(page, "document.getElementById('replay-player').dataset.state === 'playing'", 20)
        middle = recording["duration"] / 2
        await page.evaluate(f"() => {{ const v = document.getElementById('replay-video'); v.pause();"
                            f" v.currentTime = {middle}; }}")
        await until(page, f"Math.abs(document.getElementById('replay-video').currentTime - {middle}) < 0.5"
                          " && !document.getElementById('replay-video').seeking")
        events = await page.evaluate("() => window.livecastReplay.events.map((e) => [e.text, e.offset])")
        expected = [text for text, offset in events if offset <= middle + 0.25]
        state = await _replay_state(page)
        assert state["texts"] == expected and state["error"] is None, (state, events)
        assert "early words" in state["texts"] and "late words" not in state["texts"], (state, events)
        end = recording["duration"] - 0.5
        await page.evaluate(f"() => {{ document.getElementById('replay-video').currentTime = {end}; }}")
        await until(page, "[...document.querySelectorAll('#replay-chat .chat-text')]"
                          ".some((e) => e.textContent === 'late words')")
        assert not watch.problems, watch.problems
    finally:
        await ws.close()
        await context.close()
        if publisher.proc.returncode is None:
            await publisher.stop()
            await asyncio.wait_for(publisher.proc.wait(), 10)


async def test_dashboard_turns_recording_on_and_off(browser: Any, node: Any) -> None:  # noqa: F811
    context, page, watch = await new_page(browser, node)
    try:
        room = await make_room(node, "Recorded room")
        slug = room["slug"]
        r = await context.request.post(node.url("/api/v1/auth/login"),
                                       data={"username": room["owner"]["username"], "password": PASSWORD})
        assert r.status == 200
        await page.goto("/dashboard")
        toggle = page.locator(f'.rec-room[data-slug="{slug}"] .rec-toggle')
        assert not await toggle.is_checked()
        await toggle.check()

        async def record() -> bool:
            r = await context.request.get(node.url(f"/api/v1/rooms/{slug}/recording"))
            return bool((await r.json())["record"])

        await wait_for(record, timeout=10, what="recording turned on")
        await toggle.uncheck()
        await wait_for(lambda: _not(record), timeout=10, what="recording turned off")
        assert not watch.problems, watch.problems
    finally:
        await context.close()


async def _not(check: Any) -> bool:
    return not await check()
