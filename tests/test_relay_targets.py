"""Push targets: the API (owner only, the key write-only) and pushes to a second LiveCast
over real sockets: the frames published to one room arrive in the other's HLS; a target
that refuses the key shows ``failed`` with the server's reason; the key is never in an
answer or a log line."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from helpers import make_room, register_and_login, room_json, rtmp_url, segment_uris, wait_for, wait_playlist
from publisher import publish_async, read_hls_async, start_publisher
from test_webhooks import receiver  # noqa: F401, F811 (a fixture)

FPS = 30


async def _add_target(node: Any, room: dict[str, Any], **body: Any) -> tuple[int, dict[str, Any]]:
    async with node.http.post(node.url(f"/api/v1/rooms/{room['slug']}/targets"), json=body,
                              headers=room["headers"]) as r:
        return r.status, await r.json()


async def _targets(node: Any, room: dict[str, Any]) -> list[dict[str, Any]]:
    async with node.http.get(node.url(f"/api/v1/rooms/{room['slug']}/targets"), headers=room["headers"]) as r:
        assert r.status == 200, await r.text()
        return list((await r.json())["targets"])


async def test_targets_api_owner_only_and_key_write_only(node: Any) -> None:
    room = await make_room(node)
    key = "secret-target-key-123456"
    status, body = await _add_target(node, room, name="YouTube", url="rtmp://127.0.0.1:1/live2", stream_key=key)
    assert status == 201, body
    target = body["target"]
    assert target["name"] == "YouTube" and target["enabled"] is True and target["state"] == "idle"
    assert target["bytes_sent"] == 0 and target["reason"] is None and target["key_hint"] == "…56"
    seen = [str(body)]
    async with node.http.patch(node.url(f"/api/v1/rooms/{room['slug']}/targets/{target['id']}"),
                               json={"enabled": False, "name": "YT"}, headers=room["headers"]) as r:
        assert r.status == 200
        changed = (await r.json())["target"]
        seen.append(str(changed))
    assert changed["name"] == "YT" and changed["enabled"] is False and changed["state"] == "disabled"
    listed = await _targets(node, room)
    seen.append(str(listed))
    assert [t["id"] for t in listed] == [target["id"]]
    # Bad input: clear errors, field named.
    for bad, field in (({"name": "x", "url": "http://a/b", "stream_key": "k"}, "url"),
                       ({"name": "x", "url": "rtmp://a/b"}, "stream_key"),
                       ({"name": "", "url": "rtmp://a/b", "stream_key": "k"}, "name"),
                       ({"name": "x", "url": "rtmp://u:p@a/b", "stream_key": "k"}, "url"),
                       ({"name": "x", "url": "rtmp://a/b", "stream_key": "k", "extra": 1}, "extra")):
        status, err = await _add_target(node, room, **bad)
        assert status == 400 and err["error"]["field"] == field, (bad, err)
    # Another user may neither read nor change them.
    other = await register_and_login(node)
    async with node.http.get(node.url(f"/api/v1/rooms/{room['slug']}/targets"), headers=other["headers"]) as r:
        assert r.status == 403
    async with node.http.delete(node.url(f"/api/v1/rooms/{room['slug']}/targets/{target['id']}"),
                                headers=other["headers"]) as r:
        assert r.status == 403
    async with node.http.delete(node.url(f"/api/v1/rooms/{room['slug']}/targets/{target['id']}"),
                                headers=room["headers"]) as r:
        assert r.status == 204
    async with node.http.delete(node.url(f"/api/v1/rooms/{room['slug']}/targets/{target['id']}"),
                                headers=room["headers"]) as r:
        assert r.status == 404
    assert not any(key in text for text in seen)


@pytest.mark.slow
async def test_push_to_second_livecast_and_refused_key(node_factory: Any, tmp_path: Any,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="livecast")  # (aiosqlite logs SQL parameters at DEBUG)
    origin = await node_factory(tmp_path / "a")
    other = await node_factory(tmp_path / "b")
    room = await make_room(origin)
    remote = await make_room(other)
    good = f"rtmp://127.0.0.1:{other.rtmp_port}/live"
    wrong = "lc_not-the-right-key-at-all"
    status, body = await _add_target(origin, room, name="second", url=good, stream_key=remote["stream_key"])
    assert status == 201, body
    status, body = await _add_target(origin, room, name="refuses", url=good, stream_key=wrong)
    assert status == 201, body
    sent = await publish_async(rtmp_url(origin, room["stream_key"]), seconds=3.0, fps=FPS, gop=FPS)

    frames, _, codecs = await read_hls_async(other.url(f"/hls/{remote['slug']}/index.m3u8"))
    assert abs(frames - sent.video_frames) <= 1, (frames, sent)
    assert "h264" in codecs and "aac" in codecs
    targets = {t["name"]: t for t in await _targets(origin, room)}
    assert targets["refuses"]["state"] == "failed"
    assert "NetStream.Publish.BadName" in targets["refuses"]["reason"]
    assert "invalid stream key" in targets["refuses"]["reason"]
    assert targets["second"]["bytes_sent"] > 50_000
    await wait_for(lambda: _idle(origin, room), what="targets idle after the room stopped")

    answers = [str(await _targets(origin, room)), str(await room_json(origin, room["slug"], room["headers"]))]
    for key in (remote["stream_key"], wrong):
        assert not any(key in a for a in answers)
        assert key not in caplog.text


@pytest.mark.slow
async def test_push_hevc_uses_enhanced_rtmp(node_factory: Any, tmp_path: Any) -> None:
    """HEVC goes out as Enhanced RTMP tags (FourCC hvc1): the second LiveCast's HLS is HEVC
    with every frame."""
    origin = await node_factory(tmp_path / "a", hls={"container": "fmp4"})  # HEVC needs fMP4 segments
    other = await node_factory(tmp_path / "b", hls={"container": "fmp4"})
    room = await make_room(origin)
    remote = await make_room(other)
    await _add_target(origin, room, name="hevc", url=f"rtmp://127.0.0.1:{other.rtmp_port}/live",
                      stream_key=remote["stream_key"])
    sent = await publish_async(rtmp_url(origin, room["stream_key"]), seconds=2.0, fps=FPS, gop=FPS, video="libx265")
    frames, _, codecs = await read_hls_async(other.url(f"/hls/{remote['slug']}/index.m3u8"))
    assert "hevc" in codecs and abs(frames - sent.video_frames) <= 1, (frames, codecs, sent)


async def _idle(node: Any, room: dict[str, Any]) -> bool:
    return all(t["state"] in ("idle", "failed") for t in await _targets(node, room))


@pytest.mark.slow
async def test_target_added_while_live_starts_at_once_and_resumes_next_session(node_factory: Any,
                                                                              tmp_path: Any) -> None:
    """A target added to a live room starts at once (with the decoder configuration seen
    before it was added); after the room stops, the next session pushes again."""
    origin = await node_factory(tmp_path / "a")
    other = await node_factory(tmp_path / "b")
    room = await make_room(origin)
    remote = await make_room(other)
    pub = await start_publisher(rtmp_url(origin, room["stream_key"]), seconds=4.0, fps=FPS, gop=FPS, realtime=True)
    try:
        await wait_playlist(origin, room["slug"], lambda t: len(segment_uris(t)) >= 1)  # 2 s of media went by
        status, body = await _add_target(origin, room, name="late", url=f"rtmp://127.0.0.1:{other.rtmp_port}/live",
                                         stream_key=remote["stream_key"])
        assert status == 201, body
        await wait_for(lambda: _state_is(origin, room, "live"), what="target live while the room is")
    finally:
        sent = await pub.result()
    frames, _, codecs = await read_hls_async(other.url(f"/hls/{remote['slug']}/index.m3u8"))
    assert 0 < frames < sent.video_frames and "h264" in codecs, (frames, sent)
    # The next session of the room pushes again, from its first frame (the remote room's
    # playlist continues across the reconnect: it holds both sessions' frames).
    await wait_for(lambda: _idle(origin, room), what="target idle")
    sent = await publish_async(rtmp_url(origin, room["stream_key"]), seconds=2.0, fps=FPS, gop=FPS)
    both, _, _ = await read_hls_async(other.url(f"/hls/{remote['slug']}/index.m3u8"))
    assert abs(both - frames - sent.video_frames) <= 1, (both, frames, sent)


async def _state_is(node: Any, room: dict[str, Any], state: str) -> bool:
    return all(t["state"] == state for t in await _targets(node, room))


@pytest.mark.slow
async def test_state_changes_as_webhooks_and_metrics(node_factory: Any, tmp_path: Any,
                                                    receiver: Any) -> None:  # noqa: F811 (the fixture)
    """A target that refuses the key: the webhook receiver gets relay.target connecting,
    then failed with the server's reason (no key in any body); /metrics counts it."""
    origin = await node_factory(tmp_path / "a", webhooks={"urls": [receiver.url], "secret": "s"})
    other = await node_factory(tmp_path / "b")
    room = await make_room(origin)
    wrong = "lc_wrong-key-for-the-hooks"
    await _add_target(origin, room, name="hooked", url=f"rtmp://127.0.0.1:{other.rtmp_port}/live", stream_key=wrong)
    await publish_async(rtmp_url(origin, room["stream_key"]), seconds=1.0, fps=FPS, gop=FPS)
    await receiver.wait_for(lambda ev: any(e["event"] == "relay.target" and e["data"]["state"] == "failed"
                                           for e in ev))
    relay = [e["data"] for e in receiver.events() if e["event"] == "relay.target"]
    assert [d["state"] for d in relay][:2] == ["connecting", "failed"], relay
    assert relay[1]["name"] == "hooked" and "NetStream.Publish.BadName" in relay[1]["reason"]
    assert all(wrong not in body.decode() for _, body in receiver.received)
    async with origin.http.get(origin.url("/metrics")) as r:
        text = await r.text()
    assert 'livecast_relay_targets{state="failed"} 1.0' in text, text
    assert "livecast_relay_target_bytes_sent_total" in text


async def test_deleted_room_targets_do_not_follow_its_slug(node: Any) -> None:
    """A room deleted and created again under the same slug starts with no push targets."""
    room = await make_room(node, title="Reused slug")
    await _add_target(node, room, name="old", url="rtmp://127.0.0.1:1/live", stream_key="old-owner-key")
    async with node.http.delete(node.url(f"/api/v1/rooms/{room['slug']}"), headers=room["headers"]) as r:
        assert r.status == 204
    async with node.http.post(node.url("/api/v1/rooms"), json={"title": "Reused slug", "slug": room["slug"]},
                              headers=room["headers"]) as r:
        assert r.status == 201, await r.text()
    assert await _targets(node, room) == []
    assert "relay" not in await room_json(node, room["slug"], room["headers"])


@pytest.mark.slow
async def test_failed_target_starts_again_at_once_when_its_key_is_changed(node_factory: Any, tmp_path: Any) -> None:
    """A target refused for its key stays ``failed`` in the session; a PATCH with the right key
    while the room is live starts it again at once, and the frames from then on arrive."""
    origin = await node_factory(tmp_path / "a")
    other = await node_factory(tmp_path / "b")
    room = await make_room(origin)
    remote = await make_room(other)
    status, body = await _add_target(origin, room, name="fixed", url=f"rtmp://127.0.0.1:{other.rtmp_port}/live",
                                     stream_key="lc_not-the-right-key-yet")
    assert status == 201, body
    pub = await start_publisher(rtmp_url(origin, room["stream_key"]), seconds=5.0, fps=FPS, gop=FPS, realtime=True)
    try:
        await wait_for(lambda: _state_is(origin, room, "failed"), what="target refused")
        async with origin.http.patch(origin.url(f"/api/v1/rooms/{room['slug']}/targets/{body['target']['id']}"),
                                     json={"stream_key": remote["stream_key"]}, headers=room["headers"]) as r:
            assert r.status == 200, await r.text()
        await wait_for(lambda: _state_is(origin, room, "live"), what="target live with the right key")
    finally:
        sent = await pub.result()
    frames, _, _ = await read_hls_async(other.url(f"/hls/{remote['slug']}/index.m3u8"))
    assert 0 < frames < sent.video_frames, (frames, sent)
