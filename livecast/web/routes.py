"""The browser UI: page routes, static assets, the vendored player library and the
security headers every response gets.

Pages are one shared layout (``pages/_layout.html``) around each page's ``<main>``,
filled in once at start-up and served from memory; everything dynamic is done by ES modules under ``/static/js``
talking to the JSON API and the chat WebSocket. hls.js is not part of the repository: it
is installed from the npm registry (``npm ci`` in the checkout, see package.json) and
served from ``node_modules``. Without it the room page still plays in browsers with
native HLS, and the server says so once at start-up.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent
PAGES_DIR = WEB_DIR / "pages"
STATIC_DIR = WEB_DIR / "static"

# Forbids inline script and every third-party origin. hls.js needs blob: for its worker
# and for the MediaSource URL it gives the <video> element.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob:; connect-src 'self' ws: wss:; worker-src 'self' blob:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# Origins (scheme://host:port) of the cluster's edges the room page may play from, as
# given to ``setup``: the origin's registry's, or what an edge's heartbeat replies say.
MEDIA_ORIGINS: web.AppKey[Callable[[], list[str]]] = web.AppKey("web_media_origins")


def content_security_policy(media_origins: list[str]) -> str:
    """The pages' CSP, with the cluster's media origins allowed for playback (media, XHR)."""
    if not media_origins:
        return CONTENT_SECURITY_POLICY
    extra = " ".join(media_origins)
    return (CONTENT_SECURITY_POLICY.replace("media-src 'self' blob:", f"media-src 'self' blob: {extra}")
            .replace("connect-src 'self' ws: wss:", f"connect-src 'self' ws: wss: {extra}"))


PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


@dataclass(frozen=True)
class Page:
    file: str    # the page's <main> under pages/
    title: str
    script: str  # its ES module under /static/js/


PAGES = {
    "/": Page("index.html", "LiveCast", "home.js"),
    "/r/{slug}": Page("room.html", "Room · LiveCast", "room.js"),
    "/login": Page("login.html", "Log in · LiveCast", "auth.js"),
    "/register": Page("register.html", "Sign up · LiveCast", "auth.js"),
    "/dashboard": Page("dashboard.html", "Dashboard · LiveCast", "dashboard.js"),
    "/admin": Page("admin.html", "Admin · LiveCast", "admin.js"),
    "/recordings/{id}": Page("replay.html", "Replay · LiveCast", "replay.js"),
    "/clip/{id}": Page("clip.html", "Clip · LiveCast", "clip.js"),
}
LAYOUT = PAGES_DIR / "_layout.html"

# URL name under /static/vendor/ -> (npm package, file inside it).
VENDOR_FILES = {
    "hls.min.js": ("hls.js", "dist/hls.min.js"),
    "hls.min.js.map": ("hls.js", "dist/hls.min.js.map"),
}

VENDOR_DIR: web.AppKey[Path | None] = web.AppKey("web_vendor_dir")


def find_node_modules(extra: list[Path] | None = None) -> Path | None:
    """The first ``node_modules`` holding hls.js: the working directory (where the README's
    commands run), then the checkout this package lives in (editable installs)."""
    candidates = [*(extra or []), Path.cwd() / "node_modules", WEB_DIR.parent.parent / "node_modules"]
    for candidate in candidates:
        package, name = VENDOR_FILES["hls.min.js"]
        if (candidate / package / name).is_file():
            return candidate
    return None


def render_page(page: Page) -> str:
    """The layout with the page's title, script and <main> filled in (plain replacement:
    the markup itself may contain braces)."""
    html = LAYOUT.read_text(encoding="utf-8")
    html = html.replace("{title}", page.title).replace("{script}", page.script)
    return html.replace("{main}", (PAGES_DIR / page.file).read_text(encoding="utf-8"))


_OG_SLUG = re.compile(r"[a-z0-9-]{1,40}")


def _open_graph(request: web.Request, body: bytes) -> bytes:
    """A room page's og:image: the room's live thumbnail (the slug is checked, never echoed raw)."""
    slug = request.match_info.get("slug", "")
    if not _OG_SLUG.fullmatch(slug):
        return body
    image = f"{request.url.origin()}/hls/{slug}/thumbnail.jpg"
    tags = f'<meta property="og:image" content="{image}">\n<meta property="og:type" content="video.other">\n'
    return body.replace(b"</head>", tags.encode() + b"</head>", 1)


def _page_handler(page: Page) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    body = render_page(page).encode()  # once, at start-up

    async def handler(request: web.Request) -> web.StreamResponse:
        html = _open_graph(request, body) if page.file == "room.html" else body
        return web.Response(body=html, headers={"Cache-Control": "no-cache",
                                                "Content-Type": "text/html; charset=utf-8"})

    return handler


async def vendor_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    base = request.app[VENDOR_DIR]
    if name not in VENDOR_FILES or base is None:
        raise web.HTTPNotFound(reason="not installed: run `npm ci` in the LiveCast checkout")
    package, inner = VENDOR_FILES[name]
    return web.FileResponse(base / package / inner, headers={"Cache-Control": "no-cache"})


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Runs for every response (pages, API, HLS, WebSockets, errors) before it is sent."""
    headers = response.headers
    for key, value in COMMON_HEADERS.items():
        headers.setdefault(key, value)
    path = request.path
    if path.startswith("/static/"):
        headers.setdefault("Cache-Control", "no-cache")  # revalidate: assets change with upgrades
    content_type = headers.get("Content-Type", "")
    if content_type.startswith("text/html"):
        origins = request.app.get(MEDIA_ORIGINS)
        if origins is not None:
            headers.setdefault("Content-Security-Policy", content_security_policy(origins()))
        for key, value in PAGE_HEADERS.items():
            headers.setdefault(key, value)
    elif path.startswith("/api/"):
        # JSON opened as a document must not run anything either.
        headers.setdefault("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")


def setup(app: web.Application, media_origins: Callable[[], list[str]] | None = None) -> None:
    """Page routes, static files and security headers; the pages' CSP also allows
    ``media_origins()`` (the cluster's, given by the role's wiring)."""
    if media_origins is not None:
        app[MEDIA_ORIGINS] = media_origins
    for route, page in PAGES.items():
        app.router.add_get(route, _page_handler(page), name=f"page:{page.file}")
    app.router.add_get("/static/vendor/{name}", vendor_file)
    app.router.add_static("/static/", STATIC_DIR, append_version=False)
    app.on_response_prepare.append(_security_headers)
    vendor = find_node_modules()
    app[VENDOR_DIR] = vendor
    if vendor is None:
        log.warning(
            "hls.js is not installed (no node_modules/hls.js in %s or %s): the player will only work in "
            "browsers with native HLS (Safari, iOS). Install it with `npm ci` in the LiveCast checkout.",
            Path.cwd(), WEB_DIR.parent.parent,
        )
    else:
        log.debug("serving hls.js from %s", vendor)
