"""RtmpServerProtocol driven with crafted bytes: handshake, the FMLE/OBS/FFmpeg
command flow with the exact replies, control messages, limits; plus AMF0."""

from __future__ import annotations

import datetime as dt
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rtmp_craft import (
    Client,
    Ecma,
    Undef,
    amf0,
    c0c1,
    chunk,
    command_message,
    message,
    ping_request,
    set_chunk_size,
    window_ack_size,
)

from livecast.rtmp.amf import (
    UNDEFINED,
    AmfError,
    EcmaArray,
    decode_values,
    encode_values,
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

META = Ecma(duration=0.0, width=1280.0, height=720.0, videocodecid=7.0, audiocodecid=10.0, encoder="Lavf61")


def publishing_client(**kwargs: int) -> Client:
    client = Client(RtmpServerProtocol(**kwargs))
    client.connect()
    client.send(command_message("createStream", 4, None))
    client.send(command_message("publish", 5, None, "key", "live", stream_id=1, csid=8))
    client.proto.accept_publish(client.events[-1])  # type: ignore[arg-type]
    client.replies()
    return client


# -- handshake ----------------------------------------------------------------------------


def test_handshake_replies_s0_s1_s2() -> None:
    proto = RtmpServerProtocol()
    c1 = c0c1()
    assert proto.receive(c1[:700]) == [] and proto.data_to_send() == b""
    proto.receive(c1[700:])
    out = proto.data_to_send()
    assert len(out) == 1 + 1536 * 2
    assert out[0] == 3
    assert out[5:9] == b"\x00\x00\x00\x00"  # S1: time, zero, random
    assert out[1537:] == c1[1:]  # S2 echoes C1
    assert not proto.handshake_done
    proto.receive(bytes(1535))
    assert not proto.handshake_done
    proto.receive(b"\x00")
    assert proto.handshake_done and proto.bytes_received == 1537 + 1536


@pytest.mark.parametrize("version", [0, 6, 31])
def test_handshake_rejects_other_versions(version: int) -> None:
    proto = RtmpServerProtocol()
    with pytest.raises(ProtocolError):
        proto.receive(bytes([version]))
    with pytest.raises(ProtocolError):  # dead after the first error
        proto.receive(c0c1())


def test_c2_and_connect_in_one_buffer() -> None:
    client = Client()
    events = client.handshake(command_message("connect", 1, {"app": "live", "tcUrl": "rtmp://h/live"}))
    assert events == [Connected("live", "rtmp://h/live", {"app": "live", "tcUrl": "rtmp://h/live"})]


# -- the publish flow ---------------------------------------------------------------------


def test_full_publish_flow() -> None:
    client = Client()
    client.handshake(set_chunk_size(4096))  # OBS sends this before connect
    events = client.send(command_message("connect", 1, {"app": "live", "type": "nonprivate", "flashVer": "FMLE/3.0",
                                                           "tcUrl": "rtmp://127.0.0.1/live"}, chunk_size=4096))
    assert events == [Connected("live", "rtmp://127.0.0.1/live", {"app": "live", "type": "nonprivate",
                                                                  "flashVer": "FMLE/3.0",
                                                                  "tcUrl": "rtmp://127.0.0.1/live"})]
    replies = client.replies()
    assert [(m.type_id, m.payload) for m in replies[:3]] == [
        (5, struct.pack(">I", 2_500_000)), (6, struct.pack(">IB", 2_500_000, 2)), (1, struct.pack(">I", 4096))]
    assert all(m.csid == 2 and m.stream_id == 0 for m in replies[:3])
    assert decode_values(replies[3].payload) == [
        "_result", 1.0, {"fmsVer": "FMS/3,0,1,123", "capabilities": 31.0},
        {"level": "status", "code": "NetConnection.Connect.Success", "description": "Connection succeeded.",
         "objectEncoding": 0.0}]

    assert client.send(command_message("releaseStream", 2, None, "key?token=abc", chunk_size=4096)) == []
    assert client.decoded() == [(20, 0, ["_result", 2.0, None, UNDEFINED])]
    assert client.send(command_message("FCPublish", 3, None, "key?token=abc", chunk_size=4096)) == []
    assert client.decoded() == [
        (20, 0, ["_result", 3.0, None, UNDEFINED]),
        (20, 0, ["onFCPublish", 0.0, None, {"level": "status", "code": "NetStream.Publish.Start",
                                            "description": "key?token=abc"}])]
    assert client.send(command_message("createStream", 4, None, chunk_size=4096)) == []
    create = client.replies()
    assert [decode_values(m.payload) for m in create] == [["_result", 4.0, None, 1.0]]
    # FFmpeg reads the new stream id at a fixed offset: _result, txid, null, number
    assert create[0].payload[20:21] == b"\x00" and create[0].payload[19:20] == b"\x05"

    events = client.send(command_message("publish", 5, None, "key?token=abc", "live", stream_id=1, csid=8,
                                         chunk_size=4096))
    assert events == [PublishRequested(1, "key", "token=abc", "live")]
    assert client.replies() == []  # nothing until the application decides
    client.proto.accept_publish(events[0])  # type: ignore[arg-type]
    accepted = client.replies()
    assert (accepted[0].type_id, accepted[0].payload) == (4, struct.pack(">HI", 0, 1))  # StreamBegin 1
    assert (accepted[1].csid, accepted[1].stream_id) == (5, 1)
    assert decode_values(accepted[1].payload) == [
        "onStatus", 0.0, None, {"level": "status", "code": "NetStream.Publish.Start",
                                "description": "key is now published."}]

    meta = amf0("@setDataFrame", "onMetaData", META)
    video = b"\x17\x00\x00\x00\x00" + bytes(5000)
    audio = b"\xaf\x01" + bytes(300)
    events = client.send(message(meta, csid=4, type_id=18, chunk_size=4096)
                         + message(video, csid=6, ts=40, type_id=9, chunk_size=4096)
                         + message(audio, csid=4, fmt=1, ts=23, type_id=8, chunk_size=4096))
    assert events == [MetaData(1, dict(META)), VideoData(1, 40, video), AudioData(1, 23, audio)]

    events = client.send(command_message("FCUnpublish", 6, None, "key?token=abc", chunk_size=4096))
    assert events == [Unpublished(1)]
    assert client.decoded() == [
        (20, 0, ["_result", 6.0, None, UNDEFINED]),
        (20, 0, ["onFCUnpublish", 0.0, None, {"level": "status", "code": "NetStream.Unpublish.Success",
                                              "description": "key?token=abc"}])]
    assert client.send(command_message("deleteStream", 7, None, 1.0, chunk_size=4096)) == []  # already unpublished
    assert client.replies() == []
    assert client.send(command_message("close", 0, None, chunk_size=4096)) == [Closed("client sent close")]


def test_delete_stream_and_close_stream_unpublish() -> None:
    client = publishing_client()
    assert client.send(command_message("deleteStream", 7, None, 1.0)) == [Unpublished(1)]
    client = publishing_client()
    assert client.send(command_message("closeStream", 0, None, stream_id=1, csid=8)) == [Unpublished(1)]
    assert client.send(command_message("deleteStream", 0, None, 1.0)) == []


def test_reject_publish_and_media_on_rejected_stream() -> None:
    client = Client()
    client.connect()
    client.send(command_message("createStream", 2, None))
    req = client.send(command_message("publish", 3, None, "bad", "live", stream_id=1, csid=8))[0]
    client.replies()
    client.proto.reject_publish(req, "NetStream.Publish.BadName", "invalid stream key")  # type: ignore[arg-type]
    assert client.decoded() == [(20, 1, ["onStatus", 0.0, None, {"level": "error", "code": "NetStream.Publish.BadName",
                                                                   "description": "invalid stream key"}])]
    assert client.send(message(b"\x17\x00", csid=6, ts=0)) == []
    assert client.send(command_message("deleteStream", 4, None, 1.0)) == []


def test_media_on_stream_without_publish_is_dropped() -> None:
    client = Client()
    client.connect()
    assert client.send(message(b"\xaf\x01ab", csid=4, type_id=8, stream_id=0)) == []


def test_harmless_commands() -> None:
    client = Client()
    client.connect()
    client.send(command_message("getStreamLength", 2, None, "key") + command_message("_checkbw", 3, None)
                + command_message("whatIsThis", 4, None, "x") + command_message("whatIsThis", 0, None)
                + command_message("_result", 9, None) + command_message("play", 0, None, "key"))
    decoded = client.decoded()
    assert decoded[:2] == [(20, 0, ["_result", 2.0, None, 0.0]), (20, 0, ["_result", 3.0, None, None])]
    assert decoded[2][2][:3] == ["_error", 4.0, None]
    assert decoded[2][2][3]["code"] == "NetConnection.Call.Failed"
    assert len(decoded) == 4 and decoded[3][2][3]["code"] == "NetStream.Play.Failed"


@pytest.mark.parametrize("bad", [
    command_message("createStream", 2, None),  # before connect
    command_message("connect", 1, "not an object"),
    message(b"\x02\x00\x10abc", csid=3, type_id=20, stream_id=0),  # truncated AMF0
])
def test_command_errors(bad: bytes) -> None:
    client = Client()
    with pytest.raises(ProtocolError):
        client.handshake(bad)


def test_publish_needs_created_stream_and_only_once() -> None:
    client = Client()
    client.connect()
    with pytest.raises(ProtocolError):
        client.send(command_message("publish", 2, None, "key", "live", stream_id=3))
    client = publishing_client()
    with pytest.raises(ProtocolError):
        client.send(command_message("publish", 6, None, "key", "live", stream_id=1, csid=8))


def test_amf3_command_and_data() -> None:
    client = Client()
    events = client.handshake(command_message("connect", 1, {"app": "live", "objectEncoding": 3.0}, amf3=True))
    assert isinstance(events[0], Connected) and events[0].app == "live"
    client.replies()
    client.send(command_message("createStream", 2, None, amf3=True))
    assert client.decoded() == [(20, 0, ["_result", 2.0, None, 1.0])]
    client.send(command_message("publish", 3, None, "k", "live", stream_id=1, csid=8, amf3=True))
    meta = b"\x00" + amf0("onMetaData", Ecma(width=640.0))
    assert client.send(message(meta, csid=4, type_id=15)) == [MetaData(1, {"width": 640.0})]
    # undecodable AMF3 bodies are skipped, never fatal
    junk = [b"\x11\x0a\x0b\x01", b"", b"\x00\x02\xff\xff", b"\x00\x11\x06"]
    for body in junk:
        assert client.send(message(body, csid=3, type_id=17, stream_id=0)) == []
        assert client.send(message(body, csid=4, type_id=15)) == []


def test_ping_request_gets_pong() -> None:
    client = Client()
    client.handshake()
    client.send(ping_request(0xDEADBEEF))
    out = client.proto.data_to_send()
    assert out == bytes.fromhex("02 000000 000006 04 00000000 0007 DEADBEEF")


def test_ack_after_default_and_peer_window() -> None:
    client = Client(RtmpServerProtocol(ack_window=5000))
    client.handshake()  # 3073 bytes so far
    filler = message(bytes(1000), csid=7, type_id=0x50, stream_id=0)  # unknown type: skipped
    client.send(filler)
    assert client.replies() == []
    client.send(filler)  # > 5000 now
    acks = client.replies()
    assert [(m.type_id, m.payload) for m in acks] == [(3, struct.pack(">I", client.proto.bytes_received))]
    client.send(window_ack_size(20_000))
    client.send(filler * 10)
    assert client.replies() == []
    client.send(filler * 10)
    acked = client.replies()
    assert acked[0].type_id == 3 and struct.unpack(">I", acked[0].payload)[0] == client.proto.bytes_received


def test_ack_is_held_while_backlogged_and_sent_once_caught_up() -> None:
    """A late ack to an encoder that already closed provokes a TCP reset that discards
    the unread end of the stream, so acks wait until the reader has caught up."""
    proto = RtmpServerProtocol(ack_window=5000)
    client = Client(proto)
    client.handshake()
    filler = message(bytes(1000), csid=7, type_id=0x50, stream_id=0)
    proto.receive(filler * 6, backlogged=True)
    assert client.replies() == []
    proto.receive(filler * 6, backlogged=True)
    assert client.replies() == []
    proto.receive(filler)
    acks = client.replies()
    assert [(m.type_id, m.payload) for m in acks] == [(3, struct.pack(">I", proto.bytes_received))]


def test_aggregate_message_unpacks_to_media() -> None:
    client = publishing_client()

    def tag(kind: int, ts: int, body: bytes) -> bytes:
        head = bytes([kind]) + len(body).to_bytes(3, "big") + (ts & 0xFFFFFF).to_bytes(3, "big") + bytes([ts >> 24])
        return head + b"\x00\x00\x00" + body + struct.pack(">I", 11 + len(body))

    agg = tag(9, 1000, b"\x27\x01v1") + tag(8, 1010, b"\xaf\x01a1") + tag(9, 1033, b"\x27\x01v2")
    events = client.send(message(agg, csid=6, ts=500, type_id=22))
    assert events == [VideoData(1, 500, b"\x27\x01v1"), AudioData(1, 510, b"\xaf\x01a1"),
                      VideoData(1, 533, b"\x27\x01v2")]


def test_limits_surface_as_protocol_errors() -> None:
    client = Client(RtmpServerProtocol(max_message_bytes=10_000))
    client.handshake()
    with pytest.raises(ProtocolError):
        client.send(chunk(0, 6, b"", length=10_001))
    client = Client(RtmpServerProtocol(max_chunk_size=65536))
    client.handshake()
    with pytest.raises(ProtocolError):
        client.send(set_chunk_size(65537))
    client = Client()
    client.handshake()
    with pytest.raises(ProtocolError):
        client.send(chunk(3, 9, b"x"))  # fmt 3 on a fresh chunk stream


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_any_split_gives_the_same_events_and_replies(data: st.DataObject) -> None:
    c1 = c0c1()
    wire = c1 + bytes(1536) + set_chunk_size(4096) + command_message(
        "connect", 1, {"app": "live", "tcUrl": "rtmp://x/live"}, chunk_size=4096)
    wire += command_message("createStream", 2, None, chunk_size=4096) + ping_request(77)
    wire += command_message("publish", 3, None, "key", "live", stream_id=1, csid=8, chunk_size=4096)

    def run(pieces: list[bytes]) -> tuple[list[object], bytes]:
        proto = RtmpServerProtocol(ack_window=20_000)
        events: list[object] = []
        out = b""
        for piece in pieces:
            events += proto.receive(piece)  # media flows while the publish is pending
            out += proto.data_to_send()
        return events, out[:1] + out[1537:]  # S1 is random

    media = set_chunk_size(128) + window_ack_size(9000)
    media += message(amf0("@setDataFrame", "onMetaData", META), csid=4, type_id=18)
    for i in range(12):
        media += message(bytes([i]) * (300 + i), csid=6, fmt=0 if i == 0 else 1, ts=0x01000000 if i == 0 else 33,
                         continuation_ext=i % 2 == 0)
        media += message(bytes([i]) * 9, csid=4, fmt=0 if i == 0 else 2, ts=23, type_id=8)
    wire += media + command_message("FCUnpublish", 4, None, "key") + command_message("deleteStream", 5, None, 1.0)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(wire) - 1), max_size=60))))
    pieces = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=False)]
    whole = run([wire])
    assert run(pieces) == whole
    assert len(whole[0]) == 2 + 1 + 24 + 1  # Connected, PublishRequested, MetaData, media, Unpublished


def test_one_byte_at_a_time() -> None:
    client = publishing_client()
    wire = message(bytes(700), csid=6, ts=0x01000005) + message(bytes(3), csid=4, ts=7, type_id=8)
    events = [e for b in wire for e in client.proto.receive(bytes([b]))]
    assert events == [VideoData(1, 0x01000005, bytes(700)), AudioData(1, 7, bytes(3))]


# -- AMF0 ---------------------------------------------------------------------------------


def test_amf0_decodes_what_encoders_send() -> None:
    date = b"\x0b" + struct.pack(">d", 1_700_000_000_000.0) + b"\x00\x00"
    long_string = b"\x0c" + struct.pack(">I", 5) + b"hello"
    strict = b"\x0a" + struct.pack(">I", 2) + amf0(1.0, "x")
    ecma_count_zero = b"\x08\x00\x00\x00\x00" + b"\x00\x01a" + amf0(True) + b"\x00\x00\x09"
    reference = amf0({"k": "v"}) + b"\x07\x00\x02"  # objects, arrays and ECMA arrays are numbered
    data = amf0("onMetaData") + date + long_string + strict + b"\x06" + ecma_count_zero + reference + amf0(Undef())
    assert decode_values(data) == [
        "onMetaData", dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC), "hello", [1.0, "x"],
        UNDEFINED, {"a": True}, {"k": "v"}, {"k": "v"}, UNDEFINED]


def test_amf0_missing_end_marker_at_the_very_end_is_tolerated() -> None:
    assert decode_values(b"\x08\x00\x00\x00\x01\x00\x01w" + amf0(640.0)) == [{"w": 640.0}]


def test_amf0_values_after_objects_survive() -> None:
    """pyrtmp 0.3.1 leaves the object-end marker unread and derails here."""
    assert decode_values(amf0("_result", 1.0, {"a": {"b": None}}, {"c": "d"}, "after")) == [
        "_result", 1.0, {"a": {"b": None}}, {"c": "d"}, "after"]


def test_amf0_encode_matches_independent_encoder() -> None:
    values = ["onStatus", 0.0, None, {"level": "status", "description": "ключ"}, EcmaArray(w=1.0), [True, "x"],
              UNDEFINED]
    assert encode_values(values) == amf0("onStatus", 0.0, None, {"level": "status", "description": "ключ"},
                                         Ecma(w=1.0), [True, "x"], Undef())
    assert decode_values(encode_values(values)) == values


def test_amf0_errors() -> None:
    for bad in (b"\x02\x00\x05ab", b"\x03\x00\x01a", b"\x0a\xff\xff\xff\xff", b"\x07\x00\x03", b"\x04", b"\x11",
                b"\x0b" + struct.pack(">d", float("inf")) + b"\x00\x00", b"\x03" * 200):
        with pytest.raises(AmfError):
            decode_values(bad)
    with pytest.raises(AmfError):
        encode_values([object()])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_amf0_decode_random_bytes_only_raises_amf_error(data: bytes) -> None:
    try:
        decode_values(data)
    except AmfError:
        pass
