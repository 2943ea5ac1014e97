"""HlsService continuing a playlist another server made (``resume_provider``): the media
sequence goes on past the recorded one, the join carries EXT-X-DISCONTINUITY and the
discontinuity sequence counts the earlier tags; LL-HLS part names stay unique."""

from __future__ import annotations

from media_gen import parse_playlist
from test_hls_service import chunk, playlist, service_with, write_all

from livecast.hls.service import RESUME_MARGIN, Resume


def test_a_resumed_room_continues_the_recorded_timeline() -> None:
    service = service_with()
    service.resume_provider = {"room": Resume(40, 3)}.get
    writer = service.publish_started("room")
    write_all(writer, chunk(0))
    parsed = playlist(service)
    assert parsed["tags"]["EXT-X-MEDIA-SEQUENCE"] == str(40 + RESUME_MARGIN)
    assert parsed["tags"]["EXT-X-DISCONTINUITY-SEQUENCE"] == "3"
    assert [s["discontinuity"] for s in parsed["segments"]] == [True, False]
    room = service.room("room")
    assert room is not None and room.timeline() == (40 + RESUME_MARGIN + 2, 4)


def test_a_room_held_here_with_a_newer_timeline_is_kept() -> None:
    service = service_with()
    first = service.publish_started("room")
    write_all(first, chunk(0))
    service.publish_stopped("room", first)
    service.resume_provider = {"room": Resume(1, 0)}.get  # older than what this node holds
    second = service.publish_started("room")
    write_all(second, chunk(0))  # a new publisher starts its clock at 0 again
    segments = playlist(service)["segments"]
    assert [int(s["uri"].split("-")[1].split(".")[0]) for s in segments] == [0, 1, 2, 3, 4]
    assert [s["discontinuity"] for s in segments] == [False, False, False, True, False]


def test_a_room_held_here_with_an_older_timeline_is_replaced() -> None:
    service = service_with()
    first = service.publish_started("room")
    write_all(first, chunk(0))
    service.publish_stopped("room", first)
    service.resume_provider = {"room": Resume(100, 5)}.get  # the room went on elsewhere
    second = service.publish_started("room")
    write_all(second, chunk(0))
    parsed = playlist(service)
    assert parsed["tags"]["EXT-X-MEDIA-SEQUENCE"] == str(100 + RESUME_MARGIN)
    assert parsed["segments"][0]["discontinuity"] and not parsed["ended"]


def test_low_latency_parts_of_a_resumed_room_have_new_names() -> None:
    service = service_with(low_latency=True, part_target=0.5, segment_duration=2.0)
    service.resume_provider = {"room": Resume(7, 1)}.get
    writer = service.publish_started("room")
    write_all(writer, chunk(0))
    raw = service.playlist("room")
    assert raw is not None
    text = raw.decode()
    parsed = parse_playlist(text)
    assert parsed["tags"]["EXT-X-MEDIA-SEQUENCE"] == str(7 + RESUME_MARGIN)
    parts = [line.split('URI="', 1)[1].split('"', 1)[0] for line in text.splitlines()
             if line.startswith("#EXT-X-PART:")]
    assert parts and len(parts) == len(set(parts))
    assert "#EXT-X-DISCONTINUITY" in text.split(parts[0])[0]  # the join is marked before the first part
