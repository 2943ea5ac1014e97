"""Registration and login limits on a real node: per-address registration limit with
Retry-After, X-Forwarded-For believed only from trusted proxies, a taken name refused
before hashing, the bounded bcrypt pool (503 busy, logins before registrations), and
failed-login throttling that never locks a user out from another address."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from livecast.config import ConfigError, load_settings
from livecast.keys import USERS
from livecast.passwords import Priority

PASSWORD = "correct horse 1"
PROXY = {"trusted_proxies": ["127.0.0.1"]}


async def post(http: aiohttp.ClientSession, node: Any, path: str, body: dict[str, Any],
               headers: dict[str, str] | None = None) -> tuple[int, Any, aiohttp.ClientResponse]:
    async with http.post(node.url(path), json=body, headers=headers or {}) as r:
        return r.status, await r.json(), r


async def register(node: Any, name: str, via: str | None = None,
                   http: aiohttp.ClientSession | None = None) -> tuple[int, Any, aiohttp.ClientResponse]:
    headers = {"X-Forwarded-For": via} if via else None
    return await post(http or node.http, node, "/api/v1/auth/register",
                      {"username": name, "password": PASSWORD}, headers)


async def login(node: Any, name: str, password: str = PASSWORD, via: str | None = None,
                http: aiohttp.ClientSession | None = None) -> tuple[int, Any, aiohttp.ClientResponse]:
    headers = {"X-Forwarded-For": via} if via else None
    return await post(http or node.http, node, "/api/v1/auth/login",
                      {"username": name, "password": password}, headers)


def assert_limited(status: int, body: Any, r: aiohttp.ClientResponse, window: float) -> None:
    assert status == 429, body
    assert body["error"]["code"] == "rate_limited"
    assert 1 <= int(r.headers["Retry-After"]) <= window


# -- registration -------------------------------------------------------------------


async def test_registration_flood_from_one_address_is_limited(node_factory: Any) -> None:
    node = await node_factory(auth={"register_per_address": 3, "register_window_seconds": 600})
    for i in range(3):
        assert (await register(node, f"flood{i}"))[0] == 201
    # A malformed request is refused before it counts, and does not hide the limit.
    status, body, _ = await post(node.http, node, "/api/v1/auth/register", {"username": "x", "password": PASSWORD})
    assert status == 400 and body["error"]["field"] == "username"
    for i in range(3, 6):
        assert_limited(*await register(node, f"flood{i}"), window=600)
    assert await node.node.app[USERS].get_by_username("flood3") is None
    # Without a trusted proxy, X-Forwarded-For is the client's own claim and changes nothing.
    assert_limited(*await register(node, "flood9", via="203.0.113.9"), window=600)


async def test_trusted_proxy_addresses_are_limited_separately(node_factory: Any) -> None:
    node = await node_factory(server=PROXY, auth={"register_per_address": 2})
    for name in ("a_one", "a_two"):
        assert (await register(node, name, via="198.51.100.7"))[0] == 201
    assert_limited(*await register(node, "a_three", via="198.51.100.7"), window=600)
    # A client may prepend anything; the right-most untrusted hop (what the proxy saw) counts.
    assert_limited(*await register(node, "a_four", via="203.0.113.1, 198.51.100.7"), window=600)
    # Another client behind the same proxy is not affected, and the proxy's own address is
    # skipped when it appears in the chain (127.0.0.1 is trusted).
    assert (await register(node, "b_one", via="203.0.113.50, 127.0.0.1"))[0] == 201
    assert (await register(node, "c_one", via="2001:db8::1"))[0] == 201
    # An IPv6 client counts as its /64: rotating through it does not buy more attempts.
    assert (await register(node, "c_two", via="2001:db8::2:1"))[0] == 201
    assert_limited(*await register(node, "c_three", via="2001:db8::ffff:3"), window=600)
    assert (await register(node, "c_four", via="2001:db8:0:1::1"))[0] == 201  # the next /64
    # Garbage in the header: the last address a trusted proxy vouched for is the client.
    assert (await register(node, "d_one", via="not-an-ip"))[0] == 201
    assert (await register(node, "d_two"))[0] == 201
    assert_limited(*await register(node, "d_three", via="not-an-ip"), window=600)


@pytest.mark.slow
async def test_taken_name_is_refused_before_hashing(node_factory: Any) -> None:
    node = await node_factory(auth={"bcrypt_rounds": 13, "bcrypt_workers": 1, "bcrypt_queue": 1})
    pool = node.node.app[USERS].passwords
    assert (await register(node, "Taken"))[0] == 201
    hashes = pool.hashes
    for name in ("taken", "TAKEN"):
        status, body, _ = await register(node, name)
        assert status == 409 and body["error"]["code"] == "username_taken"
    assert pool.hashes == hashes, "a taken name cost a bcrypt hash"

    # Saturate the pool (one thread, one waiting place): the next new name is 503 busy,
    # while a taken name is still answered at once, before the running hashes finish.
    sessions = [aiohttp.ClientSession() for _ in range(2)]
    try:
        running = [asyncio.create_task(register(node, f"fresh{i}", http=s)) for i, s in enumerate(sessions)]
        while pool.hashes < hashes + 1 or pool.waiting(Priority.SIGNUP) < 1:
            await asyncio.sleep(0.005)
        status, body, r = await register(node, "fresh_refused")
        assert status == 503 and body["error"]["code"] == "busy"
        assert int(r.headers["Retry-After"]) >= 1
        status, body, _ = await register(node, "taken")
        assert status == 409
        assert not any(t.done() for t in running), "the taken name waited for the queued hashes"
        assert [s for s, _, _ in await asyncio.gather(*running)] == [201, 201]
    finally:
        for s in sessions:
            await s.close()
    assert pool.refused == 1
    # A refusal for load is not held against the address: it may register once the pool is free.
    assert (await register(node, "fresh_refused"))[0] == 201


@pytest.mark.slow
async def test_logins_go_before_queued_registrations(node_factory: Any) -> None:
    node = await node_factory(auth={"bcrypt_rounds": 13, "bcrypt_workers": 2})
    assert (await register(node, "regular"))[0] == 201
    loop = asyncio.get_running_loop()
    done: dict[str, float] = {}

    async def timed(name: str, call: Any) -> int:
        async with aiohttp.ClientSession() as http:
            status = (await call(http))[0]
        done[name] = loop.time()
        return int(status)

    flood = [asyncio.create_task(timed(f"reg{i}", lambda h, i=i: register(node, f"flooder{i}", http=h)))
             for i in range(4)]
    pool = node.node.app[USERS].passwords
    while pool.waiting(Priority.SIGNUP) < 3:  # one hashing, three waiting
        await asyncio.sleep(0.005)
    assert await timed("login", lambda h: login(node, "regular", http=h)) == 200
    assert await asyncio.gather(*flood) == [201] * 4
    registrations = sorted(v for k, v in done.items() if k.startswith("reg"))
    # Registrations hold one thread of two: the login ran at once on the other, and was
    # answered before the second registration (ordering, not a time budget).
    assert done["login"] < registrations[1]


# -- login throttling ------------------------------------------------------------------


async def test_wrong_passwords_from_one_address_do_not_block_another(node: Any) -> None:
    assert (await register(node, "admin_like"))[0] == 201
    limit = node.settings.auth.login_attempts_per_user
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))) as attacker:
        for _ in range(limit):
            assert (await login(node, "admin_like", "wrong password", http=attacker))[0] == 401
        # The attacker's address is throttled, even with the right password...
        assert_limited(*await login(node, "admin_like", http=attacker), window=node.settings.auth.login_window_seconds)
    # ...but the user, from their own address, logs in at once.
    status, body, _ = await login(node, "admin_like")
    assert status == 200 and body["user"]["username"] == "admin_like"


async def test_wrong_passwords_behind_a_trusted_proxy(node_factory: Any) -> None:
    node = await node_factory(server=PROXY, auth={"login_attempts_per_user": 3, "login_attempts_per_client": 6})
    assert (await register(node, "victim"))[0] == 201
    assert (await register(node, "other"))[0] == 201
    for _ in range(3):
        assert (await login(node, "victim", "wrong password", via="198.51.100.66"))[0] == 401
    assert (await login(node, "victim", via="198.51.100.66"))[0] == 429
    # The attacker may still try other names until the per-address limit...
    for _ in range(3):
        assert (await login(node, "other", "wrong password", via="198.51.100.66"))[0] == 401
    assert_limited(*await login(node, "nobody", "wrong password", via="198.51.100.66"), window=60)
    # ...while every other address logs in, as each of the two users.
    assert (await login(node, "victim", via="203.0.113.9"))[0] == 200
    assert (await login(node, "other", via="203.0.113.10"))[0] == 200
    assert (await login(node, "victim"))[0] == 200  # the proxy's own address, no header


async def test_login_requests_per_address_count_successes(node_factory: Any) -> None:
    node = await node_factory(auth={"login_requests_per_client": 4})
    assert (await register(node, "busy_bee"))[0] == 201
    for _ in range(4):
        assert (await login(node, "busy_bee"))[0] == 200
    assert_limited(*await login(node, "busy_bee"), window=60)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))) as elsewhere:
        assert (await login(node, "busy_bee", http=elsewhere))[0] == 200


# -- settings -----------------------------------------------------------------------------


def test_proxy_and_origin_settings_are_checked() -> None:
    settings = load_settings(None, environ={"LIVECAST_SERVER_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1,::1"})
    assert settings.server.trusted_proxies == ["10.0.0.0/8", "192.0.2.1", "::1"]
    for section, values in [("server", {"trusted_proxies": ["10.0.0.300"]}),
                            ("server", {"trusted_proxies": ["proxy.example"]}),
                            ("server", {"allowed_origins": ["https://app.example/path"]}),
                            ("server", {"allowed_origins": ["app.example"]}),
                            ("auth", {"bcrypt_workers": 0}), ("auth", {"bcrypt_queue": 0}),
                            ("auth", {"register_per_address": 0}), ("tls", {"hsts_max_age": -1})]:
        with pytest.raises(ConfigError):
            load_settings(None, environ={}, overrides={section: values})
