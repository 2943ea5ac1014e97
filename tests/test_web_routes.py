"""The web UI's server side without a browser: page routes, security headers, the
vendored hls.js, the pages' own hygiene (no inline script, no HTML insertion) and
``--demo``."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from livecast import demo
from livecast.web import routes as web_routes

PAGES = ["/", "/r/some-room", "/login", "/register", "/dashboard", "/admin"]


def _check_page_headers(headers: Any) -> None:
    csp = headers.get("Content-Security-Policy", "")
    directives = {d.strip().split(" ")[0]: d.strip() for d in csp.split(";") if d.strip()}
    assert directives.get("script-src") == "script-src 'self'", csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert directives.get("object-src") == "object-src 'none'"
    assert "frame-ancestors 'none'" in csp
    assert headers.get("X-Content-Type-Options") == "nosniff"
    assert headers.get("Referrer-Policy")


async def test_pages_are_served_with_security_headers(node: Any) -> None:
    for path in PAGES:
        async with node.http.get(node.url(path)) as r:
            assert r.status == 200, path
            assert r.content_type == "text/html"
            assert "<main" in await r.text()
            _check_page_headers(r.headers)
    async with node.http.get(node.url("/static/js/room.js")) as r:
        assert r.status == 200
        assert "javascript" in r.content_type
        assert r.headers.get("X-Content-Type-Options") == "nosniff"
    async with node.http.get(node.url("/static/css/style.css")) as r:
        assert r.status == 200 and r.content_type == "text/css"


async def test_json_and_hls_responses_are_nosniff(node: Any) -> None:
    for path in ["/api/v1/rooms", "/api/v1/me", "/hls/nobody/index.m3u8", "/static/nothing.js"]:
        async with node.http.get(node.url(path)) as r:
            assert r.headers.get("X-Content-Type-Options") == "nosniff", path


async def test_hls_js_is_served_from_node_modules(node: Any) -> None:
    assert web_routes.find_node_modules() is not None, "hls.js is not installed: run `npm ci` in the checkout"
    async with node.http.get(node.url("/static/vendor/hls.min.js")) as r:
        assert r.status == 200
        assert "javascript" in r.content_type
        assert len(await r.read()) > 100_000
    async with node.http.get(node.url("/static/vendor/other.js")) as r:
        assert r.status == 404


async def test_missing_hls_js_is_a_warning_not_a_failure(node_factory: Any, monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(web_routes, "find_node_modules", lambda extra=None: None)
    with caplog.at_level(logging.WARNING, logger="livecast.web.routes"):
        node = await node_factory()
    assert any("hls.js is not installed" in rec.getMessage() for rec in caplog.records)
    async with node.http.get(node.url("/static/vendor/hls.min.js")) as r:
        assert r.status == 404
        assert "npm ci" in (await r.json())["error"]["message"]
    async with node.http.get(node.url("/r/anything")) as r:
        assert r.status == 200


def test_find_node_modules_prefers_the_given_directory(tmp_path: Path) -> None:
    dist = tmp_path / "node_modules" / "hls.js" / "dist"
    dist.mkdir(parents=True)
    (dist / "hls.min.js").write_text("// stub")
    assert web_routes.find_node_modules([tmp_path / "node_modules"]) == tmp_path / "node_modules"


class _PageScan(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.problems.append("inline <script>")
        if tag == "style":
            self.problems.append("inline <style>")
        for name in names:
            if name.startswith("on") or name == "style":
                self.problems.append(f"<{tag} {name}=...>")
        for name, value in attrs:
            if name in ("src", "href") and value and re.match(r"(https?:)?//", value):
                self.problems.append(f"third-party {name}={value}")


def test_pages_have_no_inline_script_or_style() -> None:
    pages = sorted(p for p in web_routes.PAGES_DIR.glob("*.html") if p != web_routes.LAYOUT)
    assert {p.name for p in pages} == {page.file for page in web_routes.PAGES.values()}
    for page in web_routes.PAGES.values():  # the pages as served: layout + <main>
        scan = _PageScan()
        scan.feed(web_routes.render_page(page))
        assert not scan.problems, (page.file, scan.problems)


def test_scripts_never_insert_html() -> None:
    """User text goes in with textContent / text nodes only."""
    forbidden = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function")
    for script in (web_routes.STATIC_DIR / "js").glob("*.js"):
        for number, line in enumerate(script.read_text().splitlines(), 1):
            assert not forbidden.search(line), f"{script.name}:{number}: {line.strip()}"


# -- demo mode ---------------------------------------------------------------------------


def _demo_children() -> list[int]:
    """Child processes of this process that run the demo publisher (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == os.getpid() and b"livecast.demo" in cmdline:
            found.append(int(entry))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
async def test_demo_mode_publishes_a_live_test_pattern(node_factory: Any) -> None:
    node = await node_factory(server={"demo": True})
    deadline = time.monotonic() + 20
    room: dict[str, Any] = {}
    while time.monotonic() < deadline:
        async with node.http.get(node.url("/api/v1/rooms/demo")) as r:
            if r.status == 200:
                room = (await r.json())["room"]
                if room["live"] and room["stream"] and room["stream"]["width"]:
                    break
        await asyncio.sleep(0.25)
    assert room.get("live"), room
    stream = room["stream"]
    assert (stream["video_codec"], stream["audio_codec"]) == ("h264", "aac")
    assert (stream["width"], stream["height"]) == (demo.WIDTH, demo.HEIGHT)
    assert room["owner"]["username"] == demo.DEMO_USER

    # The child process publishes, the stream key is not on its command line.
    children = _demo_children()
    assert len(children) == 1
    key = (await demo.ensure_demo_room(node.node.app))
    assert key.encode() not in Path(f"/proc/{children[0]}/cmdline").read_bytes()
    # Idempotent: asking again neither makes a new room nor changes the key.
    assert await demo.ensure_demo_room(node.node.app) == key
    async with node.http.get(node.url("/api/v1/rooms")) as r:
        assert [x["slug"] for x in (await r.json())["rooms"]] == ["demo"]

    await node.stop()
    assert _demo_children() == []


def test_demo_pattern_draws_the_clock() -> None:
    pattern = demo.Pattern()
    y1, u1, v1 = pattern.draw(0, "12:34:56.7")
    y2, _, _ = pattern.draw(0, "12:34:56.8")
    assert len(y1) == demo.WIDTH * demo.HEIGHT and len(u1) == len(v1) == demo.WIDTH * demo.HEIGHT // 4
    assert y1 != y2  # the tenths digit changed
    band = y1[pattern.bars_h * demo.WIDTH:]
    assert band.count(235) > 1000  # lit segments in the lower band
    assert len(demo.tone_second()) == demo.SAMPLE_RATE * 4
