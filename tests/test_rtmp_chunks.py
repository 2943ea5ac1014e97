"""ChunkReader and ChunkWriter against hand-crafted chunk bytes."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rtmp_craft import abort, basic_header, chunk, message, set_chunk_size

from livecast.rtmp.chunks import ChunkReader, ChunkWriter, ProtocolError, RtmpMessage

PAYLOAD = bytes(range(256)) * 2  # 512 bytes: four 128-byte chunks


def feed_bytewise(reader: ChunkReader, data: bytes) -> list[RtmpMessage]:
    out: list[RtmpMessage] = []
    for i in range(len(data)):
        out += reader.feed(data[i:i + 1])
    return out


def read(data: bytes, **kwargs: int) -> list[RtmpMessage]:
    """Parse ``data`` all at once and byte by byte; both must agree."""
    whole = ChunkReader(**kwargs).feed(data)
    assert feed_bytewise(ChunkReader(**kwargs), data) == whole
    return whole


def summary(msgs: list[RtmpMessage]) -> list[tuple[int, int, int, int, bytes]]:
    return [(m.csid, m.type_id, m.stream_id, m.timestamp, m.payload) for m in msgs]


# -- basic headers ------------------------------------------------------------------------


@pytest.mark.parametrize("csid,size", [(2, 1), (63, 1), (64, 2), (319, 2), (64, 3), (320, 3), (65599, 3)])
def test_basic_header_forms(csid: int, size: int) -> None:
    data = chunk(0, csid, b"xy", ts=1, type_id=8, header_size=size) + chunk(2, csid, b"zz", ts=4, header_size=size)
    assert summary(read(data)) == [(csid, 8, 1, 1, b"xy"), (csid, 8, 1, 5, b"zz")]


def test_two_and_three_byte_forms_of_csid_64_are_the_same_stream() -> None:
    data = chunk(0, 64, b"ab", ts=10, header_size=2) + chunk(2, 64, b"cd", ts=5, header_size=3)
    assert [m.timestamp for m in read(data)] == [10, 15]


def test_writer_basic_header_encoding() -> None:
    from livecast.rtmp.chunks import basic_header as ours

    for csid in (2, 63, 64, 200, 319, 320, 1000, 65599):
        assert ours(1, csid) == basic_header(1, csid)
    with pytest.raises(ValueError):
        ours(0, 65600)


# -- timestamps ---------------------------------------------------------------------------


def test_fmt0_absolute_fmt1_fmt2_deltas_and_wrap() -> None:
    data = chunk(0, 6, b"a", ts=0xFFFE00) + chunk(1, 6, b"bb", ts=33, type_id=8) + chunk(2, 6, b"cc", ts=7)
    msgs = read(data)
    assert [(m.type_id, m.timestamp) for m in msgs] == [(9, 0xFFFE00), (8, 0xFFFE21), (8, 0xFFFE28)]
    wrap = chunk(0, 4, b"a", ts=0xFFFFFFF0) + chunk(2, 4, b"b", ts=0x20)
    assert [m.timestamp for m in read(wrap)] == [0xFFFFFFF0, 0x10]


@pytest.mark.parametrize("continuation_ext", [True, False])
def test_extended_timestamp_fmt0_multi_chunk(continuation_ext: bool) -> None:
    data = message(PAYLOAD, ts=0x12345678, continuation_ext=continuation_ext)
    assert data.count(struct.pack(">I", 0x12345678)) == (4 if continuation_ext else 1)
    assert summary(read(data)) == [(6, 9, 1, 0x12345678, PAYLOAD)]


@pytest.mark.parametrize("continuation_ext", [True, False])
@pytest.mark.parametrize("fmt", [1, 2])
def test_extended_delta_fmt1_fmt2_multi_chunk(fmt: int, continuation_ext: bool) -> None:
    head = message(PAYLOAD, ts=1000)  # fmt 2 keeps the previous length, so make it match
    data = head + message(PAYLOAD, fmt=fmt, ts=0x01000000, continuation_ext=continuation_ext)
    msgs = read(data)
    assert msgs[1].timestamp == 1000 + 0x01000000
    assert msgs[1].payload == PAYLOAD


def test_extended_timestamp_exactly_ffffff() -> None:
    msgs = read(message(PAYLOAD, ts=0xFFFFFF))
    assert msgs[0].timestamp == 0xFFFFFF and msgs[0].payload == PAYLOAD


def test_fmt3_continuation_with_absolute_timestamp_in_extended_field() -> None:
    """Some writers put the absolute timestamp (not the delta) on fmt 3 chunks."""
    head = message(b"x", ts=5)
    first = chunk(1, 6, PAYLOAD[:128], ts=0x01000000, length=256, type_id=9)
    cont = chunk(3, 6, PAYLOAD[128:256], ext=0x01000005)
    msgs = read(head + first + cont)
    assert msgs[1].timestamp == 0x01000005 and msgs[1].payload == PAYLOAD[:256]


def test_omitted_extended_timestamp_with_short_tail() -> None:
    """OBS omission where the last continuation carries fewer than 4 payload bytes."""
    payload = PAYLOAD[:130]
    data = message(payload, ts=0x02000000, continuation_ext=False) + message(b"next", csid=4, ts=1, type_id=8)
    msgs = read(data)
    assert [m.payload for m in msgs] == [payload, b"next"]


def test_fmt3_new_message_reuses_delta() -> None:
    data = (chunk(0, 6, b"a", ts=100) + chunk(1, 6, b"bb", ts=40) + chunk(3, 6, b"cc") + chunk(2, 6, b"dd", ts=7)
            + chunk(3, 6, b"ee"))
    assert [m.timestamp for m in read(data)] == [100, 140, 180, 187, 194]


def test_fmt3_new_message_after_fmt0_adds_the_fmt0_timestamp() -> None:
    """Spec 5.3.1.2.4 (and FFmpeg, SRS): after fmt 0 at T, a fmt 3 message is at 2T."""
    assert [m.timestamp for m in read(chunk(0, 6, b"a", ts=40) + chunk(3, 6, b"b"))] == [40, 80]
    assert [m.timestamp for m in read(chunk(0, 6, b"a", ts=0) + chunk(3, 6, b"b"))] == [0, 0]


@pytest.mark.parametrize("with_ext", [True, False])
def test_fmt3_new_message_with_extended_delta(with_ext: bool) -> None:
    delta = 0x01000000
    data = chunk(0, 6, b"a", ts=1) + chunk(1, 6, b"bbbb", ts=delta)
    data += chunk(3, 6, b"cccc", ext=delta if with_ext else None)
    msgs = read(data)
    assert [m.timestamp for m in msgs] == [1, 1 + delta, 1 + 2 * delta]
    assert msgs[2].payload == b"cccc"


def test_interleaved_chunk_streams() -> None:
    audio = bytes([0xAF]) * 300
    video = bytes([0x17]) * 300
    a = message(audio, csid=4, ts=20, type_id=8)
    v = message(video, csid=6, ts=33, type_id=9)
    # split each into its chunks and interleave them: a0 v0 a1 v1 a2 v2
    a_chunks = [a[:12 + 128], a[140:140 + 129], a[269:]]
    v_chunks = [v[:12 + 128], v[140:140 + 129], v[269:]]
    data = b"".join(x + y for x, y in zip(a_chunks, v_chunks, strict=False))
    assert summary(read(data)) == [(4, 8, 1, 20, audio), (6, 9, 1, 33, video)]


# -- chunk size and abort -----------------------------------------------------------------


def test_set_chunk_size_applies_mid_buffer() -> None:
    big = bytes(range(250)) * 16  # 4000 bytes in one chunk once the size is 4096
    data = set_chunk_size(4096) + chunk(0, 6, big, ts=3)
    msgs = read(data)
    assert [m.type_id for m in msgs] == [1, 9] and msgs[1].payload == big


def test_set_chunk_size_mid_message_on_another_stream() -> None:
    video = bytes(range(200)) * 3  # 600 bytes
    first = chunk(0, 6, video[:128], length=600)
    rest = chunk(3, 6, video[128:])  # 472 bytes in one chunk after the change
    msgs = read(first + set_chunk_size(1000) + rest)
    assert msgs[1].payload == video


def test_chunk_size_change_across_feeds() -> None:
    reader = ChunkReader()
    assert reader.feed(set_chunk_size(256))[0].type_id == 1
    assert reader.chunk_size == 256
    assert reader.feed(message(PAYLOAD, chunk_size=256))[0].payload == PAYLOAD


@pytest.mark.parametrize("size", [0, 0x1000000, 0x80000000])
def test_bad_chunk_size(size: int) -> None:
    with pytest.raises(ProtocolError):
        ChunkReader().feed(set_chunk_size(size))


def test_abort_drops_partial_message() -> None:
    partial = chunk(0, 6, PAYLOAD[:128], length=512)
    data = partial + abort(6) + message(b"fresh", csid=6, ts=9)
    msgs = read(data)
    assert [(m.type_id, m.payload) for m in msgs] == [(2, struct.pack(">I", 6)), (9, b"fresh")]
    reader = ChunkReader()
    reader.feed(partial)
    assert reader.buffered == 128
    reader.feed(abort(6))
    assert reader.buffered == 0


def test_new_header_inside_incomplete_message_is_an_error() -> None:
    with pytest.raises(ProtocolError):
        ChunkReader().feed(chunk(0, 6, PAYLOAD[:128], length=512) + chunk(0, 6, b"x"))


# -- limits -------------------------------------------------------------------------------


def test_message_too_large() -> None:
    with pytest.raises(ProtocolError):
        ChunkReader(max_message_bytes=1000).feed(chunk(0, 6, b"", length=1001))
    assert ChunkReader(max_message_bytes=1000).feed(chunk(0, 6, b"", length=1000)) == []


def test_too_many_chunk_streams() -> None:
    reader = ChunkReader(max_chunk_streams=4)
    reader.feed(b"".join(chunk(0, c, b"x") for c in (2, 3, 4, 5)))
    with pytest.raises(ProtocolError):
        reader.feed(chunk(0, 6, b"x"))


@pytest.mark.parametrize("fmt", [1, 2, 3])
def test_fresh_chunk_stream_needs_fmt0(fmt: int) -> None:
    with pytest.raises(ProtocolError):
        ChunkReader().feed(chunk(fmt, 6, b"x", ts=1))


def test_librtmp_fmt1_on_fresh_csid2_is_accepted() -> None:
    msgs = read(chunk(1, 2, struct.pack(">HI", 7, 99), ts=0, type_id=4))
    assert summary(msgs) == [(2, 4, 0, 0, struct.pack(">HI", 7, 99))]


def test_memory_is_one_partial_message_plus_tail() -> None:
    reader = ChunkReader()
    reader.feed(chunk(0, 6, PAYLOAD[:128], length=512) + chunk(3, 6, PAYLOAD[128:200]))
    assert reader.buffered == 128 + 73  # partial message + the unparsed (incomplete) chunk


def test_zero_length_message() -> None:
    assert summary(read(chunk(0, 6, b"", ts=4) + chunk(3, 6, b""))) == [(6, 9, 1, 4, b""), (6, 9, 1, 8, b"")]


# -- writer -------------------------------------------------------------------------------


def test_writer_headers_and_extended_continuations() -> None:
    writer = ChunkWriter(chunk_size=128)
    first = writer.write(RtmpMessage(6, 9, 1, 0x01000000, PAYLOAD))
    assert first == message(PAYLOAD, ts=0x01000000)
    second = writer.write(RtmpMessage(6, 9, 1, 0x01000010, PAYLOAD))
    assert second[:1] == basic_header(2, 6)  # never fmt 3 right after fmt 0
    third = writer.write(RtmpMessage(6, 9, 1, 0x01000020, PAYLOAD))
    assert third[:1] == basic_header(3, 6)
    assert summary(read(first + second + third)) == [(6, 9, 1, 0x01000000 + 16 * i, PAYLOAD) for i in range(3)]


messages_strategy = st.lists(
    st.builds(
        RtmpMessage,
        csid=st.sampled_from([2, 3, 4, 6, 63, 64, 319, 320, 65599]),
        type_id=st.sampled_from([8, 9, 18]),
        stream_id=st.sampled_from([0, 1, 2]),
        timestamp=st.one_of(st.integers(0, 2000), st.integers(0xFFFF00, 0x1000100), st.integers(0, 0xFFFFFFFF)),
        payload=st.binary(max_size=700),
    ),
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(msgs=messages_strategy, chunk_size=st.sampled_from([1, 7, 128, 4096]), data=st.data())
def test_writer_reader_roundtrip_any_split(msgs: list[RtmpMessage], chunk_size: int, data: st.DataObject) -> None:
    writer = ChunkWriter(chunk_size=chunk_size)
    wire = set_chunk_size(chunk_size) + b"".join(writer.write(m) for m in msgs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=20)))
    reader = ChunkReader(max_chunk_streams=16)
    got: list[RtmpMessage] = []
    for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=False):
        got += reader.feed(wire[start:end])
    assert got[1:] == msgs
    assert reader.buffered == 0
