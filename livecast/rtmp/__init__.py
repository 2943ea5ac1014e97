"""RTMP: the sans-IO server protocol (chunks, handshake, AMF, limits) and the asyncio listener."""
