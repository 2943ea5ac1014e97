"""OpenAPI descriptions of the chat routes (registered on import)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from livecast.api import openapi
from livecast.keys import SETTINGS

_S: dict[str, Any] = {"type": "string"}
_I: dict[str, Any] = {"type": "integer"}
_B: dict[str, Any] = {"type": "boolean"}
_TS: dict[str, Any] = {"type": "string", "format": "date-time"}


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = required
    return schema


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_CHAT_USER = _obj({"username": _S, "role": _S}, ["username", "role"])
_NAME = _obj({"username": _S}, ["username"])

openapi.add_schema("Comment", _obj({"id": _I, "user": _CHAT_USER, "text": _S, "ts": _TS},
                                   ["id", "user", "text", "ts"]))
openapi.add_schema("CommentPage", _obj({
    "comments": {"type": "array", "items": _ref("Comment")},
    "next_before": {"type": "integer", "nullable": True,
                    "description": "pass as ?before= for the next (older) page; null on the last page"},
    "next_cursor": {"type": "string", "nullable": True,
                    "description": "or pass this as ?cursor=; null on the last page"},
}, ["comments", "next_before", "next_cursor"]))
openapi.add_schema("GiftCatalog", _obj({"gifts": {"type": "array", "items": _obj(
    {"name": _S, "display_name": _S, "price": _I}, ["name", "display_name", "price"])}}, ["gifts"]))
openapi.add_schema("GiftSend", _obj({"gift": {"type": "string", "description": "a name from GET /api/v1/gifts"},
                                     "quantity": {"type": "integer", "minimum": 1, "maximum": 100}},
                                    ["gift"]))
openapi.add_schema("GiftSent", _obj({
    "gift": _obj({"id": _I, "user": _CHAT_USER, "gift": _S, "quantity": _I, "value": _I, "ts": _TS}),
    "coins": {"type": "integer", "description": "the sender's balance after paying"},
}, ["gift", "coins"]))
openapi.add_schema("Leaderboard", _obj({"leaderboard": {"type": "array", "items": _obj(
    {"user": _NAME, "value": _I, "gifts": _I}, ["user", "value", "gifts"])}}, ["leaderboard"]))
openapi.add_schema("BanList", _obj({"bans": {"type": "array", "items": _obj(
    {"user": _NAME, "created_at": _TS, "by": {**_NAME, "nullable": True}})},
    "next_cursor": {"type": "string", "nullable": True, "description": "for ?cursor=; null on the last page"}},
    ["bans", "next_cursor"]))
openapi.add_schema("BanEnvelope", _obj({"ban": _obj({"user": _NAME})}, ["ban"]))
_SETTINGS_PROPS = {
    "slow_mode_seconds": {"type": "integer", "minimum": 0, "maximum": 3600},
    "chat_enabled": _B,
    "max_viewers": {"type": "integer", "minimum": 0, "maximum": 100000, "description": "0 = unlimited"},
}
openapi.add_schema("ChatSettings", _obj({"settings": _obj(_SETTINGS_PROPS, list(_SETTINGS_PROPS))}, ["settings"]))
# At least one setting, given (null counts as absent).
openapi.add_schema("ChatSettingsUpdate", {
    **_obj({k: {**v, "nullable": True} for k, v in _SETTINGS_PROPS.items()}),
    "anyOf": [{"required": [k], "properties": {k: {"type": v["type"]}}} for k, v in _SETTINGS_PROPS.items()]})



def _gift_names(doc: dict[str, Any], app: web.Application) -> None:
    names = [g.name for g in app[SETTINGS].gifts]
    if names:
        doc["components"]["schemas"]["GiftSend"]["properties"]["gift"]["enum"] = names


openapi.add_app_values(_gift_names)

_TAGS = ["chat"]
openapi.document(
    "GET", "/api/v1/rooms/{slug}/chat", "The room's chat (WebSocket)", tags=_TAGS, auth="optional",
    headers={"Upgrade": {"type": "string", "enum": ["websocket"]},
             "Connection": {"type": "string", "enum": ["Upgrade"]},
             "Sec-WebSocket-Version": {"type": "string", "enum": ["13"]},
             "Sec-WebSocket-Key": {"type": "string", "pattern": "^[A-Za-z0-9+/]{21}[AQgw]==$"}},
    responses={101: "switching to WebSocket", 400: "not a WebSocket request", 404: "no such room"},
    description="JSON text frames in both directions; see docs/API-chat.md. Anyone may read; "
                "posting needs a user (Bearer header, login cookie, or an `auth` frame).")
openapi.document(
    "GET", "/api/v1/rooms/{slug}/comments", "Comment history, newest first", tags=_TAGS,
    query={"before": openapi.int_param(1, 2**63 - 1, "only comments with a smaller id"), **openapi.page_params()},
    responses={200: "CommentPage", 400: "bad before or limit", 404: "no such room"},
    description="Deleted comments are not returned.")
openapi.document(
    "DELETE", "/api/v1/rooms/{slug}/comments/{id}", "Delete a comment (owner or admin)", tags=_TAGS,
    auth="user", responses={204: None, 403: "not the owner", 404: "no such room or comment"},
    description="Chat clients receive `{\"type\":\"deleted\",\"id\":...}`.")
openapi.document("GET", "/api/v1/gifts", "The gift catalog", tags=_TAGS, responses={200: "GiftCatalog"})
openapi.document(
    "POST", "/api/v1/rooms/{slug}/gifts", "Send a gift to the room's owner", tags=_TAGS, auth="user",
    body="GiftSend",
    responses={201: "GiftSent", 403: "banned, or your own room", 404: "no such room",
               409: "insufficient_coins"},
    description="Same as a `gift` frame: the price times quantity moves from the sender to the room's owner "
                "in one transaction and chat clients receive a `gift` frame.")
openapi.document(
    "GET", "/api/v1/rooms/{slug}/gifts/leaderboard", "Top gift senders by value", tags=_TAGS,
    query=openapi.page_params(10, 100, cursor_parts=0), responses={200: "Leaderboard", 404: "no such room"})
openapi.document(
    "GET", "/api/v1/rooms/{slug}/bans", "Users banned from the room's chat (owner or admin)", tags=_TAGS,
    auth="user", responses={200: "BanList", 403: "not the owner", 404: "no such room"}, query=openapi.page_params())
openapi.document(
    "POST", "/api/v1/rooms/{slug}/bans/{username}", "Ban a user from the room's chat (owner or admin)",
    tags=_TAGS, auth="user",
    responses={200: "BanEnvelope", 201: "BanEnvelope", 403: "not the owner, or the target manages the room",
               404: "no such room or user"},
    description="201 when newly banned, 200 when the user already was. A banned user may still read.")
openapi.document(
    "DELETE", "/api/v1/rooms/{slug}/bans/{username}", "Lift a ban (owner or admin)", tags=_TAGS,
    auth="user", responses={204: None, 403: "not the owner", 404: "no such room or user, or not banned"})
openapi.document(
    "GET", "/api/v1/rooms/{slug}/chat-settings", "The room's chat settings", tags=_TAGS,
    responses={200: "ChatSettings", 404: "no such room"})
openapi.document(
    "PATCH", "/api/v1/rooms/{slug}/chat-settings", "Change the room's chat settings (owner or admin)",
    tags=_TAGS, auth="user", body="ChatSettingsUpdate",
    responses={200: "ChatSettings", 403: "not the owner", 404: "no such room"},
    description="Chat clients receive a `settings` frame.")
