"""Rooms over HTTP on a real node: slugs, ordering, live-data extras, stream keys,
events, and persistence across a restart."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from dbsql import sql

from livecast.core.events import RoomDeleted, StreamKeyRotated
from livecast.keys import BOUND_PORTS, EVENTS, ROOM_EXTRAS, ROOMS, USERS
from livecast.rooms import SLUG_RE, slugify

PASSWORD = "rooms test pw"


async def account(node: Any, username: str, role: str = "streamer") -> dict[str, str]:
    await node.node.app[USERS].create_user(username, PASSWORD, role=role)
    async with node.http.post(node.url("/api/v1/auth/login"), json={"username": username, "password": PASSWORD}) as r:
        assert r.status == 200
        token = (await r.json())["token"]
    node.http.cookie_jar.clear()
    return {"Authorization": f"Bearer {token}"}


async def create(node: Any, headers: dict[str, str], **body: Any) -> tuple[int, Any]:
    async with node.http.post(node.url("/api/v1/rooms"), json=body, headers=headers) as r:
        return r.status, await r.json()


async def get(node: Any, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with node.http.get(node.url(path), headers=headers or {}) as r:
        return r.status, await r.json()


def test_slugify() -> None:
    assert slugify("My Show") == "my-show"
    assert slugify("  Café -- Live!!  ") == "cafe-live"
    assert slugify("!!!") == "room"
    assert slugify("TV") == "tv-room"
    assert slugify("日本語") == "room"
    long = slugify("word " * 40)
    assert len(long) <= 40 and SLUG_RE.fullmatch(long) and not long.endswith("-")


async def test_create_returns_owner_view(node: Any) -> None:
    h = await account(node, "sam")
    status, body = await create(node, h, title="  Sam's Show  ", description="hello\nworld")
    assert status == 201
    room = body["room"]
    port = node.node.app[BOUND_PORTS].get("rtmp") or node.settings.server.rtmp_port
    assert room["slug"] == "sam-s-show" and room["title"] == "Sam's Show"
    assert room["description"] == "hello\nworld"
    assert room["owner"] == {"username": "sam"}
    assert room["live"] is False and room["viewers"] == 0
    assert room["hls_url"] == "/hls/sam-s-show/index.m3u8"
    assert room["rtmp_url"] == f"rtmp://127.0.0.1:{port}/live"
    key = room["stream_key"]
    assert key.startswith("lc_") and len(key) >= 3 + 32
    stored = (await sql(node.settings, "SELECT stream_key, stream_key_hash FROM rooms"))[0]
    assert stored == (key, hashlib.sha256(key.encode()).hexdigest())


async def test_rtmp_url_uses_the_request_host(node: Any) -> None:
    h = await account(node, "host")
    await create(node, h, title="Host", slug="host-room")
    port = node.node.app[BOUND_PORTS].get("rtmp") or node.settings.server.rtmp_port
    for host_header, expected in [("stream.example.com:8080", "stream.example.com"),
                                  ("stream.example.com", "stream.example.com"),
                                  ("[::1]:8080", "[::1]"),
                                  ("evil/x?y", "127.0.0.1")]:
        _, body = await get(node, "/api/v1/rooms/host-room", {**h, "Host": host_header})
        assert body["room"]["rtmp_url"] == f"rtmp://{expected}:{port}/live", host_header


async def test_derived_slugs_are_unique(node: Any) -> None:
    h = await account(node, "una")
    slugs = [(await create(node, h, title="My Show"))[1]["room"]["slug"] for _ in range(3)]
    assert slugs == ["my-show", "my-show-2", "my-show-3"]
    long_title = "x" * 100
    long_slugs = [(await create(node, h, title=long_title))[1]["room"]["slug"] for _ in range(3)]
    assert len(set(long_slugs)) == 3 and all(SLUG_RE.fullmatch(s) for s in long_slugs)
    assert (await create(node, h, title="TV"))[1]["room"]["slug"] == "tv-room"
    assert (await create(node, h, title="!!"))[1]["room"]["slug"] == "room"


async def test_concurrent_creates_get_distinct_slugs(node: Any) -> None:
    h = await account(node, "race")
    results = await asyncio.gather(*(create(node, h, title="Same Title") for _ in range(6)))
    slugs = sorted(body["room"]["slug"] for status, body in results if status == 201)
    assert slugs == sorted(["same-title"] + [f"same-title-{n}" for n in range(2, 7)])


async def test_given_slug(node: Any) -> None:
    h = await account(node, "vera")
    assert (await create(node, h, title="A", slug="my-slug"))[1]["room"]["slug"] == "my-slug"
    status, body = await create(node, h, title="B", slug="my-slug")
    assert status == 409 and body["error"]["code"] == "slug_taken" and body["error"]["field"] == "slug"
    for bad in ["My-Slug", "ab", "a" * 41, "with space", "ünï", 42, ["x"]]:
        status, body = await create(node, h, title="C", slug=bad)
        assert status == 400 and body["error"]["field"] == "slug", bad
    # a derived slug skips a taken one
    assert (await create(node, h, title="My Slug"))[1]["room"]["slug"] == "my-slug-2"


async def test_unknown_room_is_404_json(node: Any) -> None:
    for path in ["/api/v1/rooms/nope", "/api/v1/rooms/NOPE", "/api/v1/rooms/%00%ff", "/api/v1/rooms/a"]:
        status, body = await get(node, path)
        assert status == 404 and body["error"]["code"] in ("room_not_found", "not_found"), path


async def test_list_live_first_then_newest(node: Any) -> None:
    h = await account(node, "walt")
    for slug in ("first", "second", "third"):
        await create(node, h, title=slug.title(), slug=slug)
    _, body = await get(node, "/api/v1/rooms")
    assert [r["slug"] for r in body["rooms"]] == ["third", "second", "first"]
    # the stored live flag, as the ingest sets it
    rooms = node.node.app[ROOMS]
    assert await rooms.set_live("first", True)
    assert (await rooms.require("first")).started_at is not None
    assert [r.slug for r in await rooms.list()] == ["first", "third", "second"]
    await rooms.set_live("first", False)
    assert (await rooms.require("first")).started_at is None
    assert [r.slug for r in await rooms.list()] == ["third", "second", "first"]
    assert not await rooms.set_live("no-such-room", True)
    # the API orders by "live" as the room extras (the ingest's hub) report it
    extras = node.node.app[ROOM_EXTRAS]

    def live_data(slug: str) -> dict[str, Any]:
        return {"live": slug == "second"}

    unregister = extras.register(live_data)
    try:
        _, body = await get(node, "/api/v1/rooms")
    finally:
        unregister()
    assert [(r["slug"], r["live"]) for r in body["rooms"]] == [("second", True), ("third", False), ("first", False)]


async def test_room_extras_are_merged(node: Any) -> None:
    h = await account(node, "xena")
    for slug in ("quiet", "busy"):
        await create(node, h, title=slug, slug=slug)
    extras = node.node.app[ROOM_EXTRAS]

    def live_data(slug: str) -> dict[str, Any]:
        if slug != "quiet":
            return {"live": False, "stream": None}
        return {"live": True, "viewers": 7, "stream": {"video": "h264"}, "stream_key": "leak", "slug": "x"}

    def broken(slug: str) -> dict[str, Any]:
        raise RuntimeError("bug in another component")

    removers = [extras.register(live_data), extras.register(broken)]
    try:
        _, body = await get(node, "/api/v1/rooms")
        first = body["rooms"][0]
        assert first["slug"] == "quiet" and first["live"] is True and first["viewers"] == 7
        assert first["stream"] == {"video": "h264"} and "stream_key" not in first
        assert body["rooms"][1]["stream"] is None
        _, body = await get(node, "/api/v1/rooms/quiet", h)
        assert body["room"]["viewers"] == 7 and body["room"]["stream_key"].startswith("lc_")
    finally:
        for remove in removers:
            remove()


async def test_update(node: Any) -> None:
    h = await account(node, "yuri")
    await create(node, h, title="Old", slug="upd")
    async with node.http.patch(node.url("/api/v1/rooms/upd"), json={"title": "New"}, headers=h) as r:
        assert r.status == 200
        room = (await r.json())["room"]
    assert room["title"] == "New" and room["slug"] == "upd"
    async with node.http.patch(node.url("/api/v1/rooms/upd"), json={"description": "d" * 2000}, headers=h) as r:
        assert r.status == 200 and (await r.json())["room"]["title"] == "New"
    for body, field in [({}, None), ({"title": ""}, "title"), ({"title": "t" * 101}, "title"),
                        ({"description": "d" * 2001}, "description"), ({"title": 5}, "title"),
                        ({"title": "a\x00b"}, "title")]:
        async with node.http.patch(node.url("/api/v1/rooms/upd"), json=body, headers=h) as r:
            assert r.status == 400, body
            assert (await r.json())["error"].get("field") == field


async def test_delete_emits_event(node: Any) -> None:
    h = await account(node, "zoe")
    await create(node, h, title="Doomed", slug="doomed")
    seen: list[Any] = []
    node.node.app[EVENTS].subscribe(seen.append)
    async with node.http.delete(node.url("/api/v1/rooms/doomed"), headers=h) as r:
        assert r.status == 204
    assert RoomDeleted("doomed") in seen
    assert (await get(node, "/api/v1/rooms/doomed"))[0] == 404
    async with node.http.delete(node.url("/api/v1/rooms/doomed"), headers=h) as r:
        assert r.status == 404


async def test_rotate_key(node: Any) -> None:
    h = await account(node, "amy")
    admin = await account(node, "root", role="admin")
    _, body = await create(node, h, title="Keys", slug="keys")
    old = body["room"]["stream_key"]
    rooms = node.node.app[ROOMS]
    assert (await rooms.find_by_stream_key(old)).slug == "keys"
    seen: list[Any] = []
    node.node.app[EVENTS].subscribe(seen.append)
    async with node.http.post(node.url("/api/v1/rooms/keys/stream-key"), headers=h) as r:
        assert r.status == 200
        new = (await r.json())["stream_key"]
    assert new != old and new.startswith("lc_")
    assert await rooms.find_by_stream_key(old) is None
    assert (await rooms.find_by_stream_key(new)).slug == "keys"
    assert StreamKeyRotated("keys") in seen
    _, body = await get(node, "/api/v1/rooms/keys", admin)
    assert body["room"]["stream_key"] == new
    for junk in ["", "lc_", new + "x", new[:-1], "x" * 10_000, None, 5]:
        assert await rooms.find_by_stream_key(junk) is None


async def test_data_survives_restart(node_factory: Any, tmp_path: Any) -> None:
    data_dir = tmp_path / "persist"
    node = await node_factory(data_dir=data_dir)
    h = await account(node, "persist")
    _, body = await create(node, h, title="Kept", slug="kept")
    key = body["room"]["stream_key"]
    await node.node.app[ROOMS].set_live("kept", True)
    await node.stop()

    node = await node_factory(data_dir=data_dir)
    async with node.http.get(node.url("/api/v1/me"), headers=h) as r:
        assert r.status == 200 and (await r.json())["user"]["username"] == "persist"
    _, body = await get(node, "/api/v1/rooms/kept", h)
    assert body["room"]["stream_key"] == key
    assert body["room"]["live"] is False  # nothing is live right after a start
    assert (await node.node.app[ROOMS].find_by_stream_key(key)).slug == "kept"
    async with node.http.post(node.url("/api/v1/auth/login"), json={"username": "persist", "password": PASSWORD}) as r:
        assert r.status == 200
