"""Administration over HTTP on a real node: listing, roles, disabling, coins."""

from __future__ import annotations

from typing import Any

from livecast.core.events import UserDisabled
from livecast.keys import EVENTS, USERS

PASSWORD = "admin test pw"


async def login(node: Any, username: str) -> tuple[int, Any]:
    async with node.http.post(node.url("/api/v1/auth/login"), json={"username": username, "password": PASSWORD}) as r:
        body = await r.json()
    node.http.cookie_jar.clear()
    return r.status, body


async def account(node: Any, username: str, role: str = "viewer", email: str | None = None) -> dict[str, str]:
    await node.node.app[USERS].create_user(username, PASSWORD, role=role, email=email)
    status, body = await login(node, username)
    assert status == 200
    return {"Authorization": f"Bearer {body['token']}"}


async def patch_user(node: Any, admin: dict[str, str], username: str, body: Any) -> tuple[int, Any]:
    async with node.http.patch(node.url(f"/api/v1/admin/users/{username}"), json=body, headers=admin) as r:
        return r.status, await r.json()


async def grant(node: Any, admin: dict[str, str], username: str, body: Any) -> tuple[int, Any]:
    async with node.http.post(node.url(f"/api/v1/admin/users/{username}/coins"), json=body, headers=admin) as r:
        return r.status, await r.json()


async def status_of(node: Any, headers: dict[str, str]) -> int:
    async with node.http.get(node.url("/api/v1/me"), headers=headers) as r:
        return int(r.status)


async def test_list_users_admin_view(node: Any) -> None:
    admin = await account(node, "boss", role="admin")
    await account(node, "pat", email="pat@example.com")
    async with node.http.get(node.url("/api/v1/admin/users"), headers=admin) as r:
        assert r.status == 200
        users = (await r.json())["users"]
    assert [u["username"] for u in users] == ["boss", "pat"]
    pat = users[1]
    assert pat["email"] == "pat@example.com" and pat["disabled"] is False and pat["role"] == "viewer"
    assert "password_hash" not in pat and "password" not in str(users)


async def test_change_role(node: Any) -> None:
    admin = await account(node, "boss", role="admin")
    viewer = await account(node, "quinn")
    async with node.http.post(node.url("/api/v1/rooms"), json={"title": "T"}, headers=viewer) as r:
        assert r.status == 403
    status, body = await patch_user(node, admin, "QUINN", {"role": "streamer"})
    assert status == 200 and body["user"]["role"] == "streamer" and body["user"]["username"] == "quinn"
    async with node.http.post(node.url("/api/v1/rooms"), json={"title": "T"}, headers=viewer) as r:
        assert r.status == 201  # the same token now carries the new role
    for bad, field in [({"role": "god"}, "role"), ({"role": 1}, "role"), ({"role": ["admin"]}, "role"),
                       ({"disabled": "yes"}, "disabled"), ({"disabled": 1}, "disabled"), ({}, None)]:
        status, body = await patch_user(node, admin, "quinn", bad)
        assert status == 400 and body["error"].get("field") == field, bad
    status, body = await patch_user(node, admin, "nobody", {"role": "viewer"})
    assert status == 404 and body["error"]["code"] == "user_not_found"
    status, body = await patch_user(node, admin, "bad name!", {"role": "viewer"})
    assert status == 404


async def test_disable_revokes_tokens_at_once(node: Any) -> None:
    admin = await account(node, "boss", role="admin")
    victim = await account(node, "rita")
    _, second = await login(node, "rita")
    victim2 = {"Authorization": f"Bearer {second['token']}"}
    seen: list[Any] = []
    node.node.app[EVENTS].subscribe(seen.append)
    assert await status_of(node, victim) == 200

    status, body = await patch_user(node, admin, "rita", {"disabled": True})
    assert status == 200 and body["user"]["disabled"] is True
    assert await status_of(node, victim) == 401
    assert await status_of(node, victim2) == 401
    assert seen == [UserDisabled(body["user"]["id"])]
    status, body = await login(node, "rita")
    assert status == 403 and body["error"]["code"] == "account_disabled"

    status, body = await patch_user(node, admin, "rita", {"disabled": False})
    assert status == 200 and body["user"]["disabled"] is False
    assert await status_of(node, victim) == 401  # revoked tokens stay revoked
    assert (await login(node, "rita"))[0] == 200
    assert len(seen) == 1


async def test_admin_cannot_demote_or_disable_self(node: Any) -> None:
    admin = await account(node, "boss", role="admin")
    other = await account(node, "deputy", role="admin")
    for body in [{"role": "viewer"}, {"disabled": True}, {"role": "admin", "disabled": True}]:
        status, reply = await patch_user(node, admin, "boss", body)
        assert status == 409 and reply["error"]["code"] == "cannot_modify_self", body
    assert (await patch_user(node, admin, "boss", {"role": "admin", "disabled": False}))[0] == 200
    assert await status_of(node, admin) == 200
    # another admin may do it
    status, reply = await patch_user(node, other, "boss", {"role": "streamer"})
    assert status == 200 and reply["user"]["role"] == "streamer"
    async with node.http.get(node.url("/api/v1/admin/users"), headers=admin) as r:
        assert r.status == 403


async def test_grant_coins(node: Any) -> None:
    admin = await account(node, "boss", role="admin")
    await account(node, "sid")
    start = node.settings.auth.signup_coins
    status, body = await grant(node, admin, "sid", {"amount": 5})
    assert status == 200 and body["user"]["coins"] == start + 5
    status, body = await grant(node, admin, "sid", {"amount": 1_000_000})
    assert status == 200 and body["user"]["coins"] == start + 1_000_005
    for bad in [0, -1, 1_000_001, 1.5, "5", True, None, [5], {"n": 5}, 10**30]:
        status, body = await grant(node, admin, "sid", {"amount": bad})
        assert status == 400 and body["error"]["field"] == "amount", bad
    status, body = await grant(node, admin, "nobody", {"amount": 5})
    assert status == 404
    async with node.http.get(node.url("/api/v1/me"), headers=await account(node, "tom")) as r:
        assert (await r.json())["user"]["coins"] == start


async def test_balance_limit(node: Any) -> None:
    admin = await account(node, "boss", role="admin")
    await account(node, "rich")
    users = node.node.app[USERS]
    user = await users.get_by_username("rich")
    await users.repo.db.execute("UPDATE users SET coins = ? WHERE id = ?", (10**15 - 3, user.id))
    status, body = await grant(node, admin, "rich", {"amount": 5})
    assert status == 409 and body["error"]["code"] == "balance_limit"
    assert (await grant(node, admin, "rich", {"amount": 3}))[0] == 200
