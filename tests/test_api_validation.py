"""Bad input gets a documented 4xx JSON error, never a 500: tables of known-bad bodies
and a hypothesis fuzz of every endpoint that reads a body, on a real node."""

from __future__ import annotations

import json
import zlib
from urllib.parse import quote
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livecast.keys import USERS

PASSWORD = "validation pw"


async def post(node: Any, path: str, body: Any = None, *, data: Any = None,
               headers: dict[str, str] | None = None, method: str = "POST") -> tuple[int, Any]:
    async with node.http.request(method, node.url(path), json=body if data is None else None, data=data,
                                 headers=headers or {}) as r:
        text = await r.text()
        return r.status, json.loads(text) if text else None


def assert_error(status: int, body: Any, expected_status: int, field: str | None = None,
                 code: str | None = None) -> None:
    assert status == expected_status, body
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str)
    assert error.get("field") == field, body
    if code:
        assert error["code"] == code, body


BAD_REGISTRATIONS: list[tuple[Any, str | None]] = [
    ({}, "username"),
    ({"password": PASSWORD}, "username"),
    ({"username": "okname"}, "password"),
    ({"username": None, "password": PASSWORD}, "username"),
    ({"username": 123, "password": PASSWORD}, "username"),
    ({"username": ["okname"], "password": PASSWORD}, "username"),
    ({"username": {"a": 1}, "password": PASSWORD}, "username"),
    ({"username": True, "password": PASSWORD}, "username"),
    ({"username": "ab", "password": PASSWORD}, "username"),
    ({"username": "a" * 33, "password": PASSWORD}, "username"),
    ({"username": "bad name", "password": PASSWORD}, "username"),
    ({"username": "bad-name", "password": PASSWORD}, "username"),
    ({"username": "ünïcode", "password": PASSWORD}, "username"),
    ({"username": "name\n", "password": PASSWORD}, "username"),
    ({"username": "okname", "password": "short"}, "password"),
    ({"username": "okname", "password": "1234567"}, "password"),
    ({"username": "okname", "password": "x" * 129}, "password"),
    ({"username": "okname", "password": 12345678}, "password"),
    ({"username": "okname", "password": ["x" * 10]}, "password"),
    ({"username": "okname", "password": PASSWORD, "email": "not-an-email"}, "email"),
    ({"username": "okname", "password": PASSWORD, "email": 5}, "email"),
    ({"username": "okname", "password": PASSWORD, "email": "a@" + "b" * 300}, "email"),
]


@pytest.mark.parametrize("body,field", BAD_REGISTRATIONS)
async def test_bad_registrations(node: Any, body: Any, field: str | None) -> None:
    status, reply = await post(node, "/api/v1/auth/register", body)
    assert_error(status, reply, 400, field)


async def test_password_length_bounds_are_inclusive(node: Any) -> None:
    assert (await post(node, "/api/v1/auth/register", {"username": "eight", "password": "8" * 8}))[0] == 201
    assert (await post(node, "/api/v1/auth/register", {"username": "long", "password": "é" * 128}))[0] == 201
    # bcrypt only reads 72 bytes; the pre-hash makes every character count
    assert (await post(node, "/api/v1/auth/login", {"username": "long", "password": "é" * 127 + "e"}))[0] == 401
    assert (await post(node, "/api/v1/auth/login", {"username": "long", "password": "é" * 128}))[0] == 200


MALFORMED = [b"{", b"nope", b"{'a': 1}", b"[]", b'"str"', b"null", b"1", b"1e309", b"[" * 50_000,
             b"1" * 50_000, b"\xff\xfe\x00", b'{"a": "\\ud800"', b"\x00"]


@pytest.mark.parametrize("raw", MALFORMED, ids=lambda b: repr(b[:12]))
async def test_malformed_json(node: Any, raw: bytes) -> None:
    status, reply = await post(node, "/api/v1/auth/register", data=raw,
                               headers={"Content-Type": "application/json"})
    assert_error(status, reply, 400, code="malformed_json")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/xml"])
async def test_wrong_content_types(node: Any, content_type: str) -> None:
    status, reply = await post(node, "/api/v1/auth/register", data=b"username=a&password=b",
                               headers={"Content-Type": content_type})
    assert_error(status, reply, 400, code="malformed_json")


async def test_lone_surrogates_are_rejected(node: Any) -> None:
    raw = b'{"username": "okname", "password": "\\ud800\\udfff\\ud800xxxxxxxx"}'
    status, reply = await post(node, "/api/v1/auth/register", data=raw)
    assert_error(status, reply, 400, "password")
    token = await _admin(node)
    raw = b'{"title": "a\\ud800b"}'
    status, reply = await post(node, "/api/v1/rooms", data=raw, headers=token)
    assert_error(status, reply, 400, "title")


async def test_oversized_bodies_are_413(node: Any) -> None:
    limit = node.settings.server.max_body_bytes
    big = json.dumps({"username": "x" * limit, "password": PASSWORD}).encode()
    status, reply = await post(node, "/api/v1/auth/register", data=big)
    assert_error(status, reply, 413, code="too_large")

    async def chunked() -> Any:  # no Content-Length: caught while reading
        for _ in range(limit // 1000 + 10):
            yield b" " * 1000

    status, reply = await post(node, "/api/v1/auth/login", data=chunked())
    assert_error(status, reply, 413, code="too_large")
    bomb = zlib.compress(b" " * (limit * 100))  # small on the wire, huge once inflated
    status, reply = await post(node, "/api/v1/auth/register", data=bomb, headers={"Content-Encoding": "deflate"})
    assert_error(status, reply, 413, code="too_large")
    status, reply = await post(node, "/api/v1/auth/register", data=b"not gzip", headers={"Content-Encoding": "gzip"})
    assert_error(status, reply, 400)


async def test_large_content_length_is_refused_before_the_body(node: Any) -> None:
    import asyncio

    reader, writer = await asyncio.open_connection("127.0.0.1", node.node.http_port)
    try:
        writer.write(b"POST /api/v1/auth/register HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000000000\r\n\r\n{")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 413")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        body = json.loads(await asyncio.wait_for(reader.readexactly(length), 5))
        assert body["error"]["code"] == "too_large"
    finally:
        writer.close()


async def test_unknown_paths_and_methods_are_json(node: Any) -> None:
    status, reply = await post(node, "/api/v1/nothing-here", method="GET")
    assert_error(status, reply, 404)
    status, reply = await post(node, "/api/v1/auth/login", method="GET")
    assert_error(status, reply, 405)


# -- fuzzing -------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=10**20, max_value=10**40)
    | st.floats() | st.text(max_size=50) | st.text(max_size=3000),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
FIELDS = ["username", "password", "email", "title", "description", "slug", "role", "disabled", "amount"]
BODIES = st.one_of(
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({}, optional={f: JSON_VALUES for f in FIELDS}).map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.sampled_from([b"", b"{}", b"[" * 10_000, b'{"title": 1e309}', b'{"amount": NaN}', b'{"amount": -Infinity}',
                     b'{"username": "\\udc80\\udc80\\udc80", "password": "\\ud800xxxxxxxx"}',
                     b'{"title": "\\u0000"}', b'{"amount": 1' + b"0" * 5000 + b"}", b"\xef\xbb\xbf{}"]),
)
CONTENT_TYPES = st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded",
                                 "application/json; charset=latin-1", ""])
ENDPOINTS = [
    ("POST", "/api/v1/auth/register"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/logout"),
    ("POST", "/api/v1/rooms"),
    ("PATCH", "/api/v1/rooms/fuzz-room"),
    ("POST", "/api/v1/rooms/fuzz-room/stream-key"),
    ("PATCH", "/api/v1/admin/users/target"),
    ("POST", "/api/v1/admin/users/target/coins"),
]


async def _admin(node: Any) -> dict[str, str]:
    users = node.node.app[USERS]
    if await users.get_by_username("fuzzadmin") is None:
        await users.create_user("fuzzadmin", PASSWORD, role="admin")
        await users.create_user("target", PASSWORD, role="viewer")
    admin = await users.authenticate("fuzzadmin", PASSWORD)
    session = await users.create_session(admin)
    return {"Authorization": f"Bearer {session.token}"}


@pytest.mark.slow
@pytest.mark.parametrize("method,path", ENDPOINTS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=BODIES, content_type=CONTENT_TYPES)
async def test_fuzz_never_500(node: Any, method: str, path: str, raw: bytes, content_type: str) -> None:
    headers = await _admin(node)
    if await node.node.app[USERS].get_by_username("fuzzadmin") and "fuzz-room" in path:
        await post(node, "/api/v1/rooms", {"title": "Fuzz", "slug": "fuzz-room"}, headers=headers)
    if content_type:
        headers["Content-Type"] = content_type
    async with node.http.request(method, node.url(path), data=raw, headers=headers) as r:
        text = await r.text()
        assert r.status < 500, (raw[:200], text)
        if r.status == 204:
            return
        assert r.headers["Content-Type"].startswith("application/json"), text
        body = json.loads(text)
        if r.status >= 400:
            assert isinstance(body["error"]["code"], str) and body["error"]["message"], body


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=st.text(max_size=300), slug=st.text(max_size=60))
async def test_fuzz_headers_and_paths_never_500(node: Any, token: str, slug: str) -> None:
    latin = "".join(c for c in token.encode("utf-8", "surrogatepass").decode("latin-1")
                    if " " <= c != "\x7f")
    for path in ("/api/v1/me", "/api/v1/rooms", "/api/v1/rooms/" + quote(slug, safe="", errors="surrogatepass")):
        for headers in ({"Authorization": "Bearer " + latin}, {"Cookie": "livecast_session=" + quote(latin)}):
            async with node.http.get(node.url(path), headers=headers) as r:
                assert r.status < 500, await r.text()
