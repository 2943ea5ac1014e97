"""The CSRF attack of issue #13 in real Chromium: a page on another port of the same host
(the same site, so SameSite=Lax lets the session cookie through) submits a text/plain
form to the API as the logged-in user. It is refused, and nothing is created; the UI's own
requests from the server's origin keep working (tests/test_web_ui.py)."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import pytest
from aiohttp import web
from test_web_ui import STEP_TIMEOUT, api_login, bounded, browser, new_page  # noqa: F401  (browser: fixture)

pytestmark = pytest.mark.slow

ATTACK = """<!doctype html><title>win a prize</title>
<form id="f" method="POST" action="{target}" enctype="text/plain">
<input type="hidden" name='{{"title": "pwned", "x": "' value='"}}'>
</form><script>document.getElementById("f").submit()</script>"""


async def attacker_site(target: str) -> tuple[web.AppRunner, str]:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text=ATTACK.format(target=target), content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/"


def rooms_titled(node: Any, title: str) -> int:
    with sqlite3.connect(node.settings.db_path, timeout=10) as db:
        return int(db.execute("SELECT count(*) FROM rooms WHERE title = ?", (title,)).fetchone()[0])


@bounded
async def test_form_from_another_port_cannot_create_a_room(browser: Any, node: Any) -> None:  # noqa: F811
    context, page, _ = await new_page(browser, node)
    await api_login(context, node, "victim_streamer")
    runner, attacker = await attacker_site(node.url("/api/v1/rooms"))
    try:
        async with page.expect_response(node.url("/api/v1/rooms"), timeout=STEP_TIMEOUT * 1000) as answer:
            await page.goto(attacker)
        response = await answer.value
        request = response.request
        assert request.method == "POST"
        assert (await request.all_headers()).get("origin") == attacker.rstrip("/")
        # csrf_rejected, not 401: the browser did send the session cookie (same site).
        assert response.status == 403
        assert (await response.json())["error"]["code"] == "csrf_rejected"
        assert rooms_titled(node, "pwned") == 0
        # The same user, on the server's own pages, still creates rooms (fetch sends JSON + Origin).
        await page.goto(node.url("/dashboard"))
        created = await page.evaluate("""async () => {
            const r = await fetch('/api/v1/rooms', {method: 'POST', credentials: 'same-origin',
                headers: {'Content-Type': 'application/json'}, body: JSON.stringify({title: 'mine'})});
            return r.status;
        }""")
        assert created == 201 and rooms_titled(node, "mine") == 1
    finally:
        await runner.cleanup()
        await asyncio.wait_for(context.close(), STEP_TIMEOUT)
