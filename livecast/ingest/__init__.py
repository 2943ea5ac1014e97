"""RTMP ingest: handshake, chunk streams, AMF0 and the sans-IO server protocol
(``protocol.RtmpServerProtocol``), plus the asyncio listener that wraps it."""
