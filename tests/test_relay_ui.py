"""The dashboard's simulcast targets, in headless Chromium: add a target through the form,
see it listed with its state, disable and remove it; the target's key is never on the page
after it was sent (only its hint), and the page breaks no CSP rule."""

from __future__ import annotations

from typing import Any

import pytest

from test_web_ui import api_login, bounded, browser, new_page  # noqa: F401 (browser is a fixture)

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.timeout(300)]


@bounded
async def test_dashboard_adds_toggles_and_removes_a_target(browser: Any, node: Any) -> None:  # noqa: F811
    context, page, watch = await new_page(browser, node)
    try:
        await api_login(context, node, "relayui")
        await page.goto("/dashboard")
        await page.fill("#create-title", "Simulcast")
        await page.click("#create-form button[type=submit]")
        panel = page.locator("section.relay-panel").first
        await panel.locator("summary").click()
        key = "ui-secret-key-987654"
        await panel.locator("input[name=name]").fill("Twitch")
        await panel.locator("input[name=url]").fill("http://not-rtmp/x")
        await panel.locator("input[name=stream_key]").fill(key)
        await panel.locator("button[type=submit]").click()
        await panel.locator("[data-error-for=url]:has-text('rtmp')").wait_for()
        await panel.locator("input[name=url]").fill("rtmp://127.0.0.1:1/app")
        await panel.locator("button[type=submit]").click()
        row = panel.locator("li.relay-target:has-text('Twitch')")
        await row.wait_for()
        text = (await row.inner_text()).lower()
        assert "…54" in text and "idle" in text, text
        assert await panel.locator("input[name=stream_key]").input_value() == ""
        await row.locator("button:has-text('Disable')").click()
        await panel.locator("li.relay-target .relay-disabled").wait_for()
        await page.reload()
        await page.locator("li.relay-target:has-text('Twitch')").wait_for()
        assert key not in await page.content()
        page.on("dialog", lambda dialog: dialog.accept())
        await page.locator("li.relay-target button:has-text('Remove')").click()
        await page.locator("ul.relay-targets li.muted:has-text('No targets')").wait_for()
        assert watch.problems == []
    finally:
        await context.close()
