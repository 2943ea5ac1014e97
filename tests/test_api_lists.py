"""Every list the API serves is paginated (``limit``, ``cursor``, ``next_cursor``), a user's
rooms are capped, and path and query integers out of range are refused, never a 5xx."""

from __future__ import annotations

from typing import Any

from livecast.chat.ws import CHAT
from livecast.keys import ROOMS, USERS

PASSWORD = "list password 1"


async def account(node: Any, username: str, role: str = "streamer") -> dict[str, str]:
    await node.node.app[USERS].create_user(username, PASSWORD, role=role)
    async with node.http.post(node.url("/api/v1/auth/login"), json={"username": username, "password": PASSWORD}) as r:
        assert r.status == 200, await r.text()
        token = (await r.json())["token"]
    node.http.cookie_jar.clear()
    return {"Authorization": f"Bearer {token}"}


async def get(node: Any, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with node.http.get(node.url(path), headers=headers) as r:
        return r.status, await r.json()


async def create_room(node: Any, headers: dict[str, str], title: str) -> tuple[int, Any]:
    async with node.http.post(node.url("/api/v1/rooms"), json={"title": title}, headers=headers) as r:
        return r.status, await r.json()


async def walk(node: Any, path: str, key: str, limit: int, headers: dict[str, str] | None = None) -> list[Any]:
    """Every item of a list, following next_cursor; checks each page's size."""
    items: list[Any] = []
    cursor = None
    for _ in range(1000):
        sep = "&" if "?" in path else "?"
        status, body = await get(node, f"{path}{sep}limit={limit}" + (f"&cursor={cursor}" if cursor else ""), headers)
        assert status == 200, body
        assert len(body[key]) <= limit
        items += body[key]
        cursor = body["next_cursor"]
        if cursor is None:
            return items
        assert len(body[key]) == limit  # only the last page is short
    raise AssertionError("the cursor never ran out")


async def test_rooms_are_paginated_live_first_then_newest(node_factory: Any) -> None:
    node = await node_factory(rooms={"max_per_user": 0})
    h = await account(node, "lister")
    slugs = []
    for i in range(120):
        status, body = await create_room(node, h, f"Room {i}")
        assert status == 201, body
        slugs.append(body["room"]["slug"])
    live = set(slugs[5:100:9])  # stored live flags, as the ingest sets them
    for slug in live:
        assert await node.node.app[ROOMS].set_live(slug, True)
    newest_first = slugs[::-1]
    expected = [s for s in newest_first if s in live] + [s for s in newest_first if s not in live]

    rooms = await walk(node, "/api/v1/rooms", "rooms", 7)
    assert [r["slug"] for r in rooms] == expected  # no duplicate, none missing, order kept
    status, first = await get(node, "/api/v1/rooms")
    assert status == 200 and len(first["rooms"]) == 50 and first["next_cursor"]
    status, full = await get(node, "/api/v1/rooms?limit=100")
    assert status == 200 and len(full["rooms"]) == 100

    # A room created while walking appears before the cursor, so the walk stays exact.
    _, page1 = await get(node, "/api/v1/rooms?limit=30")
    assert (await create_room(node, h, "Late room"))[0] == 201
    status, page2 = await get(node, f"/api/v1/rooms?limit=30&cursor={page1['next_cursor']}")
    assert [r["slug"] for r in page1["rooms"] + page2["rooms"]] == expected[:60]

    other = await account(node, "other")
    assert (await create_room(node, other, "Theirs"))[0] == 201
    status, mine = await get(node, "/api/v1/rooms?owner=other")
    assert [r["slug"] for r in mine["rooms"]] == ["theirs"] and mine["next_cursor"] is None
    status, none = await get(node, "/api/v1/rooms?owner=nobody_here")
    assert status == 200 and none == {"rooms": [], "next_cursor": None}


async def test_admin_user_list_is_paginated(node: Any) -> None:
    admin = await account(node, "boss", role="admin")
    for i in range(33):
        await node.node.app[USERS].create_user(f"member{i:02d}", PASSWORD)
    users = await walk(node, "/api/v1/admin/users", "users", 5, admin)
    names = [u["username"] for u in users]
    assert names == ["boss"] + [f"member{i:02d}" for i in range(33)]
    assert [u["id"] for u in users] == sorted(u["id"] for u in users)


async def test_comments_and_bans_are_paginated(node: Any) -> None:
    owner = await account(node, "owner")
    status, body = await create_room(node, owner, "Chatty")
    slug = body["room"]["slug"]
    room = await node.node.app[ROOMS].require(slug)
    store = node.node.app[CHAT].store
    ids = [(await store.add_comment(room.id, room.owner_id, f"c{i}"))[0] for i in range(120)]
    comments = await walk(node, f"/api/v1/rooms/{slug}/comments", "comments", 11)
    assert [c["id"] for c in comments] == ids[::-1]
    # ``before`` still works, and agrees with the cursor
    status, page = await get(node, f"/api/v1/rooms/{slug}/comments?limit=10")
    assert page["next_before"] == page["comments"][-1]["id"]
    status, by_before = await get(node, f"/api/v1/rooms/{slug}/comments?limit=10&before={page['next_before']}")
    status, by_cursor = await get(node, f"/api/v1/rooms/{slug}/comments?limit=10&cursor={page['next_cursor']}")
    assert by_before == by_cursor and [c["id"] for c in by_cursor["comments"]] == ids[::-1][10:20]

    names = [f"pest{i:02d}" for i in range(12)]
    for name in names:
        await node.node.app[USERS].create_user(name, PASSWORD)
        async with node.http.post(node.url(f"/api/v1/rooms/{slug}/bans/{name}"), headers=owner) as r:
            assert r.status == 201
    bans = await walk(node, f"/api/v1/rooms/{slug}/bans", "bans", 5, owner)
    assert [b["user"]["username"] for b in bans] == names
    assert all(set(b) == {"user", "created_at", "by"} for b in bans)


async def test_rooms_per_user_are_capped(node_factory: Any) -> None:
    node = await node_factory(rooms={"max_per_user": 3})
    h = await account(node, "busy")
    slugs = []
    for i in range(3):
        status, body = await create_room(node, h, f"Mine {i}")
        assert status == 201
        slugs.append(body["room"]["slug"])
    status, body = await create_room(node, h, "One too many")
    assert status == 409 and body["error"]["code"] == "room_limit"
    async with node.http.delete(node.url(f"/api/v1/rooms/{slugs[0]}"), headers=h) as r:
        assert r.status == 204
    assert (await create_room(node, h, "Room again"))[0] == 201
    # another user has their own allowance; admins are exempt
    assert (await create_room(node, await account(node, "someone"), "Theirs"))[0] == 201
    admin = await account(node, "root", role="admin")
    for i in range(5):
        assert (await create_room(node, admin, f"Admin {i}"))[0] == 201


BOUNDARY = ["0", "-1", "1", str(2**31), str(2**63 - 1), str(2**63), str(2**64), "9" * 400,
            "-" + "9" * 30, "1e3", "0x10", "1.5", "%20", "abc", "\u0661", "\uff11", "+1", " 1"]


async def test_boundary_integers_never_give_a_5xx(node: Any) -> None:
    owner = await account(node, "edges")
    admin = await account(node, "chief", role="admin")
    status, body = await create_room(node, owner, "Edges")
    slug = body["room"]["slug"]
    for raw in BOUNDARY:
        async with node.http.delete(node.url(f"/api/v1/rooms/{slug}/comments/{raw}"), headers=owner) as r:
            assert r.status in (400, 404), (raw, r.status, await r.text())
        for path in (f"/api/v1/rooms/{slug}/comments?before={raw}", f"/api/v1/rooms/{slug}/comments?limit={raw}",
                     f"/api/v1/rooms/{slug}/comments?cursor={raw}", f"/api/v1/rooms?limit={raw}",
                     f"/api/v1/rooms?cursor={raw}", f"/api/v1/rooms?cursor={raw}.{raw}",
                     f"/api/v1/admin/users?limit={raw}", f"/api/v1/admin/users?cursor={raw}",
                     f"/api/v1/rooms/{slug}/bans?cursor={raw}", f"/api/v1/rooms/{slug}/bans?limit={raw}",
                     f"/api/v1/rooms/{slug}/gifts/leaderboard?limit={raw}"):
            status, body = await get(node, path, admin)
            assert status in (200, 400), (path, status, body)
            if status == 400:
                assert body["error"]["field"] in ("before", "limit", "cursor"), (path, body)
    # huge path values: a lookup miss, or refused by the request-line limit
    for huge in ("a" * 5000, "9" * 5000, "a" * 20000):
        async with node.http.delete(node.url(f"/api/v1/rooms/{slug}/comments/{huge}"), headers=owner) as r:
            assert r.status in (400, 404), r.status
        async with node.http.get(node.url(f"/api/v1/rooms/{huge}/comments?limit={huge[:3000]}")) as r:
            assert r.status in (400, 404), r.status
    for huge in ("a" * 300, "9" * 5000):  # a static file name over the file system's limit
        async with node.http.get(node.url(f"/static/{huge}")) as r:
            assert r.status == 404, r.status
    # the id that used to answer 500
    async with node.http.delete(node.url(f"/api/v1/rooms/{slug}/comments/{2**63}"), headers=owner) as r:
        assert r.status == 404 and (await r.json())["error"]["code"] == "comment_not_found"
    for path in ("/api/v1/rooms?limit=0", "/api/v1/rooms?limit=101", "/api/v1/rooms?limit=",
                 "/api/v1/rooms?cursor=", "/api/v1/rooms?cursor=abc", f"/api/v1/rooms?cursor=1.{2**63}"):
        status, body = await get(node, path)
        assert status == 400, (path, body)


async def test_titles_refuse_bidi_zero_width_and_control_characters(node: Any) -> None:
    h = await account(node, "typist")
    for bad in ("evil\u202etxt.exe", "zero\u200bwidth", "c1\u0085control", "bom\ufeff", "iso\u2066late",
                "mark\u200f", "bell\u0007", "alm\u061c"):
        status, body = await create_room(node, h, bad)
        assert status == 400 and body["error"]["field"] == "title", (bad, body)
        assert body["error"]["code"] == "invalid_characters"
    status, body = await create_room(node, h, "Café 日本 👩\u200d💻")  # ZWJ emoji stays allowed
    assert status == 201, body
    slug = body["room"]["slug"]
    async with node.http.patch(node.url(f"/api/v1/rooms/{slug}"), json={"description": "a\u202eb"}, headers=h) as r:
        assert r.status == 400 and (await r.json())["error"]["field"] == "description"
    async with node.http.patch(node.url(f"/api/v1/rooms/{slug}"), json={"description": "line 1\nline 2\tok"},
                               headers=h) as r:
        assert r.status == 200
