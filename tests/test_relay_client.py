"""The sans-IO RTMP client against the project's sans-IO RTMP server, bytes in and out in
memory: connect, createStream and publish; the key reaches the server's publish request;
a refusal carries the server's code and description; media after ``Published`` arrives as
the same FLV tag bodies, also as the message bytes shared by all targets; pings are answered."""

from __future__ import annotations

import struct

from livecast.core.media import Codec, MediaUnit, Track
from livecast.media.flv import audio_tag_body, video_tag_body
from livecast.relay.client import Published, Refused, RtmpClientProtocol
from livecast.relay.flvstream import FlvStreamReader
from livecast.relay.wire import SHARED_STREAM_ID, WireUnit, message_for
from livecast.rtmp.protocol import AudioData, Connected, PublishRequested, RtmpServerProtocol, VideoData


def _pump(client: RtmpClientProtocol, server: RtmpServerProtocol) -> tuple[list[object], list[object]]:
    """Exchange bytes until both sides are quiet; (client events, server events)."""
    client_events: list[object] = []
    server_events: list[object] = []
    for _ in range(20):
        to_server = client.data_to_send()
        if to_server:
            server_events += server.receive(to_server)
        to_client = server.data_to_send()
        if to_client:
            client_events += client.receive(to_client)
        if not to_server and not to_client:
            break
    return client_events, server_events


def _publish_request(events: list[object]) -> PublishRequested:
    found = [e for e in events if isinstance(e, PublishRequested)]
    assert len(found) == 1, events
    return found[0]


def test_publish_accepted_then_media_flows_unchanged() -> None:
    client = RtmpClientProtocol("rtmp://127.0.0.1:1935/live", "live", "the-key-1")
    server = RtmpServerProtocol()
    assert "the-key-1" not in repr(client)
    client_events, server_events = _pump(client, server)
    assert client_events == []
    connected = [e for e in server_events if isinstance(e, Connected)]
    assert [(c.app, c.tc_url) for c in connected] == [("live", "rtmp://127.0.0.1:1935/live")]
    request = _publish_request(server_events)
    assert request.name == "the-key-1" and request.publish_type == "live"
    server.accept_publish(request)
    client_events, _ = _pump(client, server)
    assert client_events == [Published()] and client.live
    video = bytes([0x17, 1, 0, 0, 0]) + b"\x00\x00\x00\x05frame" * 2000  # larger than a chunk
    audio = bytes([0xAF, 1]) + b"aac"
    client.send_video(40, video)
    client.send_audio(41, audio)
    _, server_events = _pump(client, server)
    got = [(type(e).__name__, e.timestamp, e.payload) for e in server_events if isinstance(e, (VideoData, AudioData))]
    assert got == [("VideoData", 40, video), ("AudioData", 41, audio)]



def test_shared_message_bytes_arrive_as_the_same_tag_bodies() -> None:
    client = RtmpClientProtocol("rtmp://127.0.0.1:1935/live", "live", "k")
    server = RtmpServerProtocol()
    _, server_events = _pump(client, server)
    server.accept_publish(_publish_request(server_events))
    _pump(client, server)
    assert client.live and client.stream_id == SHARED_STREAM_ID
    frame = b"\x00\x00\x00\x05frame" * 2000  # larger than a chunk
    units = [MediaUnit(Track.VIDEO, Codec.H264, 40, 80, True, frame),
             MediaUnit(Track.AUDIO, Codec.AAC, 41, 41, True, b"aac"),
             MediaUnit(Track.VIDEO, Codec.H264, 0x1000000, 0x1000000, False, frame),  # extended timestamp
             MediaUnit(Track.VIDEO, Codec.H264, 0x1000010, 0x1000010, False, frame[:100]),
             MediaUnit(Track.AUDIO, Codec.AAC, 50, 50, True, b"back")]  # a timestamp going back
    wire = b"".join(message_for(WireUnit(u), client.stream_id) or b"" for u in units)
    assert wire == b"".join(message_for(u, SHARED_STREAM_ID) or b"" for u in units)  # shared == own copy
    events = server.receive(client.data_to_send() + wire)
    got = [(e.timestamp, e.payload) for e in events if isinstance(e, (VideoData, AudioData))]
    bodies = [video_tag_body(u) if u.track is Track.VIDEO else audio_tag_body(u) for u in units]
    assert got == [(u.dts, body) for u, body in zip(units, bodies, strict=True)]


def test_refusal_carries_the_servers_code_and_description() -> None:
    client = RtmpClientProtocol("rtmp://h/live", "live", "bad-key")
    server = RtmpServerProtocol()
    _, server_events = _pump(client, server)
    server.reject_publish(_publish_request(server_events), "NetStream.Publish.BadName", "invalid stream key")
    client_events, _ = _pump(client, server)
    assert client_events == [Refused("NetStream.Publish.BadName: invalid stream key")]
    assert not client.live


def test_ping_request_is_answered() -> None:
    client = RtmpClientProtocol("rtmp://h/live", "live", "k")
    server = RtmpServerProtocol()
    _pump(client, server)
    ping = bytes([0x02]) + b"\x00\x00\x00" + struct.pack(">I", 6)[1:] + bytes([4]) + b"\x00\x00\x00\x00"
    client.receive(ping + struct.pack(">HI", 6, 1234))
    out = client.data_to_send()
    assert out.endswith(struct.pack(">HI", 7, 1234)), out


def test_flv_stream_reader_any_split() -> None:
    tag = bytes([9]) + (5).to_bytes(3, "big") + (0x123456).to_bytes(3, "big") + b"\x01" + b"\x00" * 3 + b"hello"
    data = b"FLV\x01\x05\x00\x00\x00\x09" + b"\x00" * 4 + tag + (16).to_bytes(4, "big")
    reader = FlvStreamReader()
    tags = [t for i in range(len(data)) for t in reader.feed(data[i:i + 1])]
    assert [(t.kind, t.timestamp, t.body) for t in tags] == [(9, 0x01123456, b"hello")]
