"""Fuzz RtmpServerProtocol.receive(): whatever arrives, it returns events or raises
ProtocolError, nothing else, and its buffers stay bounded."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rtmp_craft import (
    Ecma,
    amf0,
    c0c1,
    command_message,
    message,
    ping_request,
    set_chunk_size,
    window_ack_size,
)

from livecast.rtmp.protocol import (
    AudioData,
    Closed,
    Connected,
    MetaData,
    ProtocolError,
    PublishRequested,
    RtmpServerProtocol,
    Unpublished,
    VideoData,
)

EVENT_TYPES = (AudioData, Closed, Connected, MetaData, PublishRequested, Unpublished, VideoData)
LIMITS = {"max_message_bytes": 64 * 1024, "max_chunk_size": 64 * 1024, "max_chunk_streams": 16}

HANDSHAKE = c0c1() + bytes(1536)
SESSION = (
    set_chunk_size(4096)
    + command_message("connect", 1, {"app": "live", "tcUrl": "rtmp://x/live"}, chunk_size=4096)
    + command_message("releaseStream", 2, None, "key", chunk_size=4096)
    + command_message("FCPublish", 3, None, "key", chunk_size=4096)
    + command_message("createStream", 4, None, chunk_size=4096)
    + command_message("publish", 5, None, "key?a=b", "live", stream_id=1, csid=8, chunk_size=4096)
    + set_chunk_size(100)
    + window_ack_size(3000)
    + ping_request(5)
    + message(amf0("@setDataFrame", "onMetaData", Ecma(width=1.0, tags=["a", 2.0])), csid=4, type_id=18, chunk_size=100)
    + message(bytes(range(250)) * 2, csid=6, ts=0x01000000, chunk_size=100)
    + message(bytes(range(250)), csid=6, fmt=1, ts=0x01000000, chunk_size=100, continuation_ext=False)
    + message(b"\xaf\x01" + bytes(40), csid=320, ts=21, type_id=8, chunk_size=100)
    + message(b"\x00" + amf0("onMetaData", Ecma(height=2.0)), csid=4, type_id=15, chunk_size=100)
    + command_message("getStreamLength", 6, None, "key", chunk_size=100, amf3=True)
    + command_message("FCUnpublish", 7, None, "key", chunk_size=100)
    + command_message("deleteStream", 8, None, 1.0, chunk_size=100)
)


def run(pieces: list[bytes], *, accept: bool = True) -> list[object]:
    """Feed the pieces; only events or ProtocolError may come out."""
    proto = RtmpServerProtocol(**LIMITS)
    events: list[object] = []
    try:
        for piece in pieces:
            got = proto.receive(piece)
            assert isinstance(got, list)
            for event in got:
                assert isinstance(event, EVENT_TYPES)
                if accept and isinstance(event, PublishRequested):
                    proto.accept_publish(event)
            events += got
            assert isinstance(proto.data_to_send(), bytes)
            # bounded: one partial message per chunk stream plus one unparsed chunk
            bound = (LIMITS["max_chunk_streams"] + 2) * LIMITS["max_message_bytes"]
            assert proto._reader.buffered <= bound
    except ProtocolError:
        pass
    return events


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=False)]


def test_the_valid_session_works() -> None:
    events = run([HANDSHAKE + SESSION])
    assert [type(e).__name__ for e in events] == [
        "Connected", "PublishRequested", "MetaData", "VideoData", "VideoData", "AudioData", "MetaData", "Unpublished"]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4000), st.lists(st.integers(0, 4000), max_size=8))
def test_random_bytes_before_handshake(data: bytes, cuts: list[int]) -> None:
    run(split(b"\x03" + data, cuts))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(0, 3000), max_size=8))
def test_random_bytes_after_handshake(data: bytes, cuts: list[int]) -> None:
    run(split(HANDSHAKE + data, cuts))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_after_connect(data: bytes) -> None:
    head = HANDSHAKE + SESSION[: SESSION.index(command_message("releaseStream", 2, None, "key", chunk_size=4096))]
    run([head, data])


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, len(SESSION) - 1), st.integers(1, 255)),
    st.tuples(st.just("insert"), st.integers(0, len(SESSION)), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), st.integers(0, len(SESSION) - 1), st.integers(1, 16)),
    st.tuples(st.just("truncate"), st.integers(0, len(SESSION)), st.just(0)),
)


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutation, min_size=1, max_size=6), st.lists(st.integers(0, 20_000), max_size=10))
def test_mutated_valid_session(mutations: list[tuple[str, int, object]], cuts: list[int]) -> None:
    data = bytearray(SESSION)
    for kind, at, arg in mutations:
        at = min(at, len(data))
        if kind == "flip" and at < len(data) and isinstance(arg, int):
            data[at] ^= arg
        elif kind == "insert" and isinstance(arg, bytes):
            data[at:at] = arg
        elif kind == "delete" and isinstance(arg, int):
            del data[at:at + arg]
        elif kind == "truncate":
            del data[at:]
    run(split(HANDSHAKE + bytes(data), cuts))
