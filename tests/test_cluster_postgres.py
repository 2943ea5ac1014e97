"""Two origins as separate OS processes sharing one real PostgreSQL: migrations when both
start at once, and the writes that once relied on SQLite's single writer (unique names,
the coin ledger, slug allocation, key rotation) racing across the two machines, sent
straight to the origins and through an edge in front of each."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import aiohttp
from pg import PgCluster

from livecast.storage.migrations import LATEST

PASSWORD = "cluster pg pw 1"
SIGNUP_COINS = 37
ROSE = 5  # the default catalog's rose


async def register(node: Any, name: str) -> int:
    async with node.http.post(node.url("/api/v1/auth/register"), json={"username": name, "password": PASSWORD}) as r:
        return r.status


async def login(node: Any, name: str) -> dict[str, str]:
    async with node.http.post(node.url("/api/v1/auth/login"), json={"username": name, "password": PASSWORD}) as r:
        assert r.status == 200, await r.text()
        token = (await r.json())["token"]
    node.http.cookie_jar.clear()
    return {"Authorization": f"Bearer {token}"}


async def me(node: Any, headers: dict[str, str]) -> dict[str, Any]:
    async with node.http.get(node.url("/api/v1/me"), headers=headers) as r:
        assert r.status == 200, await r.text()
        return dict((await r.json())["user"])


async def gift_race(one: Any, two: Any, slug: str, fan: dict[str, str], streamer: dict[str, str]) -> None:
    """100 roses from ``fan`` to ``slug`` at once, alternating between two nodes: exactly
    balance // price succeed, the rest are refused for want of coins, and coins are conserved."""

    async def gift(node: Any, http: aiohttp.ClientSession) -> int:
        async with http.post(node.url(f"/api/v1/rooms/{slug}/gifts"), json={"gift": "rose"}, headers=fan) as r:
            if r.status == 409:
                assert (await r.json())["error"]["code"] == "insufficient_coins"
            return r.status

    async with aiohttp.ClientSession() as http:
        results = Counter(await asyncio.gather(*(gift(one if i % 2 else two, http) for i in range(100))))
    assert results == Counter({201: SIGNUP_COINS // ROSE, 409: 100 - SIGNUP_COINS // ROSE}), results
    fan_coins, streamer_coins = (await me(one, fan))["coins"], (await me(two, streamer))["coins"]
    assert fan_coins == SIGNUP_COINS % ROSE
    assert fan_coins + streamer_coins == 2 * SIGNUP_COINS  # conserved


async def two_origins(cluster: Any, pg_server: PgCluster) -> tuple[Any, Any, str]:
    """Origins A and B started at the same moment on a fresh database (both migrate)."""
    url = pg_server.url(await pg_server.create_database("two"))
    sections = {"database": {"url": url}, "auth": {"signup_coins": SIGNUP_COINS}}
    a, b = await asyncio.gather(cluster.node("a", **sections), cluster.node("b", **sections))
    return a, b, url


async def test_two_origins_share_postgresql_without_races(cluster: Any, pg_server: PgCluster) -> None:
    a, b, url = await two_origins(cluster, pg_server)
    conn = await pg_server.connect(url.rsplit("/", 1)[-1])
    try:
        versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_version ORDER BY version")]
    finally:
        await conn.close()
    assert versions == list(range(1, LATEST + 1))  # each migration applied once, by one origin

    # One name registered on both origins at the same moment: one 201, one 409.
    for i in range(5):
        statuses = sorted(await asyncio.gather(register(a, f"same{i}"), register(b, f"SAME{i}")))
        assert statuses == [201, 409], statuses

    # A session made on A works on B (one database).
    assert await register(a, "streamer") == 201 and await register(b, "fan") == 201
    streamer, fan = await login(a, "streamer"), await login(b, "fan")
    assert (await me(b, streamer))["username"] == "streamer"
    async with a.http.post(a.url("/api/v1/rooms"), json={"title": "Shared"}, headers=streamer) as r:
        assert r.status == 201, await r.text()
        slug = (await r.json())["room"]["slug"]

    # 100 gifts from one account, split between the origins: exactly balance // price succeed.
    await gift_race(a, b, slug, fan, streamer)
    async with b.http.get(b.url(f"/api/v1/rooms/{slug}/gifts/leaderboard")) as r:
        board = (await r.json())["leaderboard"]
    assert board == [{"user": {"username": "fan"}, "value": ROSE * (SIGNUP_COINS // ROSE),
                      "gifts": SIGNUP_COINS // ROSE}]

    # One title, two owners, two origins, one moment: two rooms with different slugs.
    owners = [streamer, fan]

    async def create(node: Any, who: dict[str, str]) -> str:
        async with node.http.post(node.url("/api/v1/rooms"), json={"title": "Race Room"}, headers=who) as r:
            assert r.status == 201, await r.text()
            return str((await r.json())["room"]["slug"])

    for _ in range(3):
        slugs = await asyncio.gather(create(a, owners[0]), create(b, owners[1]))
        assert len(set(slugs)) == 2, slugs

    # A key rotated on both origins at once: the room keeps exactly one of the new keys.
    async def rotate(node: Any) -> str:
        async with node.http.post(node.url(f"/api/v1/rooms/{slug}/stream-key"), headers=streamer) as r:
            assert r.status == 200, await r.text()
            return str((await r.json())["stream_key"])

    keys = await asyncio.gather(rotate(a), rotate(b))
    async with a.http.get(a.url(f"/api/v1/rooms/{slug}"), headers=streamer) as r:
        assert (await r.json())["room"]["stream_key"] in keys
    for node in (a, b):
        assert "pg-secret-pw" not in node.log_text()  # the URL's password never reaches a log


async def test_gift_and_registration_races_through_edges(cluster: Any, pg_server: PgCluster) -> None:
    """The same races sent through edges: E1 in front of A, E2 in front of B."""
    a, b, _ = await two_origins(cluster, pg_server)
    e1, e2 = await asyncio.gather(cluster.node("e1", role="edge", origin=a), cluster.node("e2", role="edge", origin=b))
    for i in range(3):
        statuses = sorted(await asyncio.gather(register(e1, f"edgy{i}"), register(e2, f"Edgy{i}")))
        assert statuses == [201, 409], statuses
    assert await register(e1, "edgestreamer") == 201 and await register(e2, "edgefan") == 201
    streamer, fan = await login(e1, "edgestreamer"), await login(e2, "edgefan")
    async with e2.http.post(e2.url("/api/v1/rooms"), json={"title": "Edged"}, headers=streamer) as r:
        assert r.status == 201, await r.text()
        slug = (await r.json())["room"]["slug"]

    await gift_race(e1, e2, slug, fan, streamer)
