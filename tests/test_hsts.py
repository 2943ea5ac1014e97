"""HSTS on real sockets: every HTTPS answer (API, pages, errors) carries
Strict-Transport-Security; plain HTTP never does; ``tls.hsts_max_age = 0`` turns it off."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from test_tls import HttpsNode, make_cert

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")

PATHS = ["/healthz", "/api/v1/rooms", "/", "/api/v1/no-such-route"]


async def headers_of(http: Any, url: str) -> list[str | None]:
    async with http.get(url) as r:
        await r.read()
        return r.headers.getall("Strict-Transport-Security", [None])  # type: ignore[no-any-return]


async def test_https_answers_carry_hsts(node_factory: Any, tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path, "server")
    node = await node_factory(tls={"cert": str(cert), "key": str(key), "rtmps_port": 0})
    https = HttpsNode(node.node.http_port, cafile=cert)
    try:
        for path in PATHS:
            assert await headers_of(https.http, https.url(path)) == ["max-age=31536000"], path
        async with https.http.post(https.url("/api/v1/auth/login"), data="x") as r:
            assert r.status == 400 and r.headers["Strict-Transport-Security"] == "max-age=31536000"
    finally:
        await https.http.close()


async def test_plain_http_has_no_hsts(node: Any) -> None:
    for path in PATHS:
        assert await headers_of(node.http, node.url(path)) == [None], path


async def test_hsts_can_be_turned_off(node_factory: Any, tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path, "server")
    node = await node_factory(tls={"cert": str(cert), "key": str(key), "rtmps_port": 0, "hsts_max_age": 0})
    https = HttpsNode(node.node.http_port, cafile=cert)
    try:
        assert await headers_of(https.http, https.url("/healthz")) == [None]
    finally:
        await https.http.close()
