"""Request ids on HTTP, JSON log lines carrying them, and no secrets in any log line."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
from helpers import register_and_login, rtmp_url, wait_playlist
from publisher import PublishFailed, publish_async

from livecast.logs import REQUEST_ID, JsonFormatter, RequestIdFilter, TextFormatter

GENERATED = re.compile(r"[0-9a-f]{16}")


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Every livecast.* and aiohttp.access record, formatted as production JSON lines."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    loggers = [logging.getLogger("livecast"), logging.getLogger("aiohttp.access")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    yield out
    for lg, level in zip(loggers, levels, strict=False):
        lg.removeHandler(handler)
        lg.setLevel(level)


def _lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


async def _rid(node, headers: dict[str, str] | None = None, path: str = "/healthz") -> str:
    async with node.http.get(node.url(path), headers=headers or {}) as r:
        return r.headers["X-Request-Id"]


async def test_request_id_is_echoed_when_sane_and_made_up_otherwise(node) -> None:
    assert await _rid(node, {"X-Request-Id": "abc-DEF_123"}) == "abc-DEF_123"
    assert await _rid(node, {"X-Request-Id": "x" * 64}) == "x" * 64
    for bad in ("x" * 65, "has space", "semi;colon", "new\\nline", ""):
        rid = await _rid(node, {"X-Request-Id": bad})
        assert rid != bad and GENERATED.fullmatch(rid)
    first, second = await _rid(node), await _rid(node)
    assert GENERATED.fullmatch(first) and first != second
    # errors too, and unmatched paths
    assert await _rid(node, {"X-Request-Id": "on-404"}, "/no/such/path") == "on-404"
    assert await _rid(node, {"X-Request-Id": "on-401"}, "/api/v1/auth/me") == "on-401"
    assert REQUEST_ID.get() is None  # the test's own context never saw one


async def test_json_lines_carry_the_request_id(node_factory, json_log: io.StringIO) -> None:
    node = await node_factory(log={"level": "debug"})  # the access log is on at debug only
    await register_and_login(node, "ridchecker")
    account = {"username": "ridchecker", "password": "correct horse 1"}
    async with node.http.post(node.url("/api/v1/auth/login"), json=account,
                              headers={"X-Request-Id": "login-req-1"}) as r:
        assert r.status == 200
        assert r.headers["X-Request-Id"] == "login-req-1"
    lines = _lines(json_log)
    login = [e for e in lines if "logged in" in str(e["msg"]) and e.get("request_id") == "login-req-1"]
    assert len(login) == 1, lines
    assert login[0]["logger"] == "livecast.api.auth" and login[0]["level"] == "info"
    access = [e for e in lines if e["logger"] == "aiohttp.access" and e.get("request_id") == "login-req-1"]
    assert len(access) == 1
    # records outside any request have no request_id key at all
    logging.getLogger("livecast.test").info("outside")
    assert "request_id" not in _lines(json_log)[-1]


def test_text_format_stays_readable() -> None:
    record = logging.LogRecord("livecast.x", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    RequestIdFilter().filter(record)
    assert TextFormatter().format(record).endswith("livecast.x: hello world")
    record.request_id = "r-1"
    assert TextFormatter().format(record).endswith("hello world [req r-1]")


@pytest.mark.slow
async def test_no_secrets_in_logs(node_factory, caplog: pytest.LogCaptureFixture, json_log: io.StringIO) -> None:
    caplog.set_level(logging.DEBUG, logger="livecast")
    caplog.set_level(logging.DEBUG, logger="aiohttp.access")
    node = await node_factory(hls={"segment_duration": 1.0}, log={"level": "debug"})
    password, wrong_password = "Pa55word-sekrit-1", "Wr0ng-sekrit-pass"
    who = await register_and_login(node, "secretive", password=password)
    token = who["token"]
    async with node.http.post(node.url("/api/v1/auth/login"),
                              json={"username": "secretive", "password": wrong_password}) as r:
        assert r.status == 401
    async with node.http.post(node.url("/api/v1/rooms"), json={"title": "Keys"}, headers=who["headers"]) as r:
        assert r.status == 201
        room = (await r.json())["room"]
    key = room["stream_key"]
    # chat: authenticate by frame with the token, then with a wrong token
    async with node.http.ws_connect(node.url(f"/api/v1/rooms/{room['slug']}/chat")) as ws:
        await ws.send_json({"type": "auth", "token": token})
        await ws.send_json({"type": "auth", "token": token + "x"})
        await ws.receive(timeout=5)
    await publish_async(rtmp_url(node, key), seconds=1.0, fps=15, gop=15)
    await wait_playlist(node, room["slug"], lambda text: "#EXT-X-ENDLIST" in text)
    wrong_key = key[::-1] + "zz"
    with pytest.raises(PublishFailed):
        await publish_async(rtmp_url(node, wrong_key), seconds=1.0, fps=15)
    async with node.http.post(node.url("/api/v1/auth/logout"), headers=who["headers"]) as r:
        assert r.status in (200, 204)

    text = caplog.text + "\n".join(str(rec.__dict__) for rec in caplog.records) + json_log.getvalue()
    assert "publish started" in text and "rejected" in text  # the events we looked for were logged
    assert any(rec.name == "aiohttp.access" for rec in caplog.records)
    for secret in (password, wrong_password, token, key, wrong_key):
        assert secret not in text, f"a secret ({secret[:4]}...) leaked into the logs"
