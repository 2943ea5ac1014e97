"""The OpenAPI document lists exactly the /api/v1 routes the app registers (plus the
health probes), and is well-formed enough for tools to read."""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from livecast.api import openapi

DOCUMENTED_OUTSIDE_API = {"/healthz", "/readyz"}
IGNORED_METHODS = {"HEAD", "OPTIONS"}


def registered_operations(app: web.Application) -> set[tuple[str, str]]:
    ops = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if not (path.startswith("/api/v1/") or path in DOCUMENTED_OUTSIDE_API):
            continue
        if route.method in IGNORED_METHODS:
            continue
        ops.add((route.method.upper(), path))
    return ops


def documented_operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in doc["paths"].items() for method in item}


async def test_document_matches_the_router(node: Any) -> None:
    async with node.http.get(node.url("/api/v1/openapi.json")) as r:
        assert r.status == 200
        doc = await r.json()
    registered = registered_operations(node.node.app)
    documented = documented_operations(doc)
    assert registered, "no /api/v1 routes found"
    missing = sorted(registered - documented)
    stale = sorted(documented - registered)
    assert not missing, f"routes without an openapi.document(...) entry: {missing}"
    assert not stale, f"documented but not registered: {stale}"


async def test_document_is_well_formed(node: Any) -> None:
    async with node.http.get(node.url("/api/v1/openapi.json")) as r:
        doc = await r.json()
    assert doc["openapi"].startswith("3.0.")
    assert doc["info"]["title"] and doc["info"]["version"]
    schemas = doc["components"]["schemas"]
    ids = set()
    for path, item in doc["paths"].items():
        declared_params = set(re.findall(r"{([^}]+)}", path))
        for method, op in item.items():
            assert method in {"get", "post", "put", "patch", "delete"}
            assert op["summary"] and op["responses"], (method, path)
            assert op["operationId"] not in ids
            ids.add(op["operationId"])
            params = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert params == declared_params, (method, path)
            for status in op["responses"]:
                assert re.fullmatch(r"[1-5]\d\d", status)
    for ref in re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(doc)):
        assert ref in schemas, ref
    assert "bearer" in doc["components"]["securitySchemes"]


def test_document_registry_is_extendable() -> None:
    path = "/api/v1/test-only/{thing}"
    try:
        openapi.document("GET", path, "A test route", tags=["test"], auth="admin",
                         responses={200: "User", 404: "no such thing"})
        op = openapi.build_document()["paths"][path]["get"]
        assert op["parameters"][0]["name"] == "thing"
        assert set(op["responses"]) == {"200", "401", "403", "404"}
        assert op["responses"]["404"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
    finally:
        openapi._operations.pop(path, None)
    assert path not in openapi.build_document()["paths"]


async def test_document_states_limits_and_implied_answers(node: Any) -> None:
    async with node.http.get(node.url("/api/v1/openapi.json")) as r:
        doc = await r.json()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            params = op.get("parameters", [])
            if op.get("security") and [{}] != op["security"][:1] and method in ("post", "put", "patch", "delete"):
                assert "403" in op["responses"], ("csrf 403 missing", method, path)
            if any(p["in"] == "query" for p in params):
                assert "400" in op["responses"], (method, path)
            for p in params:
                if p["in"] == "query" and p["name"] in ("limit", "before"):
                    assert p["schema"]["type"] == "integer" and "minimum" in p["schema"] and "maximum" in p["schema"]
                if p["in"] == "path" and p["name"] in ("slug", "username"):
                    assert p["schema"].get("pattern"), (method, path, p)
                if p["in"] == "path" and p["name"] == "id":
                    assert p["schema"] == {"type": "integer", "format": "int64", "minimum": 1, "maximum": 2**63 - 1}
    lists = {"/api/v1/rooms": "RoomList", "/api/v1/admin/users": "UserAdminList",
             "/api/v1/rooms/{slug}/comments": "CommentPage", "/api/v1/rooms/{slug}/bans": "BanList"}
    for path, schema in lists.items():
        names = {p["name"] for p in doc["paths"][path]["get"]["parameters"]}
        assert {"limit", "cursor"} <= names, path
        assert "next_cursor" in doc["components"]["schemas"][schema]["required"], schema
    assert "429" in doc["paths"]["/api/v1/auth/register"]["post"]["responses"]
    gifts = doc["components"]["schemas"]["GiftSend"]["properties"]["gift"]["enum"]
    assert gifts == [g.name for g in node.settings.gifts]  # filled from the running app's settings
    assert "enum" not in openapi.build_document()["components"]["schemas"]["GiftSend"]["properties"]["gift"]
