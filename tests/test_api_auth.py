"""Accounts and sessions over HTTP on a real node: register, login, me, logout,
cookies, expiry, rate limits, concurrent registrations, bcrypt off the event loop."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from dbsql import sql
from helpers import wait_for

from livecast.core.ratelimit import RateLimiter

PASSWORD = "correct horse 1"


async def register(node: Any, username: str, password: str = PASSWORD, **extra: Any) -> aiohttp.ClientResponse:
    async with node.http.post(node.url("/api/v1/auth/register"),
                              json={"username": username, "password": password, **extra}) as r:
        await r.read()
        response: aiohttp.ClientResponse = r
        return response


async def login(http: aiohttp.ClientSession, node: Any, username: str, password: str = PASSWORD) -> tuple[int, Any]:
    async with http.post(node.url("/api/v1/auth/login"), json={"username": username, "password": password}) as r:
        return r.status, await r.json()


async def me(http: aiohttp.ClientSession, node: Any, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.get(node.url("/api/v1/me"), headers=headers) as r:
        body = await r.json()
        if r.status != 200:
            assert "error" in body
        return r.status


async def test_round_trip_with_bearer(node: Any) -> None:
    r = await register(node, "alice", email="alice@example.com")
    assert r.status == 201
    async with node.http.post(node.url("/api/v1/auth/register"),
                              json={"username": "bob", "password": PASSWORD}) as r:
        user = (await r.json())["user"]
    assert set(user) == {"id", "username", "role", "coins", "created_at", "email"}
    assert user["role"] == node.settings.auth.default_role
    assert user["coins"] == node.settings.auth.signup_coins

    status, body = await login(node.http, node, "alice")
    assert status == 200
    token = body["token"]
    assert len(token) >= 43 and body["user"]["username"] == "alice"
    assert "password" not in str(body) and "hash" not in str(body)
    node.http.cookie_jar.clear()

    headers = {"Authorization": f"Bearer {token}"}
    async with node.http.get(node.url("/api/v1/me"), headers=headers) as r:
        assert r.status == 200
        assert (await r.json())["user"]["email"] == "alice@example.com"
    async with node.http.post(node.url("/api/v1/auth/logout"), headers=headers) as r:
        assert r.status == 204
    assert await me(node.http, node, token) == 401
    async with node.http.post(node.url("/api/v1/auth/logout"), headers=headers) as r:
        assert r.status == 401
        assert (await r.json())["error"]["code"] == "unauthorized"


async def test_round_trip_with_cookie(node: Any) -> None:
    assert (await register(node, "carol")).status == 201
    # A browser sends its page's Origin with every POST (the CSRF check needs it).
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar, headers={"Origin": node.base}) as browser:
        async with browser.post(node.url("/api/v1/auth/login"), json={"username": "carol", "password": PASSWORD}) as r:
            assert r.status == 200
            token = (await r.json())["token"]
            cookie = r.headers["Set-Cookie"]
        assert cookie.startswith(f"livecast_session={token};")
        attrs = {a.strip().split("=")[0].lower(): a.strip() for a in cookie.split(";")[1:]}
        assert "httponly" in attrs and "secure" not in attrs
        assert attrs["samesite"] == "SameSite=Lax" and attrs["path"] == "Path=/"
        assert attrs["max-age"] == f"Max-Age={int(node.settings.auth.session_ttl_hours * 3600)}"

        assert await me(browser, node) == 200
        async with browser.post(node.url("/api/v1/auth/logout")) as r:
            assert r.status == 204
            assert "livecast_session=" in r.headers["Set-Cookie"]
        assert await me(browser, node) == 401
        async with browser.post(node.url("/api/v1/auth/logout")) as r:
            assert r.status == 401
    # The cookie's token was revoked on the server, not only forgotten by the browser.
    assert await me(node.http, node, token) == 401


async def test_bearer_wins_over_cookie(node: Any) -> None:
    await register(node, "dave")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        status, _ = await login(browser, node, "dave")
        assert status == 200
        assert await me(browser, node) == 200
        assert await me(browser, node, "x" * 43) == 401  # an explicit bad Bearer is not rescued by the cookie


async def test_secure_cookie_when_configured(node_factory: Any) -> None:
    node = await node_factory(auth={"cookie_secure": True})
    await register(node, "erin")
    async with node.http.post(node.url("/api/v1/auth/login"), json={"username": "erin", "password": PASSWORD}) as r:
        assert "Secure" in r.headers["Set-Cookie"]


async def test_bad_credentials_look_the_same(node: Any) -> None:
    await register(node, "frank")
    s1, b1 = await login(node.http, node, "frank", "wrong password")
    s2, b2 = await login(node.http, node, "nobody", "wrong password")
    s3, b3 = await login(node.http, node, "no such name!", "wrong password")
    assert s1 == s2 == s3 == 401
    assert b1 == b2 == b3
    assert b1["error"]["code"] == "invalid_credentials"


async def test_login_is_case_insensitive(node: Any) -> None:
    await register(node, "Grace")
    status, body = await login(node.http, node, "GRACE")
    assert status == 200 and body["user"]["username"] == "Grace"


async def test_garbage_tokens_are_401(node: Any) -> None:
    for token in ["short", "x" * 43, "ü" * 43, "a b c d e f g h i j k l m n o p q r s t", "%00" * 20]:
        assert await me(node.http, node, token) == 401
    async with node.http.get(node.url("/api/v1/me"), headers={"Authorization": "Basic Zm9vOmJhcg=="}) as r:
        assert r.status == 401


async def test_expired_token_is_401(node: Any) -> None:
    await register(node, "heidi")
    _, body = await login(node.http, node, "heidi")
    token = body["token"]
    assert await me(node.http, node, token) == 200
    await sql(node.settings, "UPDATE sessions SET expires_at = ?", time.time() - 1)
    assert await me(node.http, node, token) == 401


async def test_short_ttl_expires_for_real(node_factory: Any) -> None:
    node = await node_factory(auth={"session_ttl_hours": 0.0002})  # 0.72 s
    await register(node, "ivan")
    _, body = await login(node.http, node, "ivan")
    assert await me(node.http, node, body["token"]) == 200

    async def expired() -> bool:
        return await me(node.http, node, body["token"]) == 401

    await wait_for(expired, what="the session expiring")
    assert await me(node.http, node, body["token"]) == 401


async def test_per_user_rate_limit(node: Any) -> None:
    await register(node, "judy")
    limit = node.settings.auth.login_attempts_per_user
    for _ in range(limit):
        assert (await login(node.http, node, "judy", "wrong password"))[0] == 401
    async with node.http.post(node.url("/api/v1/auth/login"), json={"username": "JUDY", "password": PASSWORD}) as r:
        assert r.status == 429
        assert 1 <= int(r.headers["Retry-After"]) <= node.settings.auth.login_window_seconds
        assert (await r.json())["error"]["code"] == "rate_limited"
    await register(node, "mallory")
    assert (await login(node.http, node, "mallory"))[0] == 200  # other accounts are unaffected


async def test_per_client_rate_limit(node: Any) -> None:
    limit = node.settings.auth.login_attempts_per_client
    for i in range(limit):
        assert (await login(node.http, node, f"ghost{i}", "wrong password"))[0] == 401
    status, body = await login(node.http, node, "ghost_new", "wrong password")
    assert status == 429 and body["error"]["code"] == "rate_limited"


async def test_successful_logins_are_not_counted(node: Any) -> None:
    await register(node, "oscar")
    for _ in range(node.settings.auth.login_attempts_per_client + 2):
        assert (await login(node.http, node, "oscar"))[0] == 200


@pytest.mark.parametrize("first,second", [("peggy", "peggy"), ("Trent", "trent")])
async def test_concurrent_registration_of_one_name(node: Any, first: str, second: str) -> None:
    for round_ in range(3):
        a, b = f"{first}{round_}", f"{second}{round_}"
        r1, r2 = await asyncio.gather(register(node, a), register(node, b))
        assert sorted([r1.status, r2.status]) == [201, 409]
    async with node.http.post(node.url("/api/v1/auth/register"),
                              json={"username": first.upper() + "0", "password": PASSWORD}) as r:
        body = await r.json()
        assert r.status == 409
        assert body["error"] == {"code": "username_taken", "message": "username is already taken",
                                 "field": "username"}


@pytest.mark.slow
async def test_bcrypt_runs_off_the_event_loop(node_factory: Any) -> None:
    node = await node_factory(auth={"bcrypt_rounds": 12, "login_attempts_per_user": 100,
                                    "login_attempts_per_client": 100})
    assert (await register(node, "victor")).status == 201
    loop = asyncio.get_running_loop()
    finished: list[float] = []
    sent: set[int] = set()

    async def body_sent(session: aiohttp.ClientSession, context: Any, params: Any) -> None:
        sent.add(id(context))

    trace = aiohttp.TraceConfig()
    trace.on_request_chunk_sent.append(body_sent)

    async def one_login() -> None:
        async with aiohttp.ClientSession(trace_configs=[trace]) as http:
            status, _ = await login(http, node, "victor")
        assert status == 200
        finished.append(loop.time())

    logins = [asyncio.create_task(one_login()) for _ in range(20)]
    await wait_for(lambda: len(sent) == 20, what="the 20 logins sent")  # now hashing on the server
    async with node.http.get(node.url("/healthz")) as r:
        assert r.status == 200
    health_done = loop.time()
    await asyncio.gather(*logins)
    # Ordering, not a time budget: the GET was answered before ANY of the 20 logins.
    assert len(finished) == 20 and health_done < min(finished), "healthz waited for a login"


# -- the limiter itself, with a fake clock --------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_window_and_retry_after() -> None:
    clock = FakeClock()
    limiter = RateLimiter(3, 10.0, clock=clock)
    assert [limiter.hit("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.hit("a") == pytest.approx(10.0)
    clock.now += 4
    assert limiter.hit("a") == pytest.approx(6.0)  # refused hits do not move the window
    assert limiter.hit("b") == 0.0
    clock.now += 6
    assert limiter.hit("a") == 0.0
    limiter.refund("a")
    assert limiter.retry_after("a") == 0.0


def test_rate_limiter_memory_is_bounded() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2, 5.0, max_keys=100, clock=clock)
    for i in range(1000):
        limiter.hit(f"k{i}")
        clock.now += 0.001
    assert len(limiter) == 100
    clock.now += 10  # everything has left the window: expired keys go first
    limiter.hit("fresh")
    assert len(limiter) == 1
