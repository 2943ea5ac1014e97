"""``RtmpServerProtocol``: the RTMP ingest server as a sans-IO state machine.

Bytes in through :meth:`RtmpServerProtocol.receive`, which returns events; bytes out
through :meth:`RtmpServerProtocol.data_to_send`. Protocol housekeeping (handshake,
connect, createStream, acknowledgements, pings, FMLE/OBS commands) is answered here;
only decisions that need the application (may this stream key publish?) become events.
Audio, video and metadata are only reported for streams with a publish pending or
accepted; anything else a client sends on other streams is dropped.

Until a publish is accepted the peer is unauthenticated and gets small limits: a budget
of ``preauth_max_bytes`` received in all (handshake included), messages of at most
``preauth_max_message_bytes`` and ``preauth_max_partial_streams`` chunk streams holding
partial messages. :meth:`accept_publish` switches to the encoder-sized limits
(``max_message_bytes``, ``max_chunk_streams``, ``max_partial_bytes``). Going over a limit
raises :class:`LimitExceeded` (a :class:`ProtocolError` with a ``reason``).
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from typing import Any

from livecast.rtmp.amf import UNDEFINED, AmfError, decode_values, encode_values
from livecast.rtmp.chunks import (
    MASK32,
    ChunkReader,
    ChunkWriter,
    LimitExceeded,
    ProtocolError,
    RtmpMessage,
)
from livecast.rtmp.handshake import ServerHandshake

__all__ = [
    "AudioData", "Closed", "Connected", "LimitExceeded", "MetaData", "ProtocolError", "PublishRequested",
    "RtmpMessage", "RtmpServerProtocol", "Unpublished", "VideoData",
]

log = logging.getLogger(__name__)

# Message type ids (RTMP spec 5.4, 6.2, 7.1).
SET_CHUNK_SIZE, ABORT, ACK, USER_CONTROL, WINDOW_ACK_SIZE, SET_PEER_BANDWIDTH = 1, 2, 3, 4, 5, 6
AUDIO, VIDEO, DATA_AMF3, COMMAND_AMF3, DATA_AMF0, COMMAND_AMF0, AGGREGATE = 8, 9, 15, 17, 18, 20, 22
# User control events.
STREAM_BEGIN, PING_REQUEST, PING_RESPONSE = 0, 6, 7
# Chunk streams we send on (the conventional ones, as nginx-rtmp and SRS use).
CSID_CONTROL, CSID_COMMAND, CSID_STREAM = 2, 3, 5
MAX_MESSAGE_STREAMS = 64  # createStream calls allowed per connection
# Replies a client may send us; answering them with _error could ping-pong forever.
_SILENT = frozenset({"_result", "_error", "onStatus", "onBWDone", "onBWCheck"})

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


@dataclass
class Connected:
    app: str
    tc_url: str
    command: dict[str, Any]


@dataclass
class PublishRequested:
    stream_id: int
    name: str
    query: str
    publish_type: str


@dataclass
class MetaData:
    stream_id: int
    values: dict[str, Any]


@dataclass
class VideoData:
    stream_id: int
    timestamp: int
    payload: bytes | bytearray


@dataclass
class AudioData:
    stream_id: int
    timestamp: int
    payload: bytes | bytearray


@dataclass
class Unpublished:
    stream_id: int


@dataclass
class Closed:
    reason: str


class RtmpServerProtocol:
    def __init__(
        self,
        *,
        max_chunk_size: int = 0xFFFFFF,
        max_message_bytes: int = 16 * 1024 * 1024,
        max_chunk_streams: int = 64,
        max_partial_bytes: int = 32 * 1024 * 1024,
        preauth_max_bytes: int = 64 * 1024,
        preauth_max_message_bytes: int = 64 * 1024,
        preauth_max_partial_streams: int = 4,
        ack_window: int = 2_500_000,
        out_chunk_size: int = 4096,
    ) -> None:
        self._handshake = ServerHandshake()
        self._reader = ChunkReader(
            max_chunk_size=max_chunk_size,
            max_message_bytes=min(preauth_max_message_bytes, max_message_bytes),
            max_chunk_streams=max_chunk_streams,
            max_partial_streams=preauth_max_partial_streams,
            max_partial_bytes=preauth_max_bytes,
        )
        self._limits = (max_message_bytes, max_chunk_streams, max_partial_bytes)
        self._preauth_max_bytes = preauth_max_bytes
        self._authorised = False
        self._writer = ChunkWriter()
        self._out = bytearray()
        self._ack_window = ack_window
        self._out_chunk_size = out_chunk_size
        self._window = ack_window  # until the peer sends Window Acknowledgement Size
        self._bytes_received = 0
        self._last_ack = 0
        self._connected = False
        self._failed = False
        self._next_stream_id = 1
        self._created: set[int] = set()
        self._publishing: dict[int, str] = {}  # stream id -> raw publish name (pending or accepted)

    @property
    def bytes_received(self) -> int:
        return self._bytes_received

    @property
    def handshake_done(self) -> bool:
        return self._handshake.done

    @property
    def authorised(self) -> bool:
        """True once a publish was accepted (the encoder-sized limits apply)."""
        return self._authorised

    @property
    def peak_buffered(self) -> int:
        """The most bytes partial messages held at once on this connection."""
        return self._reader.peak_partial_bytes

    # -- input -------------------------------------------------------------------------
    def receive(self, data: bytes, *, backlogged: bool = False) -> list[object]:
        """Feed bytes from the peer (any split); returns events. Raises ProtocolError,
        after which the connection is dead and every later call raises again.

        ``backlogged``: the caller knows more bytes are already waiting (a full socket
        read). A due Acknowledgement is then held until a read that catches up. Sending
        it late is harmful: an encoder that pushed everything and closed answers bytes
        arriving after its close with a TCP reset, and the reset makes the kernel discard
        what this side has not read yet (the end of the stream). A peer that waits for
        acks stops sending, the backlog drains, and the held ack goes out."""
        if self._failed:
            raise ProtocolError("connection already failed")
        try:
            return self._receive(data, backlogged)
        except ProtocolError:
            self._failed = True
            raise

    def _receive(self, data: bytes, backlogged: bool) -> list[object]:
        self._bytes_received += len(data)
        if not self._authorised and self._bytes_received > self._preauth_max_bytes:
            raise LimitExceeded("preauth_bytes", f"{self._bytes_received} bytes received before a publish was "
                                                 f"accepted, over the {self._preauth_max_bytes} byte budget")
        events: list[object] = []
        if not self._handshake.done:
            data = self._handshake.receive(data)
            self._out += self._handshake.data_to_send()
            if not self._handshake.done:
                return events
        if data:
            for msg in self._reader.feed(data):
                self._dispatch(msg, events)
        if not backlogged and self._bytes_received - self._last_ack >= self._window:
            self._last_ack = self._bytes_received
            self._send(CSID_CONTROL, ACK, 0, _U32.pack(self._bytes_received & MASK32))
        return events

    def _dispatch(self, msg: RtmpMessage, events: list[object]) -> None:
        type_id = msg.type_id
        if type_id == VIDEO or type_id == AUDIO:
            if msg.stream_id in self._publishing:
                cls = VideoData if type_id == VIDEO else AudioData
                events.append(cls(msg.stream_id, msg.timestamp, msg.payload))
        elif type_id == COMMAND_AMF0:
            try:
                values = decode_values(msg.payload)
            except AmfError as err:
                raise ProtocolError(f"undecodable command: {err}") from err
            self._on_command(msg, values, events)
        elif type_id == DATA_AMF0 or type_id == DATA_AMF3 or type_id == COMMAND_AMF3:
            offset = 0 if type_id == DATA_AMF0 else 1
            if offset and msg.payload[:1] != b"\x00":
                log.debug("skipping AMF3 message type %d (no AMF0 body)", type_id)
                return
            try:
                values = decode_values(msg.payload, offset)
            except AmfError as err:
                log.debug("skipping undecodable message type %d: %s", type_id, err)
                return
            if type_id == COMMAND_AMF3:
                self._on_command(msg, values, events)
            else:
                self._on_data(msg, values, events)
        elif type_id == USER_CONTROL:
            payload = msg.payload
            if len(payload) >= 6 and _U16.unpack_from(payload)[0] == PING_REQUEST:
                self._send(CSID_CONTROL, USER_CONTROL, 0, _U16.pack(PING_RESPONSE) + payload[2:6])
        elif type_id == WINDOW_ACK_SIZE:
            if len(msg.payload) >= 4:
                window = int(_U32.unpack_from(msg.payload)[0])
                if window:
                    self._window = window
        elif type_id == AGGREGATE:
            self._on_aggregate(msg, events)
        elif type_id not in (SET_CHUNK_SIZE, ABORT, ACK, SET_PEER_BANDWIDTH):
            log.debug("skipping message type %d (%d bytes)", type_id, len(msg.payload))

    def _on_data(self, msg: RtmpMessage, values: list[object], events: list[object]) -> None:
        if values and values[0] == "@setDataFrame":
            values = values[1:]
        if len(values) >= 2 and values[0] == "onMetaData" and isinstance(values[1], dict):
            if msg.stream_id in self._publishing:
                events.append(MetaData(msg.stream_id, values[1]))
        else:
            log.debug("skipping data message %r", values[0] if values else None)

    def _on_aggregate(self, msg: RtmpMessage, events: list[object]) -> None:
        """Unpack an aggregate message (FLV tags back to back) into its sub-messages;
        their timestamps are offsets from the first tag's, rebased on the message's."""
        body = msg.payload
        offset = 0
        first: int | None = None
        while offset + 11 <= len(body):
            tag_type = body[offset]
            size = int.from_bytes(body[offset + 1:offset + 4], "big")
            ts = int.from_bytes(body[offset + 4:offset + 7], "big") | body[offset + 7] << 24
            end = offset + 11 + size
            if end > len(body):
                log.debug("truncated aggregate message")
                return
            if first is None:
                first = ts
            if tag_type in (AUDIO, VIDEO, DATA_AMF0):
                sub = RtmpMessage(msg.csid, tag_type, msg.stream_id, (msg.timestamp + ts - first) & MASK32,
                                  body[offset + 11:end])
                self._dispatch(sub, events)
            offset = end + 4  # skip the back pointer

    # -- commands ----------------------------------------------------------------------
    def _on_command(self, msg: RtmpMessage, values: list[object], events: list[object]) -> None:
        if not values or not isinstance(values[0], str):
            log.debug("skipping command without a name")
            return
        name = values[0]
        txid = values[1] if len(values) > 1 and isinstance(values[1], float) else 0.0
        args = values[3:]
        arg = args[0] if args and isinstance(args[0], str) else ""
        if name == "connect":
            self._on_connect(txid, values[2] if len(values) > 2 else None, events)
            return
        if not self._connected:
            raise ProtocolError(f"command {name!r} before connect")
        if name in ("releaseStream", "FCPublish"):
            self._send_command(CSID_COMMAND, 0, "_result", txid, None, UNDEFINED)
            if name == "FCPublish":
                self._send_command(CSID_COMMAND, 0, "onFCPublish", 0.0, None,
                                   {"level": "status", "code": "NetStream.Publish.Start", "description": arg})
        elif name == "createStream":
            if len(self._created) >= MAX_MESSAGE_STREAMS:
                raise ProtocolError(f"more than {MAX_MESSAGE_STREAMS} streams")
            stream_id = self._next_stream_id
            self._next_stream_id += 1
            self._created.add(stream_id)
            self._send_command(CSID_COMMAND, 0, "_result", txid, None, float(stream_id))
        elif name == "publish":
            self._on_publish(msg.stream_id, arg, args, events)
        elif name == "FCUnpublish":
            self._send_command(CSID_COMMAND, 0, "_result", txid, None, UNDEFINED)
            self._send_command(CSID_COMMAND, 0, "onFCUnpublish", 0.0, None,
                               {"level": "status", "code": "NetStream.Unpublish.Success", "description": arg})
            for stream_id, raw in list(self._publishing.items()):
                if arg and arg in (raw, raw.partition("?")[0]):
                    self._unpublish(stream_id, events)
        elif name == "closeStream":
            self._unpublish(msg.stream_id, events)
        elif name == "deleteStream":
            target = args[0] if args and isinstance(args[0], float) else float(msg.stream_id)
            if target.is_integer():
                self._unpublish(int(target), events)
                self._created.discard(int(target))
        elif name in ("getStreamLength", "_checkbw", "checkBandwidth"):
            self._send_command(CSID_COMMAND, 0, "_result", txid, None, 0.0 if name == "getStreamLength" else None)
        elif name == "close":
            events.append(Closed("client sent close"))
        elif name == "play":
            self.send_status(msg.stream_id, "error", "NetStream.Play.Failed", "this server only accepts publishing")
        elif txid and name not in _SILENT:
            log.debug("unknown command %r (transaction %s)", name, txid)
            self._send_command(CSID_COMMAND, 0, "_error", txid, None,
                               {"level": "error", "code": "NetConnection.Call.Failed",
                                "description": f"unknown command {name}"})
        else:
            log.debug("ignoring command %r", name)

    def _on_connect(self, txid: float, command: object, events: list[object]) -> None:
        if self._connected:
            raise ProtocolError("connect sent twice")
        if not isinstance(command, dict):
            raise ProtocolError("connect without a command object")
        app, tc_url = command.get("app"), command.get("tcUrl")
        self._send(CSID_CONTROL, WINDOW_ACK_SIZE, 0, _U32.pack(self._ack_window))
        self._send(CSID_CONTROL, SET_PEER_BANDWIDTH, 0, _U32.pack(self._ack_window) + b"\x02")  # dynamic
        self._send(CSID_CONTROL, SET_CHUNK_SIZE, 0, _U32.pack(self._out_chunk_size))
        self._writer.chunk_size = self._out_chunk_size
        self._send_command(
            CSID_COMMAND, 0, "_result", txid,
            {"fmsVer": "FMS/3,0,1,123", "capabilities": 31.0},
            {"level": "status", "code": "NetConnection.Connect.Success",
             "description": "Connection succeeded.", "objectEncoding": 0.0},
        )
        self._connected = True
        events.append(Connected(app if isinstance(app, str) else "", tc_url if isinstance(tc_url, str) else "",
                                command))

    def _on_publish(self, stream_id: int, raw: str, args: list[object], events: list[object]) -> None:
        if stream_id not in self._created:
            raise ProtocolError(f"publish on stream {stream_id}, which was never created")
        if stream_id in self._publishing:
            raise ProtocolError(f"publish twice on stream {stream_id}")
        publish_type = args[1] if len(args) > 1 and isinstance(args[1], str) else "live"
        name, _, query = raw.partition("?")
        self._publishing[stream_id] = raw
        events.append(PublishRequested(stream_id, name, query, publish_type))

    def _unpublish(self, stream_id: int, events: list[object]) -> None:
        if self._publishing.pop(stream_id, None) is not None:
            events.append(Unpublished(stream_id))

    # -- decisions from the application -------------------------------------------------
    def accept_publish(self, req: PublishRequested) -> None:
        if not self._authorised:
            self._authorised = True
            max_message, max_streams, max_partial = self._limits
            self._reader.set_limits(max_message_bytes=max_message, max_partial_streams=max_streams,
                                    max_partial_bytes=max_partial)
        self._send(CSID_CONTROL, USER_CONTROL, 0, _U16.pack(STREAM_BEGIN) + _U32.pack(req.stream_id))
        self.send_status(req.stream_id, "status", "NetStream.Publish.Start", f"{req.name} is now published.")

    def reject_publish(self, req: PublishRequested, code: str = "NetStream.Publish.BadName",
                       description: str = "publish rejected") -> None:
        self._publishing.pop(req.stream_id, None)
        self.send_status(req.stream_id, "error", code, description)

    def send_status(self, stream_id: int, level: str, code: str, description: str) -> None:
        self._send_command(CSID_STREAM, stream_id, "onStatus", 0.0, None,
                           {"level": level, "code": code, "description": description})

    # -- output ------------------------------------------------------------------------
    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def _send(self, csid: int, type_id: int, stream_id: int, payload: bytes) -> None:
        self._out += self._writer.write(RtmpMessage(csid, type_id, stream_id, 0, payload))

    def _send_command(self, csid: int, stream_id: int, *values: object) -> None:
        self._send(csid, COMMAND_AMF0, stream_id, encode_values(values))
