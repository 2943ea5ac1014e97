"""HlsService: publish sessions, reconnects, takeovers, expiry, memory bounds, write-through."""

from __future__ import annotations

import asyncio
import platform
from pathlib import Path

import pytest

from helpers import wait_for

from livecast.config import Settings
from livecast.hls import HlsService, StreamWriter
from livecast.hls.store import release_free_memory
from livecast.core.media import MediaUnit
from media_gen import cached_units, demux_summary, parse_playlist, shift_units


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def service_with(clock: FakeClock | None = None, **hls: object) -> HlsService:
    settings = Settings()
    for key, value in hls.items():
        setattr(settings.hls, key, value)
    if clock is None:
        return HlsService(settings)
    return HlsService(settings, monotonic=clock)


def chunk(index: int, audio: bool = True) -> list[MediaUnit]:
    """6 s of media (3 segments) placed at 6 s * index; configs only in chunk 0."""
    units = cached_units(6, audio=audio)
    if index == 0:
        return list(units)
    return shift_units([u for u in units if not u.config], 6000 * index)


def video_chunks(count: int) -> list[MediaUnit]:
    return [u for i in range(count) for u in chunk(i, audio=False)]


def write_all(writer: StreamWriter, units: list[MediaUnit]) -> None:
    for unit in units:
        writer.write(unit)


def playlist(service: HlsService, slug: str = "room") -> dict:
    raw = service.playlist(slug)
    assert raw is not None
    return parse_playlist(raw.decode())


def test_stop_adds_endlist_and_keeps_serving() -> None:
    service = service_with()
    writer = service.publish_started("room")
    write_all(writer, chunk(0))
    live = playlist(service)
    assert not live["ended"] and len(live["segments"]) == 2  # the third is still open
    service.publish_stopped("room", writer)
    ended = playlist(service)
    assert ended["ended"] and len(ended["segments"]) == 3
    info = service.info("room")
    assert info == {
        "container": "mpegts", "segments": 3, "media_sequence": 0, "target_duration": 2,
        "ended": True, "bytes": info["bytes"],
    }
    assert info["bytes"] == sum(len(service.segment("room", s["uri"]).data) for s in ended["segments"])
    writer.write(chunk(1)[0])  # writes after the stop are ignored
    assert len(playlist(service)["segments"]) == 3


def test_reconnect_within_grace_continues_with_a_discontinuity() -> None:
    clock = FakeClock()
    service = service_with(clock, reconnect_grace=30.0, window=4)
    first = service.publish_started("room")
    write_all(first, chunk(0))
    service.publish_stopped("room", first)
    clock.now += 10
    second = service.publish_started("room")
    assert not playlist(service)["ended"]  # ENDLIST removed at once
    write_all(second, list(cached_units(6)))  # the new publisher starts its clock at 0 again
    service.publish_stopped("room", second)
    parsed = playlist(service)
    segments = parsed["segments"]
    assert parsed["tags"]["EXT-X-MEDIA-SEQUENCE"] == "2"
    assert [s["discontinuity"] for s in segments] == [False, True, False, False]
    prefixes = [s["uri"].split("-")[0] for s in segments]
    assert prefixes[0] != prefixes[1] == prefixes[3]
    assert [int(s["uri"].split("-")[1].split(".")[0]) for s in segments] == [2, 3, 4, 5]
    assert parsed["ended"] and parsed["tags"]["EXT-X-DISCONTINUITY-SEQUENCE"] == "0"


def test_discontinuity_sequence_counts_tags_that_slid_out() -> None:
    clock = FakeClock()
    service = service_with(clock, window=2)
    for _ in range(3):
        writer = service.publish_started("room")
        write_all(writer, chunk(0))
        service.publish_stopped("room", writer)
    parsed = playlist(service)
    # 9 segments, discontinuities before 3 and 6; 7 and 8 listed
    assert parsed["tags"]["EXT-X-MEDIA-SEQUENCE"] == "7"
    assert parsed["tags"]["EXT-X-DISCONTINUITY-SEQUENCE"] == "2"
    assert not any(s["discontinuity"] for s in parsed["segments"])


def test_after_the_grace_the_room_expires_and_starts_fresh() -> None:
    clock = FakeClock()
    service = service_with(clock, reconnect_grace=30.0)
    events: list[str] = []
    service.add_listener(events.append)
    writer = service.publish_started("room")
    write_all(writer, chunk(0))
    service.publish_stopped("room", writer)
    name = playlist(service)["segments"][0]["uri"]
    clock.now += 29
    service.sweep()
    assert service.playlist("room") is not None
    clock.now += 2
    events.clear()
    service.sweep()
    assert events == ["room"]
    assert service.playlist("room") is None and service.segment("room", name) is None
    assert service.info("room") is None
    writer = service.publish_started("room")
    write_all(writer, chunk(0))
    service.publish_stopped("room", writer)
    fresh = playlist(service)
    assert fresh["tags"]["EXT-X-MEDIA-SEQUENCE"] == "0"
    assert not any(s["discontinuity"] for s in fresh["segments"])


def test_takeover_continues_and_ignores_the_old_writer() -> None:
    service = service_with()
    old = service.publish_started("room")
    write_all(old, chunk(0)[:300])  # about 3 s: one segment out, one open
    new = service.publish_started("room")  # no stop in between
    segments = playlist(service)["segments"]
    assert len(segments) == 2  # the old session's open segment was flushed
    old.write(chunk(0)[300])
    service.publish_stopped("room", old)  # stale: ignored
    assert not playlist(service)["ended"]
    write_all(new, list(cached_units(6)))
    service.publish_stopped("room", new)
    parsed = playlist(service)
    assert parsed["ended"]
    assert [s["discontinuity"] for s in parsed["segments"]] == [False, False, True, False, False]


def test_window_slides_and_old_segments_stay_for_the_grace() -> None:
    service = service_with(window=3, grace_segments=2)
    writer = service.publish_started("room", has_audio=False)
    write_all(writer, video_chunks(4))
    service.publish_stopped("room", writer)
    parsed = playlist(service)
    listed = [s["uri"] for s in parsed["segments"]]
    assert parsed["tags"]["EXT-X-MEDIA-SEQUENCE"] == "9" and len(listed) == 3
    prefix = listed[0].split("-")[0]
    for sequence in range(12):
        item = service.segment("room", f"{prefix}-{sequence}.ts")
        assert (item is not None) == (sequence >= 7), sequence
    assert service.info("room")["segments"] == 3


def test_fmp4_init_lives_as_long_as_its_segments() -> None:
    clock = FakeClock()
    service = service_with(clock, container="fmp4", window=2, grace_segments=1)
    writer = service.publish_started("room")
    write_all(writer, chunk(0))
    service.publish_stopped("room", writer)
    old_init = playlist(service)["segments"][0]["map"]
    writer = service.publish_started("room")
    write_all(writer, list(cached_units(6)))
    service.publish_stopped("room", writer)
    parsed = playlist(service)
    assert all(s["map"] != old_init for s in parsed["segments"])
    assert service.segment("room", old_init) is None
    new_init = service.segment("room", parsed["segments"][0]["map"])
    assert new_init is not None and new_init.content_type == "video/mp4" and new_init.duration == 0.0
    segment = service.segment("room", parsed["segments"][0]["uri"])
    assert segment is not None and segment.content_type == "video/mp4"


def test_stream_byte_bound_shrinks_the_window_but_keeps_listed_segments() -> None:
    units = video_chunks(3)
    probe = service_with()
    writer = probe.publish_started("room", has_audio=False)
    write_all(writer, units)
    probe.publish_stopped("room", writer)
    sizes = [len(probe.segment("room", s["uri"]).data) for s in playlist(probe)["segments"]]
    bound = int(max(sizes) * 2.5)
    service = service_with(window=6, grace_segments=6, max_stream_bytes=bound)
    writer = service.publish_started("room", has_audio=False)
    for unit in units:
        writer.write(unit)
        assert service.info("room")["bytes"] <= bound
        raw = service.playlist("room")
        if raw is not None:
            for segment in parse_playlist(raw.decode())["segments"]:
                assert service.segment("room", segment["uri"]) is not None
    service.publish_stopped("room", writer)
    assert 1 <= len(playlist(service)["segments"]) <= 2


def test_total_byte_bound_across_rooms() -> None:
    units = video_chunks(2)
    service = service_with(window=6, grace_segments=6)
    writer = service.publish_started("probe", has_audio=False)
    write_all(writer, units)
    service.publish_stopped("probe", writer)
    per_room = service.info("probe")["bytes"]
    limit = int(per_room * 1.2)
    service = service_with(window=6, grace_segments=6, max_total_bytes=limit)
    writers = {slug: service.publish_started(slug, has_audio=False) for slug in ("a", "b")}
    for unit in units:
        for writer in writers.values():
            writer.write(unit)
        assert service._budget.used <= limit
    for slug, writer in writers.items():
        service.publish_stopped(slug, writer)
        assert len(playlist(service, slug)["segments"]) >= 1
    assert service.info("a")["bytes"] + service.info("b")["bytes"] == service._budget.used <= limit


def test_metadata_hints_skip_the_detection_wait() -> None:
    units = cached_units(6, video=None, audio="aac")
    service = service_with()
    writer = service.publish_started("room")
    writer.set_metadata({"audiocodecid": 10, "audiosamplerate": 48000})
    sent = 0
    for unit in units:
        writer.write(unit)
        sent += 1
        if service.playlist("room") is not None:
            break
    first = [u for u in units if not u.config][0]
    last = units[sent - 1]
    assert last.dts - first.dts < 2100  # the first segment came out at 2 s, not 3 s


def test_listeners_hear_every_change() -> None:
    service = service_with()
    events: list[str] = []
    service.add_listener(events.append)
    service.add_listener(lambda slug: 1 / 0)  # a broken listener does not matter
    writer = service.publish_started("room")
    write_all(writer, chunk(0))
    assert events == ["room", "room"]
    service.publish_stopped("room", writer)
    assert events == ["room"] * 4  # last segment, then ENDLIST


async def test_write_through_mirrors_files(tmp_path: Path) -> None:
    settings = Settings()
    settings.server.data_dir = str(tmp_path)
    settings.hls.write_through = True
    settings.hls.window = 2
    settings.hls.grace_segments = 1
    settings.hls.reconnect_grace = 0.2
    (tmp_path / "hls" / "stale").mkdir(parents=True)
    service = HlsService(settings)
    await service.start()
    writer = service.publish_started("room", has_audio=False)
    write_all(writer, video_chunks(2))
    service.publish_stopped("room", writer)
    for _ in range(100):
        await asyncio.sleep(0.01)
        room_dir = tmp_path / "hls" / "room"
        files = sorted(p.name for p in room_dir.iterdir()) if room_dir.is_dir() else []
        if len(files) == 4:
            break
    parsed = playlist(service)
    assert (room_dir / "index.m3u8").read_bytes() == service.playlist("room")
    for segment in parsed["segments"]:
        assert (room_dir / segment["uri"]).read_bytes() == service.segment("room", segment["uri"]).data
    assert len(files) == 4  # playlist, 2 listed, 1 in grace: older files deleted
    assert not (tmp_path / "hls" / "stale").exists()
    assert not any(name.endswith(".tmp") for name in files)
    # the sweeper expires the room and removes its directory
    await wait_for(lambda: service.playlist("room") is None, what="the room expired")
    assert service.playlist("room") is None
    await service.close()
    assert not room_dir.exists()


async def test_close_ends_live_sessions() -> None:
    service = service_with()
    await service.start()
    writer = service.publish_started("room")
    write_all(writer, chunk(0))
    await service.close()
    parsed = playlist(service)
    assert parsed["ended"] and len(parsed["segments"]) == 3
    audio = demux_summary(service.segment("room", parsed["segments"][0]["uri"]).data)
    assert audio["video"][0] == 60


@pytest.mark.parametrize("container", ["mpegts", "fmp4"])
def test_segment_names_are_unique_per_session(container: str) -> None:
    service = service_with(container=container)
    names: set[str] = set()
    for _ in range(3):
        writer = service.publish_started("room")
        write_all(writer, chunk(0))
        service.publish_stopped("room", writer)
        names.update(s["uri"] for s in playlist(service)["segments"])
    assert len(names) == 9 and len({n.split("-")[0] for n in names}) == 3
    assert service.segment("room", "nonsense.ts") is None and service.segment("other", "x") is None


def test_program_date_time_never_goes_back_across_a_reconnect() -> None:
    from datetime import datetime

    service = service_with()
    for _ in range(2):  # both sessions are written faster than real time
        writer = service.publish_started("room")
        write_all(writer, chunk(0))
        service.publish_stopped("room", writer)
    segments = playlist(service)["segments"]
    stamps = [datetime.fromisoformat(s["pdt"].replace("Z", "+00:00")).timestamp() for s in segments]
    for (a, b), segment in zip(zip(stamps, stamps[1:], strict=False), segments, strict=False):
        assert b >= a + segment["duration"] - 0.001


def test_free_heap_memory_is_released_on_glibc() -> None:
    # freed segments leave holes in the heap; the sweeper trims them back to the OS
    assert release_free_memory() is (platform.libc_ver()[0] == "glibc")
