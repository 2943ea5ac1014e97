"""Auth limits and CSRF through an edge, with origin and edge as separate ``livecast serve``
processes: the edge checks CSRF against its own host (the origin trusts that for requests
with the cluster secret), and passes on the client's address as its trusted proxy saw it."""

from __future__ import annotations

from typing import Any

import aiohttp

PASSWORD = "correct horse 1"


async def test_csrf_and_client_address_through_an_edge(cluster: Any) -> None:
    origin = await cluster.node("origin", auth={"register_per_address": 2})
    edge = await cluster.node("edge", role="edge", origin=origin, server={"trusted_proxies": ["127.0.0.1"]})

    async def register(name: str, client: str) -> int:
        async with edge.http.post(edge.url("/api/v1/auth/register"), json={"username": name, "password": PASSWORD},
                                  headers={"X-Forwarded-For": client}) as r:
            await r.read()
            return int(r.status)

    # The origin counts registrations per viewer address, as the edge's trusted proxy saw it.
    assert [await register(f"one{i}", "198.51.100.1") for i in range(3)] == [201, 201, 429]
    assert await register("two0", "198.51.100.2") == 201

    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.post(edge.url("/api/v1/auth/login"), json={"username": "one0", "password": PASSWORD}) as r:
            assert r.status == 200

        async def create(origin_header: str | None, url: str = edge.base) -> tuple[int, Any]:
            headers = {"Origin": origin_header} if origin_header else {}
            async with browser.post(url + "/api/v1/rooms", json={"title": "Via edge"}, headers=headers) as r:
                return r.status, await r.json()

        # The edge's own origin passes (the origin, whose host differs, does not check again).
        status, body = await create(edge.base)
        assert status == 201, body
        # Another origin, or none, is refused at the edge.
        for forged in (origin.base, "http://127.0.0.1:1", None):
            status, body = await create(forged)
            assert status == 403 and body["error"]["code"] == "csrf_rejected", (forged, body)
        # Straight at the origin, the edge's origin is foreign; a made-up cluster header does not help.
        status, body = await create(edge.base, url=origin.base)
        assert status == 403 and body["error"]["code"] == "csrf_rejected"
        async with browser.post(origin.url("/api/v1/rooms"), json={"title": "x"},
                                headers={"Origin": edge.base, "X-Livecast-Cluster": "guess"}) as r:
            assert r.status == 403
