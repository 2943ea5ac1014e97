"""LL-HLS output: playlist tags checked against rfc8216bis rules (parsed with ``m3u8``
plus regexes for what it does not model), parts and segments read back with PyAV."""

from __future__ import annotations

import io
import re

import av
import m3u8
import pytest

from livecast.config import Settings
from livecast.hls import HlsService
from livecast.hls.room import PART_NAME
from livecast.media import MediaUnit, Track
from media_gen import cached_units, decode_count, demux_summary, shift_units

PART_TARGET = 0.2


def ll_service(**hls: object) -> HlsService:
    settings = Settings()
    settings.hls.low_latency = True
    settings.hls.part_target = PART_TARGET
    for key, value in hls.items():
        setattr(settings.hls, key, value)
    return HlsService(settings)


def media(chunks: int, **kwargs: object) -> list[MediaUnit]:
    """``chunks`` x 6 s of media (3 segments of 2 s each), configs only at the start."""
    units = cached_units(6, **kwargs)
    out = list(units)
    for index in range(1, chunks):
        out += shift_units([u for u in units if not u.config], 6000 * index)
    return out


def live_playlist(service: HlsService, slug: str = "room", skip: bool = False) -> tuple[str, m3u8.M3U8]:
    room = service.room(slug)
    assert room is not None and room.playlist is not None
    text = room.playlist.render(skip=skip).decode()
    return text, m3u8.loads(text)


def check_ll_rules(text: str, parsed: m3u8.M3U8, part_target: float = PART_TARGET) -> None:
    """The LL-HLS rules a media playlist must follow (rfc8216bis 4.4.3.7, 4.4.3.8, 4.4.4.9, 4.4.5.3)."""
    target = parsed.target_duration
    assert parsed.version is not None and parsed.version >= 9
    assert parsed.part_inf.part_target == pytest.approx(part_target)
    control = parsed.server_control
    assert control.can_block_reload == "YES"
    assert control.part_hold_back >= 3 * part_target - 1e-9  # MUST >= 2x, SHOULD >= 3x
    assert control.hold_back >= 3 * target
    if control.can_skip_until is not None:
        assert control.can_skip_until >= 6 * target
    assert "EXT-X-RENDITION-REPORT" not in text  # a single rendition
    complete = [s for s in parsed.segments if s.uri]
    assert parsed.segments and all(s.program_date_time is not None for s in complete)
    # one date per segment, the one being made included (m3u8 does not attach it to a URI-less one)
    assert len(re.findall(r"^#EXT-X-PROGRAM-DATE-TIME:", text, re.M)) == len(parsed.segments)
    for segment in complete:
        assert round(segment.duration) <= target
    # part durations: <= PART-TARGET; >= 85% except the last part of a segment
    for segment in parsed.segments:
        for number, part in enumerate(segment.parts):
            assert PART_NAME.match(part.uri), part.uri
            assert part.duration <= part_target + 1e-9
            is_last = segment.uri is not None and number == len(segment.parts) - 1
            if not is_last:
                assert part.duration >= 0.85 * part_target - 1e-9, (segment.uri, number, part.duration)
        if segment.uri and segment.parts:
            assert sum(p.duration for p in segment.parts) == pytest.approx(segment.duration, abs=1e-6)
            assert segment.parts[0].independent == "YES"  # segments start at keyframes
    # parts are listed at least for the segments within the last 3 target durations
    end = sum(s.duration for s in complete) + sum(p.duration for s in parsed.segments if not s.uri for p in s.parts)
    clock = 0.0
    for segment in complete:
        clock += segment.duration
        if end - clock < 3 * target:
            assert segment.parts, f"{segment.uri} ends within 3 target durations but has no parts"
    # the preload hint names the part after the last listed one
    if "#EXT-X-ENDLIST" not in text:
        hint = parsed.preload_hint
        assert hint is not None and hint.hint_type == "PART"
        last = [p for s in parsed.segments for p in s.parts][-1]
        last_index = int(PART_NAME.match(last.uri).group(2))  # type: ignore[union-attr]
        hinted = PART_NAME.match(hint.uri)
        assert hinted is not None and int(hinted.group(2)) == last_index + 1
        assert len(re.findall(r"^#EXT-X-PRELOAD-HINT:", text, re.M)) == 1
    else:
        assert "#EXT-X-PRELOAD-HINT" not in text
    # attribute syntax the m3u8 package does not check
    assert re.search(r"^#EXT-X-PART-INF:PART-TARGET=\d+\.\d+$", text, re.M)
    for line in re.findall(r"^#EXT-X-PART:.*$", text, re.M):
        assert re.fullmatch(r'#EXT-X-PART:DURATION=\d+\.\d{3},URI="[^"]+"(,INDEPENDENT=YES)?', line), line


def test_live_playlist_follows_the_ll_hls_rules() -> None:
    service = ll_service(window=10)
    writer = service.publish_started("room")
    units = media(3)
    seen_parts = 0
    for number, unit in enumerate(units):
        writer.write(unit)
        if number % 97 == 0 and service.playlist("room") is not None:
            text, parsed = live_playlist(service)
            check_ll_rules(text, parsed)
            seen_parts = max(seen_parts, sum(len(s.parts) for s in parsed.segments))
    text, parsed = live_playlist(service)
    check_ll_rules(text, parsed)
    assert seen_parts >= 10
    # old segments lost their parts, recent ones have them; the segment being made is listed as parts
    complete = [s for s in parsed.segments if s.uri]
    assert not complete[0].parts and complete[-1].parts
    assert parsed.segments[-1].uri is None and parsed.segments[-1].parts
    service.publish_stopped("room", writer)
    text, parsed = live_playlist(service)
    check_ll_rules(text, parsed)
    assert "#EXT-X-ENDLIST" in text and all(s.uri for s in parsed.segments)


def test_low_latency_forces_fmp4_even_with_mpegts_configured() -> None:
    service = ll_service(container="mpegts")
    writer = service.publish_started("room")
    for unit in media(1):
        writer.write(unit)
    text, parsed = live_playlist(service)
    assert all(s.uri.endswith(".m4s") for s in parsed.segments if s.uri) and "#EXT-X-MAP:" in text


def test_parts_and_segments_decode_and_segments_are_their_parts() -> None:
    service = ll_service(window=10)
    units = media(1)
    writer = service.publish_started("room")
    for unit in units:
        writer.write(unit)
    room = service.room("room")
    assert room is not None and room.playlist is not None
    service.publish_stopped("room", writer)
    # every part ever made (3 segments: all still stored), in order
    names = sorted((n for n in room.store.names() if PART_NAME.match(n)), key=lambda n: int(n.split("part")[1][:-4]))
    assert len(names) == 30
    text, parsed = live_playlist(service)
    init = service.segment("room", parsed.segments[0].init_section.uri)
    assert init is not None
    parts = [service.segment("room", name) for name in names]
    assert all(p is not None for p in parts)
    segments = [service.segment("room", s.uri) for s in parsed.segments]
    assert all(s is not None for s in segments)
    joined_segments = b"".join(s.data for s in segments if s)
    assert b"".join(p.data for p in parts if p) == joined_segments
    sent = [u for u in units if u.track is Track.VIDEO and not u.config]
    whole = init.data + joined_segments
    assert demux_summary(whole)["video"][0] == len(sent)
    assert decode_count(whole) == len(sent)
    decoded_from_parts = 0
    for part in parts:  # each part with the init is a playable little file
        assert part is not None
        with av.open(io.BytesIO(init.data + part.data)) as single:
            assert sum(1 for p in single.demux(single.streams.video[0]) if p.size) >= 1
    for segment in segments:
        assert segment is not None
        data = init.data + segment.data
        with av.open(io.BytesIO(data)) as single:
            first = next(p for p in single.demux(single.streams.video[0]) if p.size)
            assert first.is_keyframe
        decoded_from_parts += decode_count(data)
    assert decoded_from_parts == len(sent)


def test_independent_parts_start_with_keyframes() -> None:
    service = ll_service(window=10)
    units = media(1)
    writer = service.publish_started("room")
    for unit in units:
        writer.write(unit)
    _, parsed = live_playlist(service)
    init = service.segment("room", parsed.segments[0].init_section.uri)
    assert init is not None
    for segment in parsed.segments:
        for part in segment.parts:
            item = service.segment("room", part.uri)
            assert item is not None
            with av.open(io.BytesIO(init.data + item.data)) as single:
                first = next(p for p in single.demux(single.streams.video[0]) if p.size)
                assert first.is_keyframe == (part.independent == "YES")


def test_delta_update_skips_old_segments() -> None:
    service = ll_service(window=12)
    writer = service.publish_started("room")
    for unit in media(5):
        writer.write(unit)
    text, full = live_playlist(service)
    delta_text, delta = live_playlist(service, skip=True)
    target = full.target_duration
    assert full.server_control.can_skip_until == 6 * target
    assert delta.version >= 9
    match = re.search(r"^#EXT-X-SKIP:SKIPPED-SEGMENTS=(\d+)$", delta_text, re.M)
    assert match
    skipped = int(match.group(1))
    assert skipped >= 1
    complete = [s for s in full.segments if s.uri]
    # the skipped ones are all older than CAN-SKIP-UNTIL; the rest is the same as in the full playlist
    end = sum(s.duration for s in complete) + sum(p.duration for s in full.segments if not s.uri for p in s.parts)
    assert end - sum(s.duration for s in complete[:skipped]) >= 6 * target
    assert [s.uri for s in delta.segments] == [s.uri for s in full.segments][skipped:]
    assert delta.media_sequence == full.media_sequence
    check_ll_rules(delta_text, delta)
    assert "#EXT-X-MAP:" in delta_text


def test_short_window_offers_no_delta_updates() -> None:
    service = ll_service(window=6)
    writer = service.publish_started("room")
    for unit in media(2):
        writer.write(unit)
    text, parsed = live_playlist(service)
    assert parsed.server_control.can_skip_until is None
    assert live_playlist(service, skip=True)[0] == text


def test_audio_only_parts_are_all_independent() -> None:
    service = ll_service(window=10)
    writer = service.publish_started("room", has_video=False, has_audio=True)
    for unit in cached_units(6, video=None):
        writer.write(unit)
    text, parsed = live_playlist(service)
    check_ll_rules(text, parsed)
    parts = [p for s in parsed.segments for p in s.parts]
    assert parts and all(p.independent == "YES" for p in parts)


def test_old_parts_are_freed() -> None:
    service = ll_service(window=10)
    writer = service.publish_started("room")
    for unit in media(4):
        writer.write(unit)
    room = service.room("room")
    assert room is not None
    stored = [n for n in room.store.names() if PART_NAME.match(n)]
    # parts of about the last 3 target durations plus a few segments of grace, not all 120
    assert 10 < len(stored) <= 10 * 8
