"""The role matrix: every endpoint x (anonymous, viewer, other_streamer, owner, admin),
each against a fresh node with one room owned by ``owner``."""

from __future__ import annotations

from typing import Any

import pytest

from livecast.keys import USERS

PASSWORD = "role matrix pw"
ACTORS = ("anonymous", "viewer", "other_streamer", "owner", "admin")
ROLE_OF = {"viewer": "viewer", "other_streamer": "streamer", "owner": "streamer", "admin": "admin"}
SLUG = "owned-room"

# (method, path, body, {actor: status}); "*" is every actor not named.
MATRIX: list[tuple[str, str, Any, dict[str, int]]] = [
    ("POST", "/api/v1/auth/register", {"username": "newbie", "password": PASSWORD}, {"*": 201}),
    ("POST", "/api/v1/auth/login", {"username": "viewer", "password": PASSWORD}, {"*": 200}),
    ("POST", "/api/v1/auth/logout", None, {"anonymous": 401, "*": 204}),
    ("GET", "/api/v1/me", None, {"anonymous": 401, "*": 200}),
    ("GET", "/api/v1/rooms", None, {"*": 200}),
    ("POST", "/api/v1/rooms", {"title": "Another"}, {"anonymous": 401, "viewer": 403, "*": 201}),
    ("GET", f"/api/v1/rooms/{SLUG}", None, {"*": 200}),
    ("GET", "/api/v1/rooms/no-such-room", None, {"*": 404}),
    ("PATCH", f"/api/v1/rooms/{SLUG}", {"title": "Renamed"},
     {"anonymous": 401, "viewer": 403, "other_streamer": 403, "*": 200}),
    ("PATCH", "/api/v1/rooms/no-such-room", {"title": "Renamed"}, {"anonymous": 401, "*": 404}),
    ("DELETE", f"/api/v1/rooms/{SLUG}", None, {"anonymous": 401, "viewer": 403, "other_streamer": 403, "*": 204}),
    ("DELETE", "/api/v1/rooms/no-such-room", None, {"anonymous": 401, "*": 404}),
    ("POST", f"/api/v1/rooms/{SLUG}/stream-key", None,
     {"anonymous": 401, "viewer": 403, "other_streamer": 403, "*": 200}),
    ("GET", "/api/v1/admin/users", None, {"anonymous": 401, "admin": 200, "*": 403}),
    ("PATCH", "/api/v1/admin/users/viewer", {"role": "streamer"}, {"anonymous": 401, "admin": 200, "*": 403}),
    ("PATCH", "/api/v1/admin/users/nobody", {"role": "streamer"}, {"anonymous": 401, "admin": 404, "*": 403}),
    ("POST", "/api/v1/admin/users/viewer/coins", {"amount": 5}, {"anonymous": 401, "admin": 200, "*": 403}),
    ("GET", "/api/v1/openapi.json", None, {"*": 200}),
]

CASES = [
    pytest.param(method, path, body, actor, table.get(actor, table.get("*")), id=f"{actor}-{method}-{path}")
    for method, path, body, table in MATRIX
    for actor in ACTORS
]


async def _setup(node: Any) -> dict[str, dict[str, str]]:
    """Create one account per role, log each in, and let ``owner`` create the room."""
    users = node.node.app[USERS]
    headers: dict[str, dict[str, str]] = {"anonymous": {}}
    for actor, role in ROLE_OF.items():
        await users.create_user(actor, PASSWORD, role=role)
        async with node.http.post(node.url("/api/v1/auth/login"),
                                  json={"username": actor, "password": PASSWORD}) as r:
            assert r.status == 200
            headers[actor] = {"Authorization": f"Bearer {(await r.json())['token']}"}
    node.http.cookie_jar.clear()  # only the Bearer header identifies the actor
    async with node.http.post(node.url("/api/v1/rooms"), json={"title": "Owned", "slug": SLUG},
                              headers=headers["owner"]) as r:
        assert r.status == 201
    return headers


@pytest.mark.parametrize("method,path,body,actor,expected", CASES)
async def test_role_matrix(node: Any, method: str, path: str, body: Any, actor: str, expected: int) -> None:
    headers = await _setup(node)
    async with node.http.request(method, node.url(path), json=body, headers=headers[actor]) as r:
        assert r.status == expected, await r.text()
        data = await r.json() if r.status != 204 else None
    if expected >= 400:
        assert data is not None
        assert set(data) == {"error"} and data["error"]["code"]
    if data and "room" in data:
        # stream keys and the RTMP URL reach the room's owner and admins only
        assert ("stream_key" in data["room"]) == (actor in ("owner", "admin")
                                                  or (method == "POST" and path == "/api/v1/rooms"))
        assert ("stream_key" in data["room"]) == ("rtmp_url" in data["room"])
    if data and "rooms" in data:
        for room in data["rooms"]:
            assert ("stream_key" in room) == (actor in ("owner", "admin")), room


async def test_stream_key_is_never_in_public_views(node: Any) -> None:
    headers = await _setup(node)
    for actor in ("anonymous", "viewer", "other_streamer"):
        for path in ("/api/v1/rooms", f"/api/v1/rooms/{SLUG}"):
            async with node.http.get(node.url(path), headers=headers[actor]) as r:
                text = await r.text()
            assert "stream_key" not in text and "rtmp://" not in text and "lc_" not in text
