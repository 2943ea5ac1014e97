"""MPEG-TS continuity across segments: counters run on per PID through one publish
session, and the discontinuity indicator marks only real breaks (a new session, a
takeover, a timeline break). Checked with the packet reader in ts_reader.py, on
segments made from real media in process and fetched over HTTP from a real node."""

from __future__ import annotations

import io
import random

import av
import pytest
from helpers import make_room, rtmp_url, segment_uris, wait_playlist
from publisher import PublishFailed, publish_async, start_publisher
from ts_reader import PACKET, TsPacket, continuity_errors, discontinuities, packets

from livecast.hls.continuity import TsContinuity
from media_gen import cached_units
from test_hls_output import make_service, publish, read_back

FPS = 30


def first_packets(stream: list[TsPacket]) -> list[TsPacket]:
    """The first packet of each PID."""
    seen: dict[int, TsPacket] = {}
    for packet in stream:
        seen.setdefault(packet.pid, packet)
    return list(seen.values())


def corrupt_packets(data: bytes) -> int:
    """Packets FFmpeg's TS demuxer flags as corrupt: it does so on a continuity error."""
    with av.open(io.BytesIO(data), format="mpegts") as container:
        return sum(1 for packet in container.demux() if packet.size and packet.is_corrupt)


def ts_packet(pid: int, cc: int, payload: bool = True, adaptation: bool = False, indicator: bool = False,
              fill: int = 0xAA) -> bytes:
    control = (2 if adaptation else 0) | (1 if payload else 0)
    head = bytes([0x47, 0x40 | pid >> 8, pid & 0xFF, control << 4 | cc])
    if not adaptation:
        return head + bytes([fill]) * 184
    length = 183 if not payload else 1
    field = bytes([length, 0x80 if indicator else 0]) + b"\xff" * (length - 1)
    return head + field + bytes([fill]) * (184 - 1 - length)


# -- in process: real media, the HLS service, the bytes it would serve -------------


def test_counters_run_on_across_the_segments_of_a_session() -> None:
    service = make_service("mpegts")
    publish(service, cached_units(6))
    _, whole, alone = read_back(service)
    assert len(alone) == 3
    stream = packets(whole)
    assert continuity_errors(stream) == []
    # the indicator only on each PID's first packet, all in the first segment
    assert discontinuities(stream) == first_packets(stream)
    assert all(p.offset < len(alone[0]) for p in discontinuities(stream))
    assert corrupt_packets(whole) == 0
    # each segment still demuxes alone (PAT/PMT first), its counters just do not start at 0
    later = packets(alone[1])
    assert later[0].pid in (0x00, 0x11)
    assert any(p.continuity_counter != 0 for p in first_packets(later))


def test_a_timeline_break_keeps_the_indicator_where_it_breaks() -> None:
    units = list(cached_units(4))
    service = make_service("mpegts")
    publish(service, units + [u for u in units if not u.config])  # timestamps start again
    parsed, whole, alone = read_back(service)
    flags = [s["discontinuity"] for s in parsed["segments"]]
    assert flags == [False, False, True, False]
    stream = packets(whole)
    assert continuity_errors(stream) == []
    starts = [sum(len(a) for a in alone[:n]) for n in range(len(alone) + 1)]
    marked = {next(n for n in range(len(alone)) if starts[n] <= p.offset < starts[n + 1])
              for p in discontinuities(stream)}
    assert marked == {0, 2}  # the session's start and the break, nowhere else
    third = packets(alone[2])
    assert discontinuities(third) == first_packets(third)


def test_a_new_session_starts_with_the_indicator() -> None:
    units = list(cached_units(4))
    service = make_service("mpegts", reconnect_grace=30)
    publish(service, units)
    publish(service, units)  # a reconnect within the grace: the same playlist goes on
    parsed, whole, alone = read_back(service)
    flags = [s["discontinuity"] for s in parsed["segments"]]
    first_of_second = flags.index(True)
    stream = packets(whole)
    start = sum(len(a) for a in alone[:first_of_second])
    marked = discontinuities(stream)
    assert marked and {p.offset < len(alone[0]) or start <= p.offset < start + len(alone[first_of_second])
                       for p in marked} == {True}
    assert discontinuities(packets(alone[first_of_second])) == first_packets(packets(alone[first_of_second]))


# -- the rewriter on crafted packets ------------------------------------------------


def test_adaptation_only_packets_and_duplicates_keep_their_counter() -> None:
    rewriter = TsContinuity()
    first = ts_packet(0x100, 0, adaptation=True, indicator=True) + ts_packet(0x100, 1) + ts_packet(0x100, 2)
    assert rewriter.rewrite(first, False) == first  # the session's first segment: as the muxer made it
    # the next segment starts at 0 again: an adaptation-only packet, a packet and its duplicate
    again = ts_packet(0x100, 0, payload=False, adaptation=True, indicator=True) + ts_packet(0x100, 1) \
        + ts_packet(0x100, 1) + ts_packet(0x100, 2, fill=0xBB) + ts_packet(0x101, 0)
    stream = packets(first + rewriter.rewrite(again, False))
    assert [p.continuity_counter for p in stream] == [0, 1, 2, 2, 3, 3, 4, 0]
    assert continuity_errors(stream) == [] and len(discontinuities(stream)) == 1
    # a marked break keeps the indicator; the counters still run on
    marked = packets(rewriter.rewrite(ts_packet(0x100, 0, adaptation=True, indicator=True), True))
    assert marked[0].discontinuity and marked[0].continuity_counter == 5


def test_counters_wrap_and_odd_input_is_left_alone() -> None:
    rewriter = TsContinuity()
    segment = b"".join(ts_packet(0x100, n & 15) for n in range(20))
    out = rewriter.rewrite(segment, False) + rewriter.rewrite(segment, False)
    assert [p.continuity_counter for p in packets(out)] == [n & 15 for n in range(40)]
    for odd in (segment[:-1], b"\x00" + segment[1:], b""):
        assert rewriter.rewrite(odd, False) == odd
    assert rewriter.unaligned == 3
    assert len(segment) % PACKET == 0


def reference_rewrite(last: dict[int, int], segment: bytes, keep_indicator: bool) -> bytes:
    """The rule, packet by packet: each PID's counters move by one shift per segment, so its
    first packet continues the last one written before (plus one if it carries payload)."""
    out, shifts = bytearray(segment), {}
    for pos in range(0, len(out), PACKET):
        pid = (out[pos + 1] & 0x1F) << 8 | out[pos + 2]
        header = out[pos + 3]
        if pid not in shifts:
            if not keep_indicator and header & 0x20 and out[pos + 4] and out[pos + 5] & 0x80:
                out[pos + 5] &= 0x7F
            previous = last.get(pid)
            shifts[pid] = 0 if previous is None or pid == 0x1FFF else \
                ((previous + 1 if header & 0x10 else previous) - header) & 15
        out[pos + 3] = header & 0xF0 | (header + shifts[pid]) & 15
        last[pid] = out[pos + 3] & 15
    return bytes(out)


def test_any_interleaving_of_pids_matches_the_packet_by_packet_rule() -> None:
    rng = random.Random(7)
    for _ in range(20):
        rewriter, last = TsContinuity(), {}
        pids = rng.sample([0, 0x11, 0x100, 0x101, 0x102, 0x1000, 0x1FFF], rng.randint(1, 5))
        for n in range(4):
            counters: dict[int, int] = {}
            chunks = []
            for _ in range(rng.randint(1, 300)):  # runs of one PID, from 1 packet to dozens
                pid = rng.choice(pids)
                for _ in range(rng.choice((1, 1, 2, 3, 40))):
                    payload = rng.random() > 0.1
                    cc = counters.get(pid, rng.randrange(16))
                    chunks.append(ts_packet(pid, cc, payload=payload, adaptation=not payload or rng.random() < 0.2,
                                            indicator=pid not in counters))
                    counters[pid] = (cc + payload) & 15
            segment = b"".join(chunks)
            broken = rng.random() < 0.2
            expected = reference_rewrite(last, segment, broken or n == 0)
            assert bytes(rewriter.rewrite(bytearray(segment), broken)) == expected


# -- over HTTP: a real RTMP publisher into a real node ---------------------------------


async def fetch_segments(node, slug: str, text: str) -> list[tuple[str, bytes]]:
    out = []
    for uri in segment_uris(text):
        async with node.http.get(node.url(f"/hls/{slug}/{uri}")) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "video/mp2t"
            out.append((uri, await r.read()))
    return out


@pytest.mark.slow
async def test_consecutive_segments_over_http_have_unbroken_counters(node_factory) -> None:
    node = await node_factory(hls={"container": "mpegts", "segment_duration": 1.0, "window": 20})
    room = await make_room(node)
    sent = await publish_async(rtmp_url(node, room["stream_key"]), seconds=6.0, fps=FPS, gop=FPS)
    text = await wait_playlist(node, room["slug"], lambda t: "#EXT-X-ENDLIST" in t)
    segments = await fetch_segments(node, room["slug"], text)
    assert len(segments) >= 5
    whole = b"".join(data for _, data in segments)
    stream = packets(whole)
    assert continuity_errors(stream) == []
    assert discontinuities(stream) == first_packets(stream)
    assert all(p.offset < len(segments[0][1]) for p in discontinuities(stream))
    assert corrupt_packets(whole) == 0
    with av.open(io.BytesIO(whole), format="mpegts") as container:
        frames = sum(1 for p in container.demux(video=0) if p.size)
    assert frames == sent.video_frames


@pytest.mark.slow
async def test_takeover_marks_the_break_and_only_there(node_factory) -> None:
    node = await node_factory(hls={"container": "mpegts", "segment_duration": 1.0, "window": 30})
    room = await make_room(node)
    url = rtmp_url(node, room["stream_key"])
    first = await start_publisher(url, seconds=30, fps=FPS, gop=FPS, realtime=True)
    try:
        await wait_playlist(node, room["slug"], lambda t: len(segment_uris(t)) >= 3)
        await publish_async(url, seconds=3.0, fps=FPS, gop=FPS, realtime=True)
        with pytest.raises(PublishFailed):  # taken over
            await first.result(timeout=15)
    finally:
        await first.stop()
    text = await wait_playlist(node, room["slug"], lambda t: "#EXT-X-ENDLIST" in t)
    segments = await fetch_segments(node, room["slug"], text)
    prefixes = [uri.split("-")[0] for uri, _ in segments]
    assert len(set(prefixes)) == 2
    switch = prefixes.index(prefixes[-1])
    assert switch >= 3 and len(segments) - switch >= 2
    # the playlist marks the same place
    lines = [line for line in text.splitlines() if line == "#EXT-X-DISCONTINUITY" or not line.startswith("#")]
    assert lines[lines.index("#EXT-X-DISCONTINUITY") + 1] == segments[switch][0]
    for session in (segments[:switch], segments[switch:]):
        whole = b"".join(data for _, data in session)
        stream = packets(whole)
        assert continuity_errors(stream) == [], session[0][0]
        assert discontinuities(stream) == first_packets(stream)
        assert all(p.offset < len(session[0][1]) for p in discontinuities(stream))
    # across the break: the indicator of the new session's first packets covers the restart
    everything = b"".join(data for _, data in segments)
    assert continuity_errors(packets(everything)) == []
    start = sum(len(data) for _, data in segments[:switch])
    assert {p.offset >= start for p in discontinuities(packets(everything))} == {False, True}
