"""``RtmpClientProtocol``: an RTMP publishing client as a sans-IO state machine.

Built on the same pieces as the ingest server (``rtmp.chunks``, ``rtmp.amf``): bytes in
through :meth:`receive`, which returns events (:class:`Published`, :class:`Refused`);
bytes out through :meth:`data_to_send`. The client does the plain handshake (C0 + C1,
then C2 echoing S1), ``connect``, ``releaseStream``/``FCPublish``/``createStream`` and
``publish``, answers pings, and then carries FLV tag bodies as audio, video and data
messages. A refusal is reported with the server's own ``code: description``.
"""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass
from typing import Any

from livecast.rtmp.amf import AmfError, decode_values, encode_values
from livecast.rtmp.chunks import ChunkReader, ChunkWriter, ProtocolError, RtmpMessage

log = logging.getLogger(__name__)

HANDSHAKE_SIZE = 1536
SET_CHUNK_SIZE, ACK, USER_CONTROL, WINDOW_ACK_SIZE = 1, 3, 4, 5
AUDIO, VIDEO, DATA_AMF0, COMMAND_AMF0 = 8, 9, 18, 20
PING_REQUEST, PING_RESPONSE = 6, 7
CSID_CONTROL, CSID_COMMAND, CSID_AUDIO, CSID_DATA, CSID_VIDEO = 2, 3, 4, 5, 6
OUT_CHUNK_SIZE = 4096
_TX_CONNECT, _TX_CREATE, _TX_PUBLISH = 1.0, 4.0, 5.0
_U32 = struct.Struct(">I")


@dataclass
class Published:
    """The server accepted the publish: media may flow."""


@dataclass
class Refused:
    """The server refused (connect or publish): ``reason`` is its own code and description."""

    reason: str


class RtmpClientProtocol:
    """Publishes one stream ``key`` to application ``app`` of the server at ``tc_url``."""

    def __init__(self, tc_url: str, app: str, key: str) -> None:
        self.tc_url = tc_url
        self.app = app
        self._key = key
        self.state = "handshake"
        self.stream_id = 0
        self.bytes_out = 0
        self._hs = bytearray()
        self._reader = ChunkReader(max_message_bytes=1024 * 1024, max_partial_bytes=4 * 1024 * 1024)
        self._writer = ChunkWriter()
        self._out = bytearray()
        self._received = 0
        self._ack_window = 0
        self._acked = 0
        c1 = bytes(8) + os.urandom(HANDSHAKE_SIZE - 8)
        self._out += b"\x03" + c1

    def __repr__(self) -> str:
        return f"RtmpClientProtocol({self.tc_url!r}, state={self.state})"  # never the key

    @property
    def live(self) -> bool:
        return self.state == "live"

    # -- bytes in -------------------------------------------------------------------
    def receive(self, data: bytes) -> list[object]:
        """Consume server bytes; raises ``ProtocolError`` on garbage."""
        self._received += len(data)
        if self.state == "handshake":
            self._hs += data
            if len(self._hs) < 1 + 2 * HANDSHAKE_SIZE:
                return []
            if self._hs[0] != 3:
                raise ProtocolError(f"server answered RTMP version {self._hs[0]}")
            s1 = bytes(self._hs[1:1 + HANDSHAKE_SIZE])
            data = bytes(self._hs[1 + 2 * HANDSHAKE_SIZE:])
            self._hs = bytearray()
            self._out += s1  # C2 echoes S1
            self._start_session()
        events: list[object] = []
        for msg in self._reader.feed(data):
            self._dispatch(msg, events)
        self._maybe_ack()
        return events

    def _start_session(self) -> None:
        self.state = "connecting"
        self._send(CSID_CONTROL, SET_CHUNK_SIZE, 0, _U32.pack(OUT_CHUNK_SIZE))
        self._writer.chunk_size = OUT_CHUNK_SIZE
        self._command(0, "connect", _TX_CONNECT, {
            "app": self.app, "type": "nonprivate", "flashVer": "FMLE/3.0 (compatible; LiveCast)",
            "tcUrl": self.tc_url,
        })

    def _dispatch(self, msg: RtmpMessage, events: list[object]) -> None:
        if msg.type_id == WINDOW_ACK_SIZE and len(msg.payload) >= 4:
            self._ack_window = int(_U32.unpack_from(msg.payload)[0])
        elif msg.type_id == USER_CONTROL and len(msg.payload) >= 6:
            if struct.unpack_from(">H", msg.payload)[0] == PING_REQUEST:
                self._send(CSID_CONTROL, USER_CONTROL, 0, struct.pack(">H", PING_RESPONSE) + msg.payload[2:6])
        elif msg.type_id == COMMAND_AMF0:
            try:
                values = decode_values(msg.payload)
            except AmfError as err:
                raise ProtocolError(f"bad command from the server: {err}") from err
            self._on_command(values, events)

    def _on_command(self, values: list[Any], events: list[object]) -> None:
        if not values or not isinstance(values[0], str):
            return
        name = values[0]
        txid = values[1] if len(values) > 1 else None
        info = values[3] if len(values) > 3 and isinstance(values[3], dict) else {}
        if name == "_error":
            self.state = "refused"
            events.append(Refused(_describe(info, "the server refused the connection")))
        elif name == "_result" and txid == _TX_CONNECT and self.state == "connecting":
            self.state = "creating"
            self._command(0, "releaseStream", 2.0, None, self._key)
            self._command(0, "FCPublish", 3.0, None, self._key)
            self._command(0, "createStream", _TX_CREATE, None)
        elif name == "_result" and txid == _TX_CREATE and self.state == "creating":
            sid = values[3] if len(values) > 3 else 1
            self.stream_id = int(sid) if isinstance(sid, (int, float)) else 1
            self.state = "publishing"
            self._command(self.stream_id, "publish", _TX_PUBLISH, None, self._key, "live")
        elif name == "onStatus":
            self._on_status(info, events)

    def _on_status(self, info: dict[str, Any], events: list[object]) -> None:
        code = str(info.get("code", ""))
        if code == "NetStream.Publish.Start" and self.state == "publishing":
            self.state = "live"
            events.append(Published())
        elif str(info.get("level", "")) == "error" or code.endswith(("BadName", "Failed", "Rejected")):
            self.state = "refused"
            events.append(Refused(_describe(info, "publish refused")))

    def _maybe_ack(self) -> None:
        if self._ack_window and self._received - self._acked >= self._ack_window // 2:
            self._acked = self._received
            self._send(CSID_CONTROL, ACK, 0, _U32.pack(self._received & 0xFFFFFFFF))

    # -- bytes out ------------------------------------------------------------------
    def send_video(self, timestamp: int, body: bytes) -> None:
        self._send(CSID_VIDEO, VIDEO, self.stream_id, body, timestamp)

    def send_audio(self, timestamp: int, body: bytes) -> None:
        self._send(CSID_AUDIO, AUDIO, self.stream_id, body, timestamp)

    def send_metadata(self, values: dict[str, Any]) -> None:
        try:
            payload = encode_values(["@setDataFrame", "onMetaData", values])
        except AmfError:
            log.debug("metadata not encodable as AMF0; not relayed")
            return
        self._send(CSID_DATA, DATA_AMF0, self.stream_id, payload)

    def unpublish(self) -> None:
        if self.state == "live":
            self._command(0, "FCUnpublish", 6.0, None, self._key)
            self._command(0, "deleteStream", 7.0, None, self.stream_id)
            self.state = "closed"

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        self.bytes_out += len(out)
        return out

    def _send(self, csid: int, type_id: int, stream_id: int, payload: bytes, timestamp: int = 0) -> None:
        self._out += self._writer.write(RtmpMessage(csid, type_id, stream_id, timestamp, payload))

    def _command(self, stream_id: int, *values: object) -> None:
        csid = CSID_COMMAND if stream_id == 0 else CSID_DATA
        self._send(csid, COMMAND_AMF0, stream_id, encode_values(values))


def _describe(info: dict[str, Any], fallback: str) -> str:
    code = str(info.get("code") or "")
    description = str(info.get("description") or "")
    text = ": ".join(p for p in (code, description) if p) or fallback
    return text[:300]
