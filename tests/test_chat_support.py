"""Helpers shared by the chat tests (this module holds no tests itself)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp

from livecast.keys import USERS

TIMEOUT = 10.0


def chat_url(node: Any, slug: str) -> str:
    return node.url(f"/api/v1/rooms/{slug}/chat")


async def connect(node: Any, slug: str, who: dict[str, Any] | None = None,
                  session: aiohttp.ClientSession | None = None, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """Open a chat socket (as ``who`` if given) and read its hello frame."""
    http = session or node.http
    headers = dict(who["headers"]) if who else {}
    ws = await http.ws_connect(chat_url(node, slug), headers=headers, **kwargs)
    hello = await asyncio.wait_for(ws.receive_json(), TIMEOUT)
    assert hello["type"] == "hello", hello
    return ws, hello


async def next_frame(ws: Any, kind: str | None = None, pred: Callable[[dict[str, Any]], bool] | None = None,
                     timeout: float = TIMEOUT) -> dict[str, Any]:
    """The next frame of type ``kind`` (and matching ``pred``); other frames are skipped."""
    async def read() -> dict[str, Any]:
        while True:
            msg = await ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise AssertionError(f"socket ended while waiting for {kind}: {msg}")
            frame = msg.json()
            if (kind is None or frame["type"] == kind) and (pred is None or pred(frame)):
                return frame

    return await asyncio.wait_for(read(), timeout)


async def error_code(ws: Any) -> str:
    return (await next_frame(ws, "error"))["code"]


async def post(ws: Any, text: str) -> dict[str, Any]:
    """Send a comment and wait for it to come back (the acknowledgement)."""
    await ws.send_json({"type": "comment", "text": text})
    return await next_frame(ws, "comment", lambda f: f["text"] == text)


async def make_admin(node: Any, username: str = "admin1") -> dict[str, Any]:
    await node.node.app[USERS].create_user(username, "correct horse 1", role="admin")
    async with node.http.post(node.url("/api/v1/auth/login"),
                              json={"username": username, "password": "correct horse 1"}) as r:
        assert r.status == 200, await r.text()
        body = await r.json()
    node.http.cookie_jar.clear()
    return {"token": body["token"], "user": body["user"], "headers": {"Authorization": f"Bearer {body['token']}"}}


async def coins(node: Any, who: dict[str, Any]) -> int:
    async with node.http.get(node.url("/api/v1/me"), headers=who["headers"]) as r:
        assert r.status == 200, await r.text()
        return int((await r.json())["user"]["coins"])


__all__ = ["TIMEOUT", "chat_url", "coins", "connect", "error_code", "make_admin", "next_frame", "post"]
