"""CSRF on a real node: cookie-authenticated POST/PATCH/DELETE requests need a same-origin
``Origin`` (or ``Sec-Fetch-Site: same-origin``) and, with a body, a JSON one. Every forged
variant is a 403 ``csrf_rejected`` that changes nothing; the same request with a Bearer
token, or with the cookie from this server's own origin, succeeds."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from helpers import make_room

from livecast.keys import USERS

PASSWORD = "correct horse 1"
FOREIGN = "http://127.0.0.1:1"  # another port of the same host: the same SITE, another origin
JSON = "application/json"


@dataclass
class Op:
    """One state-changing route, and who may call it."""

    name: str
    method: str
    path: str
    body: dict[str, Any] | None
    who: str
    ok: int


@dataclass
class Account:
    name: str
    browser: aiohttp.ClientSession  # holds the session cookie, like a browser
    token: str

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def account(node: Any, name: str, role: str) -> Account:
    await node.node.app[USERS].create_user(name, PASSWORD, role=role)
    browser = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with browser.post(node.url("/api/v1/auth/login"), json={"username": name, "password": PASSWORD}) as r:
        assert r.status == 200 and "livecast_session" in r.headers["Set-Cookie"]
        token = (await r.json())["token"]
    return Account(name, browser, token)


@pytest.fixture
async def world(node: Any) -> Any:
    accounts = {role: await account(node, f"{role}_1", role) for role in ("streamer", "viewer", "admin")}
    room = await make_room(node)  # someone else's room: the viewer's gifts go there
    async with node.http.post(node.url("/api/v1/rooms"), json={"title": "Mine"},
                              headers=accounts["streamer"].bearer) as r:
        own = (await r.json())["room"]
    for i in range(10):  # ban targets
        await node.node.app[USERS].create_user(f"target{i}", PASSWORD, role="viewer")
    ops = [
        Op("create room", "POST", "/api/v1/rooms", {"title": "Forged"}, "streamer", 201),
        Op("rotate stream key", "POST", f"/api/v1/rooms/{own['slug']}/stream-key", None, "streamer", 200),
        Op("edit room", "PATCH", f"/api/v1/rooms/{own['slug']}", {"title": "Defaced"}, "streamer", 200),
        Op("gift", "POST", f"/api/v1/rooms/{room['slug']}/gifts", {"gift": "heart", "quantity": 1}, "viewer", 201),
        Op("ban", "POST", f"/api/v1/rooms/{own['slug']}/bans/target{{n}}", None, "streamer", 201),
        Op("admin coin grant", "POST", "/api/v1/admin/users/viewer_1/coins", {"amount": 1000}, "admin", 200),
        Op("logout", "POST", "/api/v1/auth/logout", None, "streamer", 204),
    ]
    yield accounts, ops
    for acc in accounts.values():
        await acc.browser.close()


def snapshot(node: Any) -> tuple[Any, ...]:
    with sqlite3.connect(node.settings.db_path, timeout=10) as db:
        return tuple(db.execute(q).fetchall() for q in (
            "SELECT slug, title, stream_key FROM rooms ORDER BY id",
            "SELECT username, coins FROM users ORDER BY id",
            "SELECT count(*) FROM chat_bans", "SELECT count(*) FROM gifts", "SELECT count(*) FROM sessions"))


def as_json_text(body: dict[str, Any] | None) -> str:
    # What <form enctype="text/plain"> can send: name=value, shaped to look like JSON.
    return '{"pad": "=", "x": 1}' if body is None else json.dumps(body)


FORGERIES: list[tuple[str, dict[str, str], str]] = [
    # (variant, headers, how the body is sent)
    ("text/plain form from another port", {"Origin": FOREIGN, "Content-Type": "text/plain"}, "text"),
    ("no Origin, JSON", {}, "json"),
    ("form content type from this origin", {"Content-Type": "application/x-www-form-urlencoded"}, "form"),
    ("Origin null (sandboxed page)", {"Origin": "null"}, "json"),
    ("other scheme, same host and port", {}, "json-https"),
    ("Sec-Fetch-Site same-site (a sibling port), no Origin", {"Sec-Fetch-Site": "same-site"}, "json"),
]


async def send(node: Any, http: aiohttp.ClientSession, op: Op, n: int, headers: dict[str, str],
               mode: str) -> tuple[int, Any]:
    headers = dict(headers)
    path = op.path.replace("{n}", str(n))
    kwargs: dict[str, Any] = {}
    if mode == "text":
        kwargs["data"] = as_json_text(op.body)
    elif mode == "form":
        headers.setdefault("Origin", node.base)
        kwargs["data"] = "title=Forged&amount=1000&gift=rocket"
    elif op.body is not None:
        kwargs["json"] = op.body
    if mode == "json-https":
        headers["Origin"] = node.base.replace("http://", "https://")
    async with http.request(op.method, node.url(path), headers=headers, **kwargs) as r:
        body = await r.json() if r.status != 204 else None
        return r.status, body


async def test_every_forged_variant_is_refused_and_changes_nothing(node: Any, world: Any) -> None:
    accounts, ops = world
    before = snapshot(node)
    for op in ops:
        for variant, headers, mode in FORGERIES:
            status, body = await send(node, accounts[op.who].browser, op, 0, headers, mode)
            assert status == 403, f"{op.name} / {variant}: {status} {body}"
            assert body["error"]["code"] == "csrf_rejected", (op.name, variant, body)
    assert snapshot(node) == before


async def test_bearer_requests_are_unaffected(node: Any, world: Any) -> None:
    accounts, ops = world
    for n, op in enumerate(ops):
        # The forgery's very shape (foreign Origin, text/plain) with a Bearer token: not CSRF.
        headers = {"Origin": FOREIGN, "Content-Type": "text/plain", **accounts[op.who].bearer}
        status, body = await send(node, accounts[op.who].browser, op, n, headers, "text")
        assert status == op.ok, f"{op.name}: {status} {body}"


async def test_same_origin_cookie_requests_succeed(node: Any, world: Any) -> None:
    accounts, ops = world
    for n, op in enumerate(ops):
        status, body = await send(node, accounts[op.who].browser, op, n, {"Origin": node.base}, "json")
        assert status == op.ok, f"{op.name}: {status} {body}"
    # Without Origin, the browser's own Sec-Fetch-Site: same-origin is enough.
    viewer = accounts["viewer"]
    status, _ = await send(node, viewer.browser, ops[3], 9, {"Sec-Fetch-Site": "same-origin"}, "json")
    assert status == 201
    # Safe methods and cookie-less requests are never checked.
    async with viewer.browser.get(node.url("/api/v1/me"), headers={"Origin": FOREIGN}) as r:
        assert r.status == 200
    async with node.http.post(node.url("/api/v1/auth/login"), data="{}",
                              headers={"Origin": FOREIGN, "Content-Type": "text/plain"}) as r:
        assert r.status == 400  # no cookie: the ordinary validation answer, not csrf_rejected


async def test_public_url_and_allowed_origins(node_factory: Any) -> None:
    node = await node_factory(server={"public_url": "https://live.example", "allowed_origins": ["https://app.example:8443"],
                                      "trusted_proxies": ["127.0.0.1"]})
    viewer = await account(node, "viewer_2", "viewer")
    try:
        async def login_with_cookie(headers: dict[str, str]) -> int:
            async with viewer.browser.post(node.url("/api/v1/auth/login"),
                                           json={"username": "viewer_2", "password": PASSWORD}, headers=headers) as r:
                return int(r.status)

        assert await login_with_cookie({"Origin": "https://live.example"}) == 200
        assert await login_with_cookie({"Origin": "https://live.example:443"}) == 200
        assert await login_with_cookie({"Origin": "https://app.example:8443"}) == 200
        assert await login_with_cookie({"Origin": "https://app.example"}) == 403
        assert await login_with_cookie({"Origin": "https://evil.example"}) == 403
        # Behind a trusted TLS proxy, the browser's origin is the proxy's scheme and host.
        proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "tv.example"}
        assert await login_with_cookie({"Origin": "https://tv.example", **proxied}) == 200
    finally:
        await viewer.browser.close()


async def test_forwarded_host_is_ignored_from_untrusted_peers(node: Any) -> None:
    viewer = await account(node, "viewer_3", "viewer")
    try:
        headers = {"Origin": "https://evil.example", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}
        async with viewer.browser.post(node.url("/api/v1/auth/logout"), headers=headers) as r:
            assert r.status == 403
    finally:
        await viewer.browser.close()
