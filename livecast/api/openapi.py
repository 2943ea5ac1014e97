"""The OpenAPI 3.0 document served at ``GET /api/v1/openapi.json``.

Every module that registers an ``/api/v1`` route documents it next to the handler::

    from livecast.api import openapi

    openapi.document("GET", "/api/v1/rooms/{slug}/chat", "Chat WebSocket", tags=["chat"],
                     auth="optional", responses={101: "switching to WebSocket"})

and may add its own schemas with ``openapi.add_schema("Gift", {...})``. ``responses``
maps a status to a schema name (a JSON body), a sentence (an error or a non-JSON
reply) or None (no body). ``body`` names the request schema. Path parameters are read
from the ``{name}`` parts of the path. ``tests/test_openapi.py`` fails when a route the
app registers is not documented here, or a documented one is not registered.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from aiohttp import web

from livecast.api import paging

VERSION = "0.1.0"
_AUTH_LEVELS = ("none", "optional", "user", "streamer", "admin")

_operations: dict[str, dict[str, dict[str, Any]]] = {}
_schemas: dict[str, dict[str, Any]] = {}
_app_values: list[Callable[[dict[str, Any], web.Application], None]] = []

_STATUS_TEXT = {200: "OK", 201: "Created", 204: "No content", 400: "Validation error",
                401: "Not logged in", 403: "Not allowed", 404: "Not found", 409: "Conflict",
                413: "Body too large", 429: "Rate limited", 503: "Unavailable"}


def add_schema(name: str, schema: dict[str, Any]) -> None:
    """Add (or replace) a named schema under ``components.schemas``."""
    _schemas[name] = schema


# The schema of a path parameter, by name (anything else is a plain string). A value
# outside it never reaches a handler's logic: the lookup answers 404.
PATH_PARAMS: dict[str, dict[str, Any]] = {
    "slug": {"type": "string", "pattern": "^[a-z0-9-]{3,40}$"},
    "username": {"type": "string", "pattern": "^[A-Za-z0-9_]{3,32}$"},
    "id": {"type": "integer", "format": "int64", "minimum": 1, "maximum": 2**63 - 1},
}
_UNSAFE = ("post", "put", "patch", "delete")
# Answers a few operations give before their handler's own logic (rate limits and the
# bounded password-hashing queue of livecast.api.auth).
_EXTRA_RESPONSES: dict[tuple[str, str], dict[int, str | None]] = {
    ("post", "/api/v1/auth/register"): {429: "too many registrations from this address (Retry-After)",
                                        503: "server busy hashing passwords, retry (Retry-After)"},
    ("post", "/api/v1/auth/login"): {429: "too many attempts (Retry-After)",
                                     503: "server busy hashing passwords, retry (Retry-After)"},
}


def int_param(low: int, high: int, description: str) -> dict[str, Any]:
    """A query parameter that must be an integer in low..high (else 400)."""
    return {"description": description, "schema": {"type": "integer", "minimum": low, "maximum": high}}


def page_params(default: int = 50, maximum: int = 100, cursor_parts: int = 1) -> dict[str, Any]:
    """``limit`` and (unless ``cursor_parts`` is 0) ``cursor`` of a paginated list."""
    params: dict[str, Any] = {"limit": int_param(1, maximum, f"page size, default {default}")}
    if cursor_parts:
        params["cursor"] = {"description": "the previous page's next_cursor (treat it as opaque)",
                            "schema": {"type": "string", "pattern": paging.cursor_pattern(cursor_parts)}}
    return params


def document(method: str, path: str, summary: str, *, tags: list[str] | None = None,
             auth: str = "none", body: str | None = None,
             responses: dict[int, str | None] | None = None, description: str = "",
             query: dict[str, str | dict[str, Any]] | None = None,
             headers: dict[str, dict[str, Any]] | None = None) -> None:
    """Describe one operation. ``auth``: none, optional, user, streamer or admin.

    ``query`` maps a parameter to a description (a string parameter) or to
    ``{"description", "schema"}`` (see ``int_param``, ``page_params``); any query
    parameter can be refused with 400. A cookie-authenticated unsafe method can be
    refused with 403 ``csrf_rejected``, so such operations document 403."""
    if auth not in _AUTH_LEVELS:
        raise ValueError(f"auth must be one of {_AUTH_LEVELS}")
    op: dict[str, Any] = {"summary": summary, "operationId": _operation_id(method, path)}
    if description:
        op["description"] = description
    if tags:
        op["tags"] = list(tags)
    params = [{"name": p, "in": "path", "required": True, "schema": dict(PATH_PARAMS.get(p, {"type": "string"}))}
              for p in _path_params(path)]
    params += [_query_param(k, v) for k, v in (query or {}).items()]
    params += [{"name": k, "in": "header", "required": True, "schema": v} for k, v in (headers or {}).items()]
    if params:
        op["parameters"] = params
    implied: dict[int, str | None] = dict(_auth_responses(auth))
    if query or headers:
        implied[400] = "invalid query parameter or header"
    if auth != "none" and method.lower() in _UNSAFE:
        implied.setdefault(403, "csrf_rejected: a cookie-authenticated request from another origin")
    implied.update(_EXTRA_RESPONSES.get((method.lower(), path), {}))
    if body:
        op["requestBody"] = {"required": True,
                             "content": {"application/json": {"schema": _ref(body)}}}
        # Every JSON body can be malformed, invalid or too large.
        implied.update({400: "invalid body", 413: "body over server.max_body_bytes"})
    out: dict[str, Any] = {}
    for status, what in sorted({**implied, **(responses or {})}.items()):
        out[str(status)] = _response(status, what)
    op["responses"] = out or {"200": {"description": "OK"}}
    if auth in ("user", "streamer", "admin"):
        op["security"] = [{"bearer": []}, {"cookie": []}]
        if auth in ("streamer", "admin"):
            op["description"] = (op.get("description", "") + f" Role: {auth}"
                                 + (" or admin." if auth == "streamer" else ".")).strip()
    elif auth == "optional":
        op["security"] = [{}, {"bearer": []}, {"cookie": []}]
    _operations.setdefault(path, {})[method.lower()] = op


def operations() -> dict[str, dict[str, dict[str, Any]]]:
    """Documented operations, path -> lower-case method -> operation (a copy)."""
    return {p: dict(ops) for p, ops in _operations.items()}


def build_document() -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "LiveCast API",
            "version": VERSION,
            "description": "Accounts, rooms and administration of a LiveCast server. "
                           "Errors are `{\"error\": {\"code\", \"message\", \"field\"?}}`; see docs/API.md.",
        },
        "paths": {p: dict(sorted(_operations[p].items())) for p in sorted(_operations)},
        "components": {
            "schemas": dict(sorted(_schemas.items())),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "The token returned by POST /api/v1/auth/login"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "livecast_session"},
            },
        },
    }


def add_app_values(fill: Callable[[dict[str, Any], web.Application], None]) -> None:
    """Register ``fill(document, app)``: it writes values that depend on the running app's
    settings (e.g. the configured gift names) into a copy of the document."""
    _app_values.append(fill)


async def openapi_json(request: web.Request) -> web.Response:
    doc = copy.deepcopy(build_document())
    for fill in _app_values:
        fill(doc, request.app)
    return web.json_response(doc)


def _query_param(name: str, spec: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(spec, str):
        spec = {"description": spec, "schema": {"type": "string"}}
    return {"name": name, "in": "query", "required": False, **spec}


def _operation_id(method: str, path: str) -> str:
    parts = [p.strip("{}") for p in path.split("/") if p and p not in ("api", "v1")]
    return method.lower() + "_" + "_".join(p.replace("-", "_").replace(".", "_") for p in parts)


def _path_params(path: str) -> list[str]:
    return [seg[1:-1].split(":", 1)[0] for seg in path.split("/") if seg.startswith("{") and seg.endswith("}")]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _auth_responses(auth: str) -> dict[int, str | None]:
    if auth == "user":
        return {401: "not logged in"}
    if auth in ("streamer", "admin"):
        return {401: "not logged in", 403: "role not allowed"}
    return {}


def _response(status: int, what: str | None) -> dict[str, Any]:
    if what is None:
        return {"description": _STATUS_TEXT.get(status, "No body")}
    if what in _schemas:
        return {"description": _STATUS_TEXT.get(status, what),
                "content": {"application/json": {"schema": _ref(what)}}}
    if status >= 400:
        return {"description": what, "content": {"application/json": {"schema": _ref("Error")}}}
    return {"description": what}


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = required
    return schema


_EMAIL_PATTERN = r"^([^@\s\u001c-\u001f\u0085]{1,64}@[^@\s\u001c-\u001f\u0085]{1,189})?$"
_S = {"type": "string"}
_I = {"type": "integer"}
_B = {"type": "boolean"}
_USER_PROPS = {"id": _I, "username": _S, "role": {"type": "string", "enum": ["viewer", "streamer", "admin"]},
               "coins": _I, "created_at": {"type": "string", "format": "date-time"}}

add_schema("Error", _obj({"error": _obj({"code": _S, "message": _S, "field": _S}, ["code", "message"])},
                         ["error"]))
add_schema("User", _obj(_USER_PROPS, list(_USER_PROPS)))
add_schema("UserPrivate", _obj({**_USER_PROPS, "email": {"type": "string", "nullable": True}}))
add_schema("UserAdmin", _obj({**_USER_PROPS, "email": {"type": "string", "nullable": True}, "disabled": _B}))
add_schema("UserEnvelope", _obj({"user": _ref("UserPrivate")}, ["user"]))
add_schema("Register", _obj({"username": {"type": "string", "pattern": "^[A-Za-z0-9_]{3,32}$"},
                             "password": {"type": "string", "minLength": 8, "maxLength": 128},
                             "email": {"type": "string", "nullable": True, "maxLength": 254,
                                       "pattern": _EMAIL_PATTERN}},
                            ["username", "password"]))
add_schema("Login", _obj({"username": _S, "password": _S}, ["username", "password"]))
add_schema("Session", _obj({"token": _S, "user": _ref("UserPrivate"),
                            "expires_at": {"type": "string", "format": "date-time"}}))
add_schema("Health", _obj({"status": _S, "database": _B, "redis": _B}))


def _document_health() -> None:
    document("GET", "/healthz", "Liveness: the process answers", tags=["health"], responses={200: "Health"})
    document("GET", "/readyz", "Readiness: the database answers", tags=["health"],
             responses={200: "Health", 503: "Health"})
    document("GET", "/api/v1/openapi.json", "This document", tags=["meta"], responses={200: "OpenAPI 3.0 JSON"})


_document_health()
