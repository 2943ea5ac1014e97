"""Administration: list accounts, change role or disabled state, grant coins. Admins only.

An admin may not demote or disable themselves (409 ``cannot_modify_self``), so a
server always keeps the admin who is making changes; another admin can do it.
"""

from __future__ import annotations

import logging

from aiohttp import web

from livecast.api import openapi, paging
from livecast.api.auth import NO_STORE, read_body, require_user
from livecast.core.errors import Conflict, ValidationError
from livecast.core.events import UserDisabled
from livecast.keys import EVENTS, USERS
from livecast.users import validate_role

log = logging.getLogger(__name__)

routes = web.RouteTableDef()


@routes.get("/api/v1/admin/users")
async def list_users(request: web.Request) -> web.Response:
    await require_user(request, "admin")
    limit = paging.limit_query(request)
    after = paging.cursor_query(request, 1)
    users = await request.app[USERS].list_users(limit + 1, 0 if after is None else after[0])
    users, next_cursor = paging.page(users, limit, lambda u: (u.id,))
    return web.json_response({"users": [u.to_admin_json() for u in users], "next_cursor": next_cursor},
                             headers=NO_STORE)


@routes.patch("/api/v1/admin/users/{username}")
async def update_user(request: web.Request) -> web.Response:
    admin = await require_user(request, "admin")
    data = await read_body(request)
    role, disabled = data.get("role"), data.get("disabled")
    if role is None and disabled is None:
        raise ValidationError("nothing to update: give role and/or disabled")
    if role is not None:
        validate_role(role)
    if disabled is not None and not isinstance(disabled, bool):
        raise ValidationError("disabled must be true or false", field="disabled")
    users = request.app[USERS]
    target = await users.require_by_username(request.match_info["username"])
    if target.id == admin.id and ((role is not None and role != "admin") or disabled is True):
        raise Conflict("admins cannot demote or disable themselves", code="cannot_modify_self")
    updated = await users.update_user(target.username, role=role, disabled=disabled)
    log.info("admin %s updated user %s", admin.username, updated.username)
    if disabled is True:
        request.app[EVENTS].emit(UserDisabled(updated.id))
    return web.json_response({"user": updated.to_admin_json()}, headers=NO_STORE)


@routes.post("/api/v1/admin/users/{username}/coins")
async def grant_coins(request: web.Request) -> web.Response:
    admin = await require_user(request, "admin")
    data = await read_body(request)
    if data.get("amount") is None:
        raise ValidationError("amount is required", field="amount", code="missing")
    user = await request.app[USERS].grant_coins(request.match_info["username"], data["amount"])
    log.info("admin %s granted %s coins to %s", admin.username, data["amount"], user.username)
    return web.json_response({"user": user.to_admin_json()}, headers=NO_STORE)


openapi.add_schema("UserAdminList", {"type": "object", "required": ["users", "next_cursor"], "properties": {
    "users": {"type": "array", "items": {"$ref": "#/components/schemas/UserAdmin"}},
    "next_cursor": {"type": "string", "nullable": True, "description": "for ?cursor=; null on the last page"}}})
openapi.add_schema("UserAdminEnvelope", {"type": "object", "properties": {
    "user": {"$ref": "#/components/schemas/UserAdmin"}}})
# At least one of role and disabled, given (null counts as absent).
openapi.add_schema("UserUpdate", {"type": "object", "properties": {
    "role": {"type": "string", "enum": ["viewer", "streamer", "admin", None], "nullable": True},
    "disabled": {"type": "boolean", "nullable": True}},
    "anyOf": [{"required": ["role"], "properties": {"role": {"type": "string"}}},
              {"required": ["disabled"], "properties": {"disabled": {"type": "boolean"}}}]})
openapi.add_schema("CoinGrant", {"type": "object", "required": ["amount"], "properties": {
    "amount": {"type": "integer", "minimum": 1, "maximum": 1_000_000}}})

openapi.document("GET", "/api/v1/admin/users", "Accounts by id, one page at a time", tags=["admin"], auth="admin",
                 responses={200: "UserAdminList"}, query=openapi.page_params())
openapi.document("PATCH", "/api/v1/admin/users/{username}", "Change a user's role and/or disabled state",
                 tags=["admin"], auth="admin", body="UserUpdate",
                 responses={200: "UserAdminEnvelope", 404: "no such user",
                            409: "an admin cannot demote or disable themselves"},
                 description="Disabling revokes all of the user's sessions at once.")
openapi.document("POST", "/api/v1/admin/users/{username}/coins", "Grant coins", tags=["admin"],
                 auth="admin", body="CoinGrant",
                 responses={200: "UserAdminEnvelope", 404: "no such user", 409: "balance limit reached"})
