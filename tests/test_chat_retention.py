"""Comment retention on a real node: the per-room cap and the age limit prune the oldest
comments, in the background, while the chat goes on."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from dbsql import sql
from helpers import make_room
from test_chat_support import TIMEOUT, connect, post

from livecast.chat.ws import CHAT

FAST = {"prune_interval": 0.2, "rate_count": 1000}


async def history(node: Any, slug: str) -> list[str]:
    ws, hello = await connect(node, slug)
    await ws.close()
    return [c["text"] for c in hello["history"]]


async def wait_history(node: Any, slug: str, expected: list[str]) -> None:
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while (seen := await history(node, slug)) != expected:
        assert asyncio.get_running_loop().time() < deadline, seen
        await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_the_cap_prunes_the_oldest_comments_of_each_room(node_factory: Any) -> None:
    node = await node_factory(chat={**FAST, "max_comments_per_room": 5})
    busy, quiet = await make_room(node), await make_room(node, "Quiet")
    ws, _ = await connect(node, busy["slug"], busy)
    for i in range(12):
        await post(ws, f"busy {i}")
    other, _ = await connect(node, quiet["slug"], quiet)
    for i in range(3):
        await post(other, f"quiet {i}")
    await wait_history(node, busy["slug"], [f"busy {i}" for i in range(7, 12)])
    assert await history(node, quiet["slug"]) == ["quiet 0", "quiet 1", "quiet 2"]
    assert await sql(node.settings, "SELECT COUNT(*) FROM comments") == [(8,)]
    await post(ws, "busy 12")  # posting goes on, and the cap keeps up
    await wait_history(node, busy["slug"], [f"busy {i}" for i in range(8, 13)])
    for sock in (ws, other):
        await sock.close()


async def test_expired_comments_are_deleted(node_factory: Any) -> None:
    node = await node_factory(chat={**FAST, "comment_retention_days": 1})
    room = await make_room(node)
    slug = room["slug"]
    ws, _ = await connect(node, slug, room)
    ids = [(await post(ws, f"c{i}"))["id"] for i in range(4)]
    # two of them were written two days ago
    await sql(node.settings, "UPDATE comments SET created_at = '2000-01-01T00:00:00.000Z' WHERE id IN (?, ?)",
              *ids[:2])
    await wait_history(node, slug, ["c2", "c3"])
    await ws.close()


@pytest.mark.slow
async def test_a_lower_cap_applies_to_existing_rooms_at_start(node_factory: Any, tmp_path: Any) -> None:
    node = await node_factory(tmp_path / "d", chat={**FAST, "max_comments_per_room": 0, "comment_retention_days": 0})
    room = await make_room(node)
    ws, _ = await connect(node, room["slug"], room)
    for i in range(6):
        await post(ws, f"c{i}")
    await ws.close()
    assert await node.node.app[CHAT].prune_now() == 0  # no cap, no retention: a prune pass deletes nothing
    assert await history(node, room["slug"]) == [f"c{i}" for i in range(6)]
    await node.stop()
    node = await node_factory(tmp_path / "d", chat={**FAST, "max_comments_per_room": 2})
    await wait_history(node, room["slug"], ["c4", "c5"])
