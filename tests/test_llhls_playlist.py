"""LL-HLS output: playlist tags checked against rfc8216bis rules (parsed with ``m3u8``
plus regexes for what it does not model), parts and segments read back with PyAV."""

from __future__ import annotations

import contextlib
import io
import re

import av
import m3u8
import pytest

from livecast.config import Settings
from livecast.hls import HlsService
from livecast.hls.playlist import LowLatency, MediaPlaylist, PartEntry, PlaylistEntry
from livecast.hls.room import PART_NAME
from livecast.core.media import MediaUnit, Track
from helpers import make_room, rtmp_url, wait_playlist
from media_gen import cached_units, decode_count, demux_summary, shift_units
from publisher import PublishFailed, start_publisher

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
    check_part_window(parsed, part_target)
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


def check_part_window(parsed: m3u8.M3U8, part_target: float = PART_TARGET) -> None:
    """rfc8216bis 6.2.2: a part is listed exactly while it starts within three target
    durations of the playlist's end (parts that start earlier are partly beyond that);
    parts go in playlist order, so only the oldest segment with parts may list a tail of them."""
    horizon = parsed_end(parsed) - 3 * parsed.target_duration
    clock = 0.0
    with_parts = [n for n, s in enumerate(parsed.segments) if s.parts]
    assert with_parts == list(range(with_parts[0], len(parsed.segments))) if with_parts else True
    for number, segment in enumerate(parsed.segments):
        listed = sum(p.duration for p in segment.parts)
        duration = segment.duration if segment.uri else listed
        start = clock + duration - listed  # of its first listed part
        if segment.parts:
            assert start >= horizon - 1e-6, f"{segment.parts[0].uri} starts {horizon - start:.3f}s too early"
            if start - 1e-6 > clock:  # a tail: the part before it started before the horizon
                assert number == with_parts[0] and start - part_target < horizon + 1e-6
            else:  # all its parts: they add up to the segment, which starts at a keyframe
                assert not segment.uri or listed == pytest.approx(segment.duration, abs=1e-6)
                assert segment.parts[0].independent == "YES"
        elif segment.uri:
            assert clock + duration <= horizon + part_target + 1e-6, f"{segment.uri} should list its last parts"
        clock += duration


def parsed_end(parsed: m3u8.M3U8) -> float:
    return sum(s.duration if s.uri else sum(p.duration for p in s.parts) for s in parsed.segments)


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


# -- the parts window on a playlist of known durations ------------------------------


def add_parts(playlist: MediaPlaylist, durations: list[float], close: bool = True) -> None:
    """Parts of ``durations`` seconds (named by a global counter), then the segment they make."""
    sequence = playlist.next_sequence
    for duration in durations:
        number = sum(len(e.parts) for e in playlist.entries) + len(playlist.pending)
        playlist.add_part(PartEntry(f"s{sequence}p{number}.m4s", duration, not playlist.pending), False,
                          "init.mp4", f"next{number + 1}.m4s", 1_700_000_000.0)
    if close:
        playlist.append(PlaylistEntry(sequence, f"s{sequence}.m4s", sum(durations), 1_700_000_000.0 + 2 * sequence,
                                      False, "init.mp4", tuple(playlist.pending)))


def listed(text: str) -> list[str]:
    return re.findall(r'^#EXT-X-PART:.*URI="([^"]+)"', text, re.M)


def test_parts_are_listed_only_while_they_start_within_three_target_durations() -> None:
    playlist = MediaPlaylist("fmp4", 2.0, low_latency=LowLatency(0.5, can_skip=True))
    for _ in range(5):
        add_parts(playlist, [0.5] * 4)  # five segments of 2 s: 0-10 s
    add_parts(playlist, [0.5] * 3, close=False)  # 1.5 s of the sixth: the playlist ends at 11.5 s
    text = playlist.render().decode()
    # 11.5 - 3 x 2 = 5.5: of segment 2 (4-6 s) only the part starting at 5.5 s, then everything after
    assert listed(text) == ["s2p11.m4s"] + [f"s3p{n}.m4s" for n in range(12, 16)] \
        + [f"s4p{n}.m4s" for n in range(16, 20)] + ["s5p20.m4s", "s5p21.m4s", "s5p22.m4s"]
    assert sum(float(d) for d in re.findall(r"^#EXT-X-PART:DURATION=([\d.]+)", text, re.M)) == pytest.approx(6.0)
    assert text.index("s2p11.m4s") < text.index("\ns2.m4s\n")  # the tail sits before its segment's URI
    assert '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="next23.m4s"' in text
    parsed = m3u8.loads(text)
    check_part_window(parsed, 0.5)
    # 0.1 s more: the part that started at 5.5 s is now 3.1 target durations back
    add_parts(playlist, [0.1], close=False)
    assert listed(playlist.render().decode())[0] == "s3p12.m4s"
    # the segment closes: nothing moves (its end is where its parts ended)
    playlist.append(PlaylistEntry(5, "s5.m4s", 1.6, 0.0, False, "init.mp4", tuple(playlist.pending)))
    text = playlist.render().decode()
    assert listed(text)[0] == "s3p12.m4s" and listed(text)[-1] == "s5p23.m4s"
    # two more segments (15.6 s): a delta update lists the same parts as the full playlist
    add_parts(playlist, [0.5] * 4)
    add_parts(playlist, [0.5] * 4)
    text = playlist.render().decode()
    assert listed(text)[0] == "s5p20.m4s"  # 15.6 - 6 = 9.6: segment 4's parts all start before
    delta = playlist.render(skip=True).decode()
    assert "#EXT-X-SKIP:SKIPPED-SEGMENTS=" in delta and listed(delta) == listed(text)


def test_removed_parts_never_come_back() -> None:
    playlist = MediaPlaylist("fmp4", 1.0, low_latency=LowLatency(0.25))
    for _ in range(6):
        add_parts(playlist, [0.25] * 4)  # six 1 s segments: parts of the last 3 s listed
    before = listed(playlist.render().decode())
    assert before[0] == "s3p12.m4s" and len(before) == 12
    # a 2.5 s segment raises the target duration to 3: the window grows to 9 s, but the
    # parts already dropped stay dropped (tags go in playlist order, rfc8216bis 6.2.2)
    add_parts(playlist, [0.25] * 10, close=False)
    growing = listed(playlist.render().decode())
    assert growing[0] == "s5p22.m4s"  # 8.5 - 3 x 1: the 2.5 s segment is still being made
    playlist.append(PlaylistEntry(6, "s6.m4s", 2.5, 0.0, False, "init.mp4", tuple(playlist.pending)))
    assert playlist.target_duration == 3
    after = listed(playlist.render().decode())
    assert after == growing


@pytest.mark.slow
async def test_parts_window_over_http_on_a_live_node(node_factory) -> None:
    node = await node_factory(hls={"low_latency": True, "part_target": PART_TARGET, "segment_duration": 1.0,
                                   "window": 10})
    room = await make_room(node)
    slug = room["slug"]
    publisher = await start_publisher(rtmp_url(node, room["stream_key"]), seconds=8.0, fps=30, gop=30, realtime=True)
    try:
        text = await wait_playlist(node, slug, lambda t: t.count("#EXTINF") >= 4)
        previous = listed(text)
        tails = unlisted = 0
        for _ in range(12):
            parsed = m3u8.loads(text)
            last = len(parsed.segments) - 1
            msn, part = parsed.media_sequence + last, len(parsed.segments[last].parts)
            async with node.http.get(node.url(f"/hls/{slug}/index.m3u8"),
                                     params={"_HLS_msn": str(msn), "_HLS_part": str(part)}) as r:
                assert r.status == 200
                text = await r.text()
            parsed = m3u8.loads(text)
            check_ll_rules(text, parsed)  # the window rule included (check_part_window)
            oldest = next(s for s in parsed.segments if s.parts)
            tails += bool(oldest.uri) and sum(p.duration for p in oldest.parts) < oldest.duration - 1e-6
            now = listed(text)
            gone = [uri for uri in previous if uri not in now]
            assert gone == previous[: len(gone)]  # removed in playlist order
            for uri in gone:  # and still fetchable after (for three more target durations)
                async with node.http.get(node.url(f"/hls/{slug}/{uri}")) as r:
                    assert r.status == 200 and (await r.read())[4:8] == b"moof"
                unlisted += 1
            previous = now
        assert tails >= 3  # per part, not per segment: the oldest listed segment shows only its last parts
        assert unlisted >= 5
    finally:
        await publisher.stop()
        with contextlib.suppress(PublishFailed):
            await publisher.result(timeout=30)


def test_the_segment_being_made_keeps_all_its_parts() -> None:
    # a keyframe interval longer than three target durations: the segment being made
    # outgrows the window before its length can raise the target duration
    playlist = MediaPlaylist("fmp4", 1.0, low_latency=LowLatency(0.25))
    add_parts(playlist, [0.25] * 4)
    add_parts(playlist, [0.25] * 16, close=False)  # 4 s and counting, target duration still 1
    names = listed(playlist.render().decode())
    assert names == [f"s1p{n}.m4s" for n in range(4, 20)]  # s0's parts gone, none of s1's
    assert playlist.part_position() == (1, 15)  # what _HLS_part counts: from the segment's first part
