"""LL-HLS blocking playlist reload and preload hint fetches, driven unit by unit: the
segmenter is fed by the test, so ordering is asserted without any clock."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import Iterator

import pytest
from test_llhls_playlist import ll_service, media

import livecast.delivery.origin as source_module
from livecast.core.errors import Unavailable, ValidationError
from livecast.core.media import MediaUnit
from livecast.delivery.origin import (
    BLOCKING_TARGET_DURATIONS,
    LL_PLAYLIST_CACHE,
    OriginSource,
)
from livecast.hls import HlsService, StreamWriter
from livecast.hls.room import PART_NAME, Room


async def settle() -> None:
    """Let every ready callback and task run (no time passes)."""
    for _ in range(10):
        await asyncio.sleep(0)


class Feed:
    def __init__(self, service: HlsService, chunks: int = 2) -> None:
        self.service = service
        self.writer: StreamWriter = service.publish_started("room")
        self.units: Iterator[MediaUnit] = iter(media(chunks))

    @property
    def room(self) -> Room:
        room = self.service.room("room")
        assert room is not None
        return room

    def until(self, condition) -> None:  # type: ignore[no-untyped-def]
        for unit in self.units:
            self.writer.write(unit)
            if condition():
                return
        raise AssertionError("media ran out")

    def stop(self) -> None:
        self.service.publish_stopped("room", self.writer)


def started(feed: Feed) -> Feed:
    feed.until(lambda: feed.room.playlist is not None and len(feed.room.playlist.entries) >= 1)
    return feed


def newest_part_uri(room: Room) -> str:
    playlist = room.playlist
    assert playlist is not None
    parts = playlist.pending or list(playlist.entries[-1].parts)
    return parts[-1].uri


async def test_blocking_request_for_the_next_part_is_answered_once_it_exists() -> None:
    service = ll_service(window=10)
    source = OriginSource(service)
    feed = started(Feed(service))
    playlist = feed.room.playlist
    assert playlist is not None
    for _ in range(12):  # the next part, a dozen times: across a segment boundary too
        msn, part = playlist.part_position()
        wanted = (msn, part + 1)
        task = asyncio.create_task(source.playlist("room", {"_HLS_msn": str(msn), "_HLS_part": str(part + 1)}))
        await settle()
        assert not task.done()
        while True:
            feed.until(lambda: True)  # one unit
            present = playlist.part_position() >= wanted
            await settle()
            if not present:
                assert not task.done(), "answered before the part existed"
                continue
            assert task.done(), "not answered once the part existed"
            break
        reply = task.result()
        assert reply is not None
        uri = newest_part_uri(feed.room)
        assert f'URI="{uri}"' in reply.body.decode()  # the part is listed ...
        assert service.segment("room", uri) is not None  # ... and can be fetched
        assert reply.cache_control == f"public, max-age={BLOCKING_TARGET_DURATIONS * playlist.target_duration}"


async def test_blocking_request_for_the_next_segment() -> None:
    service = ll_service(window=10)
    source = OriginSource(service)
    feed = started(Feed(service))
    playlist = feed.room.playlist
    assert playlist is not None
    wanted = playlist.last_sequence + 1
    task = asyncio.create_task(source.playlist("room", {"_HLS_msn": str(wanted)}))
    await settle()
    while playlist.last_sequence < wanted:
        assert not task.done()
        feed.until(lambda: True)
        await settle()
    assert task.done()
    reply = task.result()
    assert reply is not None and f"-{wanted}.m4s\n" in reply.body.decode()


async def test_requests_too_far_ahead_or_malformed_are_refused() -> None:
    service = ll_service(window=10)
    source = OriginSource(service)
    feed = started(Feed(service))
    playlist = feed.room.playlist
    assert playlist is not None
    last = playlist.last_sequence
    msn, part = playlist.part_position()
    limit = playlist.low_latency.advance_part_limit if playlist.low_latency else 0
    bad = [
        {"_HLS_msn": str(last + 3)},
        {"_HLS_part": "0"},
        {"_HLS_msn": "abc"},
        {"_HLS_msn": "-1"},
        {"_HLS_msn": "1.5"},
        {"_HLS_msn": ""},
        {"_HLS_msn": str(msn), "_HLS_part": "x"},
        {"_HLS_msn": str(msn), "_HLS_part": str(part + limit + 1)},
        {"_HLS_msn": str(last), "_HLS_skip": "NO"},
    ]
    for query in bad:
        with pytest.raises(ValidationError):
            await source.playlist("room", query)
    # the furthest allowed requests are held, not refused
    for query in ({"_HLS_msn": str(last + 2)}, {"_HLS_msn": str(msn), "_HLS_part": str(part + limit)}):
        task = asyncio.create_task(source.playlist("room", query))
        await settle()
        assert not task.done()
        task.cancel()
    # a request for what is already there is answered at once, with the delta update if asked
    reply = await source.playlist("room", {"_HLS_msn": str(last), "_HLS_skip": "YES"})
    assert reply is not None and "#EXT-X-ENDLIST" not in reply.body.decode()


async def test_held_requests_are_answered_when_the_publisher_stops() -> None:
    service = ll_service(window=10)
    source = OriginSource(service)
    feed = started(Feed(service))
    playlist = feed.room.playlist
    assert playlist is not None
    last = playlist.last_sequence
    held = [asyncio.create_task(source.playlist("room", {"_HLS_msn": str(last + 2)})) for _ in range(50)]
    hint = playlist.preload_hint
    assert hint is not None
    part_fetch = asyncio.create_task(source.segment("room", hint))
    await settle()
    assert not any(t.done() for t in held) and not part_fetch.done()
    feed.stop()
    await settle()
    assert all(t.done() for t in held) and part_fetch.done()
    for task in held:
        reply = task.result()
        assert reply is not None and reply.body.decode().endswith("#EXT-X-ENDLIST\n")
    # the hinted part either came with the final flush or never will: not found
    got = part_fetch.result()
    assert got is None or hint in service.room("room").store  # type: ignore[union-attr]
    # once ended, directives are ignored (even ones that would be refused)
    reply = await source.playlist("room", {"_HLS_msn": str(last + 50), "_HLS_part": "oops"})
    assert reply is not None and "#EXT-X-ENDLIST" in reply.body.decode()


async def test_unanswerable_requests_get_503(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source_module, "HOLD_TARGET_DURATIONS", 0.01)
    service = ll_service(window=10)
    source = OriginSource(service)
    feed = started(Feed(service))
    playlist = feed.room.playlist
    assert playlist is not None
    with pytest.raises(Unavailable):
        await source.playlist("room", {"_HLS_msn": str(playlist.last_sequence + 1)})
    assert playlist.preload_hint is not None
    with pytest.raises(Unavailable):
        await source.segment("room", playlist.preload_hint)


async def test_preload_hint_fetch_returns_the_part_once_complete() -> None:
    service = ll_service(window=10)
    source = OriginSource(service)
    feed = started(Feed(service))
    playlist = feed.room.playlist
    assert playlist is not None
    for _ in range(12):
        hint = playlist.preload_hint
        assert hint is not None
        task = asyncio.create_task(source.segment("room", hint))
        await settle()
        assert not task.done()
        while hint not in feed.room.store:
            assert not task.done()
            feed.until(lambda: True)
            await settle()
        assert task.done()
        item = task.result()
        assert item is not None and item.data == feed.room.store.get(hint).data  # type: ignore[union-attr]
        assert newest_part_uri(feed.room) == hint
    # unknown names, other sessions and parts beyond the advance limit: 404 at once
    match = PART_NAME.match(playlist.preload_hint or "")
    assert match is not None
    prefix, index = match.group(1), int(match.group(2))
    limit = playlist.low_latency.advance_part_limit if playlist.low_latency else 0
    for name in (f"{prefix}-part{index + limit + 1}.m4s", f"0000ffff-part{index}.m4s", "nonsense.m4s"):
        assert await source.segment("room", name) is None


async def test_thousands_of_held_requests_share_one_wakeup() -> None:
    service = ll_service(window=10)
    source = OriginSource(service)
    feed = started(Feed(service))
    playlist = feed.room.playlist
    assert playlist is not None
    msn, part = playlist.part_position()
    query = {"_HLS_msn": str(msn), "_HLS_part": str(part + 1)}
    count = 2000
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    tasks = [asyncio.create_task(source.playlist("room", query)) for _ in range(count)]
    await settle()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    per_request = sum(s.size_diff for s in after.compare_to(before, "filename")) / count
    print(f"held request: {per_request:.0f} bytes each (task, coroutine, timer, shielded future)")
    assert per_request < 16_000
    assert feed.room.signal.waiting and not any(t.done() for t in tasks)
    feed.until(lambda: playlist.part_position() >= (msn, part + 1))
    await settle()
    assert all(t.done() for t in tasks)
    bodies = {t.result().body for t in tasks}  # type: ignore[union-attr]
    assert len(bodies) == 1  # one rendering shared by all


async def test_plain_and_non_ll_requests_do_not_wait() -> None:
    service = ll_service(window=10)
    source = OriginSource(service)
    started(Feed(service))
    reply = await source.playlist("room", {})
    assert reply is not None and reply.cache_control == LL_PLAYLIST_CACHE
    # without LL, directives are not understood and so are ignored
    plain = HlsService(service.settings.__class__())
    plain_source = OriginSource(plain)
    writer = plain.publish_started("room")
    for unit in media(1):
        writer.write(unit)
    reply = await plain_source.playlist("room", {"_HLS_msn": "1000", "_HLS_part": "x"})
    assert reply is not None and "#EXT-X-PART" not in reply.body.decode()
    assert reply.cache_control == "public, max-age=1"
    assert await plain_source.playlist("elsewhere", {"_HLS_msn": "1"}) is None
    assert await source.playlist("elsewhere", {"_HLS_msn": "1"}) is None
