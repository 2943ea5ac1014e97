"""Webhooks on a real node: a real aiohttp receiver gets signed events for a real RTMP
publish, a room, a comment and a gift; the on_publish hook allows and denies real publishes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from helpers import make_room, register_and_login, room_json, rtmp_url
from publisher import PublishFailed, publish_async
from test_chat_support import connect, post

from livecast.config import WebhookSettings
from livecast.webhooks import Webhooks, sign, verify

SECRET = "hook secret"


class Receiver:
    """An HTTP server that records every POST; ``answer`` decides the response."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.arrived = asyncio.Condition()
        self.answer: Callable[[web.Request, int], Any] = lambda request, n: web.Response(status=204)
        self.url = ""
        self.released = asyncio.Event()  # set at teardown: answers held back by a test go out

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.received.append((dict(request.headers), body))
        async with self.arrived:
            self.arrived.notify_all()
        result = self.answer(request, len(self.received))
        if asyncio.iscoroutine(result):
            result = await result
        return result

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.received]

    async def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 10.0) -> None:
        async def check() -> None:
            async with self.arrived:
                await self.arrived.wait_for(lambda: predicate(self.events()))
        await asyncio.wait_for(check(), timeout)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield rec
    rec.released.set()
    await runner.cleanup()


def _names(events: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in events]


@pytest.mark.slow
async def test_signed_events_for_publish_room_comment_and_gift(node_factory: Any, receiver: Receiver) -> None:
    node = await node_factory(webhooks={"urls": [receiver.url + "/hook"], "secret": SECRET})
    room = await make_room(node, title="Hooked")
    slug = room["slug"]
    await receiver.wait_for(lambda ev: "room.created" in _names(ev))

    sent = await publish_async(rtmp_url(node, room["stream_key"]), seconds=1.0)
    assert sent.video_frames > 0
    await receiver.wait_for(lambda ev: "stream.stopped" in _names(ev))

    fan = await register_and_login(node)
    ws, _ = await connect(node, slug, fan)
    comment = await post(ws, "hello hooks")
    await ws.send_json({"type": "gift", "gift": "rose", "quantity": 2})
    await receiver.wait_for(lambda ev: "gift.sent" in _names(ev))
    await ws.close()

    by_name: dict[str, dict[str, Any]] = {}
    for headers, body in receiver.received:
        assert verify(SECRET, body, headers["X-LiveCast-Signature"]), "bad signature"
        assert headers["X-LiveCast-Signature"] == sign(SECRET, body)
        assert headers["Content-Type"] == "application/json"
        event = json.loads(body)
        assert set(event) == {"event", "id", "ts", "data"}
        assert headers["X-LiveCast-Event"] == event["event"] and headers["X-LiveCast-Delivery"] == event["id"]
        assert event["ts"].endswith("Z")
        assert room["stream_key"] not in body.decode() and room["headers"]["Authorization"][7:] not in body.decode()
        assert fan["token"] not in body.decode()
        by_name[event["event"]] = event
    assert _names(receiver.events()) == ["room.created", "stream.started", "stream.stopped",
                                         "comment.created", "gift.sent"]
    assert len({e["id"] for e in receiver.events()}) == 5
    assert by_name["room.created"]["data"] == {"room": slug, "title": "Hooked",
                                               "owner": room["owner"]["username"]}
    assert by_name["stream.started"]["data"]["room"] == slug
    assert by_name["stream.started"]["data"]["peer"].startswith("127.0.0.1:")
    assert by_name["stream.stopped"]["data"] == {"room": slug}
    assert by_name["comment.created"]["data"] == {"room": slug, "id": comment["id"], "user": fan["user"]["username"],
                                                  "text": "hello hooks", "ts": comment["ts"]}
    gift = by_name["gift.sent"]["data"]
    assert gift["room"] == slug and gift["user"] == fan["user"]["username"]
    assert gift["gift"] == "rose" and gift["quantity"] == 2 and gift["value"] == 10


async def test_delivery_retries_with_the_same_id(node_factory: Any, receiver: Receiver) -> None:
    receiver.answer = lambda request, n: web.Response(status=503 if n < 3 else 200)
    node = await node_factory(webhooks={"urls": [receiver.url], "secret": SECRET, "backoff": 0.05})
    await make_room(node)
    await receiver.wait_for(lambda ev: len(ev) >= 3)
    await node.stop()  # flushes: in-flight deliveries (and any further retry) finish before it returns
    ids = {h["X-LiveCast-Delivery"] for h, _ in receiver.received}
    assert len(receiver.received) == 3 and len(ids) == 1  # two failures, then delivered; no more


async def test_full_queue_drops_without_waiting() -> None:
    hooks = Webhooks(WebhookSettings(urls=["http://127.0.0.1:9/"], queue_size=2))
    for _ in range(5):  # not started: nothing takes events off the queue
        hooks.enqueue("room.created", {"room": "x"})
    assert hooks.queue.qsize() == 2 and hooks.dropped == 3


async def _publish_outcome(node: Any, room: dict[str, Any]) -> bool:
    try:
        await publish_async(rtmp_url(node, room["stream_key"]), seconds=1.0)
    except PublishFailed:
        return False
    return True


@pytest.mark.slow
async def test_on_publish_denies_and_allows_real_publishes(node_factory: Any, receiver: Receiver) -> None:
    allowed: set[str] = set()

    async def answer(request: web.Request, n: int) -> web.Response:
        body = json.loads(await request.read())
        return web.Response(status=200 if body["room"] in allowed else 403)

    receiver.answer = answer
    node = await node_factory(webhooks={"on_publish": receiver.url + "/on_publish", "secret": SECRET})
    denied_room, ok_room = await make_room(node), await make_room(node)
    allowed.add(ok_room["slug"])

    assert await _publish_outcome(node, denied_room) is False
    assert (await room_json(node, denied_room["slug"]))["live"] is False
    assert await _publish_outcome(node, ok_room) is True

    calls = [(h, json.loads(b)) for h, b in receiver.received]
    assert [c["room"] for _, c in calls] == [denied_room["slug"], ok_room["slug"]]
    for headers, body in receiver.received:
        assert verify(SECRET, body, headers["X-LiveCast-Signature"])
        data = json.loads(body)
        assert data["app"] == "live" and data["peer"].startswith("127.0.0.1:") and set(data) == {"room", "peer", "app"}


@pytest.mark.slow
@pytest.mark.parametrize("fail_open", [False, True])
async def test_on_publish_timeout_denies_unless_fail_open(node_factory: Any, receiver: Receiver,
                                                          fail_open: bool) -> None:
    async def slow(request: web.Request, n: int) -> web.Response:
        await receiver.released.wait()  # no answer while the test runs
        return web.Response(status=200)

    receiver.answer = slow
    node = await node_factory(webhooks={"on_publish": receiver.url, "on_publish_timeout": 0.3,
                                        "on_publish_fail_open": fail_open})
    room = await make_room(node)
    assert await _publish_outcome(node, room) is fail_open
    assert len(receiver.received) == 1


def test_webhook_settings_from_toml_and_environment(tmp_path: Any) -> None:
    from livecast.config import ConfigError, load_settings

    conf = tmp_path / "c.toml"
    conf.write_text('[webhooks]\nurls = ["http://a/1", "http://b/2"]\nsecret = "s"\n')
    assert load_settings(conf, environ={}).webhooks.urls == ["http://a/1", "http://b/2"]
    env = {"LIVECAST_WEBHOOKS_URLS": "http://a/1, http://c/3", "LIVECAST_WEBHOOKS_ON_PUBLISH_FAIL_OPEN": "true"}
    settings = load_settings(None, environ=env)
    assert settings.webhooks.urls == ["http://a/1", "http://c/3"] and settings.webhooks.on_publish_fail_open
    conf.write_text("[webhooks]\nurls = [1]\n")
    with pytest.raises(ConfigError, match="webhooks.urls"):
        load_settings(conf, environ={})
