"""Small helpers shared by tests that need accounts and rooms on a running node."""

from __future__ import annotations

import asyncio
import itertools
import re
import inspect
import time
from collections.abc import Callable
from typing import Any


_names = itertools.count(1)


async def register_and_login(node: Any, username: str | None = None,
                             password: str = "correct horse 1") -> dict[str, Any]:
    """Register (default role) and log in; returns {"token", "user", "headers"}."""
    username = username or f"user{next(_names)}"
    account = {"username": username, "password": password}
    async with node.http.post(node.url("/api/v1/auth/register"), json=account) as r:
        assert r.status == 201, await r.text()
    async with node.http.post(node.url("/api/v1/auth/login"), json={"username": username, "password": password}) as r:
        assert r.status == 200, await r.text()
        body = await r.json()
    node.http.cookie_jar.clear()
    return {"token": body["token"], "user": body["user"], "headers": {"Authorization": f"Bearer {body['token']}"}}


async def make_room(node: Any, title: str = "Test room") -> dict[str, Any]:
    """A new streamer with one room; returns the room JSON (with stream_key) plus "headers"."""
    who = await register_and_login(node)
    async with node.http.post(node.url("/api/v1/rooms"), json={"title": title}, headers=who["headers"]) as r:
        assert r.status == 201, await r.text()
        room = (await r.json())["room"]
    room["headers"] = who["headers"]
    return room


def rtmp_url(node: Any, key: str) -> str:
    return f"rtmp://127.0.0.1:{node.rtmp_port}/live/{key}"


async def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition",
                   interval: float = 0.02) -> Any:
    """Wait on a condition instead of sleeping a fixed time: call ``condition`` (plain or
    async) until it returns something truthy and return that; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not met within {timeout}s (last: {result!r})")
        await asyncio.sleep(interval)


async def get_playlist(node: Any, slug: str) -> tuple[int, str]:
    async with node.http.get(node.url(f"/hls/{slug}/index.m3u8")) as r:
        return r.status, await r.text()


async def wait_playlist(node: Any, slug: str, predicate: Any, timeout: float = 20.0) -> str:
    """Poll the playlist until ``predicate(text)`` holds (bounded)."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        status, text = await get_playlist(node, slug)
        if status == 200 and predicate(text):
            return text
        await asyncio.sleep(0.1)
    raise AssertionError(f"playlist condition not met within {timeout}s; last:\n{text}")


def media_sequence(playlist: str) -> int:
    m = re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", playlist)
    assert m, playlist
    return int(m.group(1))


def segment_uris(playlist: str) -> list[str]:
    return [line for line in playlist.splitlines() if line and not line.startswith("#")]


async def room_json(node: Any, slug: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    async with node.http.get(node.url(f"/api/v1/rooms/{slug}"), headers=headers or {}) as r:
        assert r.status == 200, await r.text()
        return (await r.json())["room"]


